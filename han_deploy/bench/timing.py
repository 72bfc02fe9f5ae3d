"""Timing statistics: warm-up, timed iterations (a count or a duration), repeated runs, spread and noise flags.

The numbers a benchmark reports come from here, so the rules are in one place:

- every run starts after ``warmup`` untimed calls;
- a *repeat* is one block of timed calls (``iters`` calls, or as many as fit in ``duration`` seconds,
  at least ``min_iters``); each call is timed on its own with ``time.perf_counter_ns``;
- the headline latency (``p50_ms``) is the **median of the repeats' medians**; p90 / p99 come from
  all the timed calls pooled; throughput is ``batch / p50``;
- ``spread`` = (slowest repeat median - fastest repeat median) / headline median; a measurement whose
  spread exceeds ``noise_threshold`` (10% unless told) is flagged ``noisy``.

:func:`run_interleaved` times several callables round-robin (repeat r of every callable before
repeat r + 1 of any), rotating the order each round, so that machine noise is shared by all of
them instead of landing on whichever happened to run during it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NOISE_THRESHOLD = 0.10  # relative spread between repeat medians above which a measurement is flagged


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    if not samples:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50.0)


def spread(repeat_medians: Sequence[float]) -> float:
    """Relative spread of the repeats: (max - min) / median; 0 for a single repeat."""
    if not repeat_medians:
        raise ValueError("spread of no repeats")
    mid = median(repeat_medians)
    if mid <= 0:
        return 0.0
    return (max(repeat_medians) - min(repeat_medians)) / mid


@dataclass
class TimingStats:
    """Latency statistics of one callable at one batch size, in milliseconds."""

    batch: int
    p50_ms: float  # median of the repeat medians
    p90_ms: float  # pooled over every timed call
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    throughput: float  # images per second = batch / p50
    repeat_p50_ms: list[float]
    spread: float  # (max - min) / median of repeat_p50_ms
    noisy: bool
    iters: int  # timed calls in all, over all repeats
    repeats: int
    warmup: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "throughput_ips": self.throughput,
            "repeat_p50_ms": list(self.repeat_p50_ms),
            "spread": self.spread,
            "noisy": self.noisy,
            "iters": self.iters,
            "repeats": self.repeats,
            "warmup": self.warmup,
        }


def summarize(
    repeats: Sequence[Sequence[float]], batch: int, warmup: int = 0, noise_threshold: float = NOISE_THRESHOLD
) -> TimingStats:
    """Statistics of per-call latencies in **seconds**, grouped by repeat (one list per repeat)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    runs = [list(r) for r in repeats if len(r)]
    if not runs:
        raise ValueError("no timed calls to summarise")
    if any(t < 0 for r in runs for t in r):
        raise ValueError("negative latency")
    pooled = [t for r in runs for t in r]
    meds = [median(r) for r in runs]
    p50 = median(meds)
    sp = spread(meds)
    ms = 1e3
    return TimingStats(
        batch=batch,
        p50_ms=p50 * ms,
        p90_ms=percentile(pooled, 90) * ms,
        p99_ms=percentile(pooled, 99) * ms,
        mean_ms=sum(pooled) / len(pooled) * ms,
        min_ms=min(pooled) * ms,
        max_ms=max(pooled) * ms,
        throughput=batch / p50 if p50 > 0 else float("inf"),
        repeat_p50_ms=[m * ms for m in meds],
        spread=sp,
        noisy=sp > noise_threshold,
        iters=len(pooled),
        repeats=len(runs),
        warmup=warmup,
    )


@dataclass
class TimingPlan:
    """How long to time: ``iters`` calls per repeat, or ``duration`` seconds per repeat (at least ``min_iters``)."""

    warmup: int = 10
    iters: int | None = 50
    duration: float | None = None
    repeats: int = 5
    min_iters: int = 3
    noise_threshold: float = NOISE_THRESHOLD

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.iters is None and self.duration is None:
            raise ValueError("give iters or duration")
        if self.iters is not None and self.iters < 1:
            raise ValueError(f"iters must be >= 1, got {self.iters}")
        if self.duration is not None and self.duration <= 0:
            raise ValueError(f"duration must be > 0, got {self.duration}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.min_iters < 1:
            raise ValueError(f"min_iters must be >= 1, got {self.min_iters}")

    def describe(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "iters": self.iters,
            "duration_s": self.duration,
            "repeats": self.repeats,
            "min_iters": self.min_iters,
            "noise_threshold": self.noise_threshold,
        }


def time_block(fn: Callable[[], Any], iters: int | None, duration: float | None, min_iters: int = 1) -> list[float]:
    """Call ``fn`` ``iters`` times (or for ``duration`` seconds, at least ``min_iters`` times); per-call seconds."""
    out: list[float] = []
    clock = time.perf_counter_ns
    if iters is not None:
        for _ in range(iters):
            t0 = clock()
            fn()
            out.append((clock() - t0) * 1e-9)
        return out
    assert duration is not None
    deadline = clock() + int(duration * 1e9)
    while len(out) < min_iters or clock() < deadline:
        t0 = clock()
        fn()
        out.append((clock() - t0) * 1e-9)
    return out


def run_timed(fn: Callable[[], Any], batch: int, plan: TimingPlan) -> TimingStats:
    """Warm up, then time ``plan.repeats`` blocks of calls to ``fn``."""
    for _ in range(plan.warmup):
        fn()
    runs = [time_block(fn, plan.iters, plan.duration, plan.min_iters) for _ in range(plan.repeats)]
    return summarize(runs, batch, plan.warmup, plan.noise_threshold)


@dataclass
class _Slot:
    fn: Callable[[], Any]
    runs: list[list[float]] = field(default_factory=list)


def run_interleaved(fns: Mapping[str, Callable[[], Any]], batch: int, plan: TimingPlan) -> dict[str, TimingStats]:
    """Time several callables round-robin so that they share the machine's noise.

    Every callable is warmed up first; then each of ``plan.repeats`` rounds runs one timed block of
    every callable, the order rotated by one each round (nobody always runs first after a context switch).
    """
    slots = {name: _Slot(fn) for name, fn in fns.items()}
    names = list(slots)
    for name in names:
        for _ in range(plan.warmup):
            slots[name].fn()
    for r in range(plan.repeats):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            slots[name].runs.append(time_block(slots[name].fn, plan.iters, plan.duration, plan.min_iters))
    return {name: summarize(s.runs, batch, plan.warmup, plan.noise_threshold) for name, s in slots.items()}
