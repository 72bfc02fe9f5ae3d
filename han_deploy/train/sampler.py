"""PK identity sampler for batch-hard triplet loss: every batch holds P identities with K images each.

The order is a pure function of ``(seed, epoch)``, so a resumed run replays the same batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKSampler(Sampler[int]):
    """Yield indices in batches of ``p * k``: P distinct pids, K indices each (drawn with replacement if a pid has fewer).

    Each pid contributes ``max(1, n_images // k)`` groups of K per epoch; groups are shuffled and packed
    P distinct pids at a time; leftovers that cannot fill a batch of distinct pids are dropped.
    """

    def __init__(self, pids: Sequence[int], p: int, k: int, seed: int = 0) -> None:
        if p < 2 or k < 2:
            raise ValueError(f"PK sampling needs P >= 2 and K >= 2, got P={p}, K={k}")
        self.by_pid: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.by_pid[int(pid)].append(i)
        if len(self.by_pid) < p:
            raise ValueError(f"PK sampling needs at least P={p} identities, the split has {len(self.by_pid)}")
        self.p, self.k, self.seed, self.epoch = p, k, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: list[tuple[int, list[int]]] = []
        for pid in sorted(self.by_pid):
            idx = self.by_pid[pid]
            if len(idx) < self.k:
                chosen = rng.choice(idx, size=self.k, replace=True).tolist()
            else:
                chosen = rng.permutation(idx).tolist()
                chosen = chosen[: len(chosen) - len(chosen) % self.k]
            groups += [(pid, chosen[i : i + self.k]) for i in range(0, len(chosen), self.k)]
        order = rng.permutation(len(groups)).tolist()
        pending = [groups[i] for i in order]
        batches: list[list[int]] = []
        while True:
            seen: set[int] = set()
            batch: list[int] = []
            rest = []
            for pid, grp in pending:
                if pid not in seen and len(seen) < self.p:
                    seen.add(pid)
                    batch += grp
                else:
                    rest.append((pid, grp))
            if len(seen) < self.p:
                break
            batches.append(batch)
            pending = rest
        return batches

    def __iter__(self) -> Iterator[int]:
        for batch in self._batches():
            yield from batch

    def __len__(self) -> int:
        return sum(len(b) for b in self._batches())
