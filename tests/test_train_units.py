"""Training building blocks: batch-hard triplet values, PK sampler composition, random erasing, lr milestones."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest
import torch

from han_deploy.train import PKSampler, batch_hard_triplet, scaled_milestones
from han_deploy.train.augment import random_erasing


def test_batch_hard_triplet_hand_computed() -> None:
    # Points: x0=(0,0), x1=(1,0) of pid 0; x2=(3,0), x3=(3,4) of pid 1; x4=(10,10) of pid 2 (no positive).
    # Distances: d01=1, d02=3, d03=5, d12=2, d13=sqrt(20), d23=4; x4 is far from all (never the hardest negative).
    # Anchor: hardest positive, hardest (closest) negative -> d_ap - d_an + margin:
    #   x0: 1 - 3 = -2;  x1: 1 - 2 = -1;  x2: 4 - min(3, 2) = 2;  x3: 4 - min(5, sqrt20) = 4 - sqrt20.
    #   x4 has no positive, so it is left out: the mean runs over 4 anchors.
    feats = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.0, 4.0], [10.0, 10.0]], requires_grad=True)
    pids = torch.tensor([0, 0, 1, 1, 2])
    # margin 1: relu(-1) + relu(0) + relu(3) + relu(5 - sqrt20) = 8 - sqrt20, over 4 anchors
    loss = batch_hard_triplet(feats, pids, margin=1.0)
    assert loss.item() == pytest.approx((8 - math.sqrt(20)) / 4, rel=1e-5)
    # margin 0.5: 0 + 0 + 2.5 + (4.5 - sqrt20)
    assert batch_hard_triplet(feats, pids, margin=0.5).item() == pytest.approx((7 - math.sqrt(20)) / 4, rel=1e-5)
    loss.backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()
    assert feats.grad[0].abs().sum() == 0  # x0's terms are all inactive and it is nobody's hardest pair


def test_batch_hard_triplet_without_valid_anchor_is_zero_and_differentiable() -> None:
    feats = torch.randn(3, 4, requires_grad=True)
    loss = batch_hard_triplet(feats, torch.tensor([0, 1, 2]), margin=0.3)  # no positives at all
    loss.backward()
    assert loss.item() == 0.0


def test_pk_sampler_batches_hold_p_ids_with_k_images_each() -> None:
    pids = [0] * 6 + [1] * 2 + [2] * 4 + [3] * 5 + [4] * 9
    p, k = 2, 4
    sampler = PKSampler(pids, p=p, k=k, seed=3)
    order = list(sampler)
    assert len(order) == len(sampler) and len(order) % (p * k) == 0 and len(order) > 0
    for start in range(0, len(order), p * k):
        batch = order[start : start + p * k]
        counts = Counter(pids[i] for i in batch)
        assert len(counts) == p and set(counts.values()) == {k}
    # pid 1 has 2 images < K: its group is drawn with replacement from its own 2 indices
    assert {i for i in order if pids[i] == 1} <= {6, 7}
    sampler.set_epoch(0)
    again = list(PKSampler(pids, p=p, k=k, seed=3))
    assert order == again  # a pure function of (seed, epoch): resumed runs replay it
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_pk_sampler_rejects_too_few_identities() -> None:
    with pytest.raises(ValueError, match="at least P=4 identities"):
        PKSampler([0, 0, 1, 1], p=4, k=2)


def test_random_erasing_probability_zero_and_one() -> None:
    images = torch.zeros(16, 3, 40, 20)
    assert torch.equal(random_erasing(images, 0.0, torch.Generator().manual_seed(0)), images)
    out = random_erasing(images, 1.0, torch.Generator().manual_seed(0), area=(0.02, 0.4))
    assert torch.equal(images, torch.zeros_like(images))  # the input is not modified
    for img in out:
        erased = img.ne(0).any(dim=0)  # noise is nonzero almost surely
        rows, cols = erased.any(dim=1).nonzero(), erased.any(dim=0).nonzero()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert erased.sum() == box  # one solid rectangle, the same in every channel
        assert img.ne(0).all(dim=0).sum() == box
        assert 0.015 * 800 <= box <= 0.45 * 800  # area fraction in range (rounding of the sides aside)
    same = random_erasing(images, 1.0, torch.Generator().manual_seed(0), area=(0.02, 0.4))
    assert torch.equal(out, same)


def test_random_erasing_half_probability_erases_about_half() -> None:
    out = random_erasing(torch.zeros(400, 1, 16, 8), 0.5, torch.Generator().manual_seed(1))
    erased = out.flatten(1).ne(0).any(dim=1).sum().item()
    assert 150 < erased < 250
    with pytest.raises(ValueError, match="probability"):
        random_erasing(torch.zeros(1, 1, 4, 4), 1.5, torch.Generator())


def test_paper_milestones_and_their_scaling() -> None:
    assert scaled_milestones(300) == (100, 200, 250)
    assert scaled_milestones(30) == (10, 20, 25)
    assert scaled_milestones(8) == (3, 5, 7)
    assert scaled_milestones(1) == ()


_FAULTS_OF_REUSE = """
import resource, sys, torch
from han_deploy.train.heap import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else None
def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def cycles(n: int) -> None:
    for _ in range(n):
        x = torch.ones(16 * 2**20)  # 64 MiB: above glibc's largest mmap threshold (32 MiB)
        del x
cycles(3)  # warm-up: the heap settles where the freed block can be taken again
before = faults()
cycles(3)
print(applied, faults() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_retained_heap_reuses_freed_activations_without_page_faults() -> None:
    """A 64 MiB tensor freed and allocated again: glibc unmaps and re-faults it, unless the trainer's heap setting holds."""

    def run(mode: str) -> tuple[str, int]:
        cmd = [sys.executable, "-c", _FAULTS_OF_REUSE, mode]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)
        applied, faults = out.stdout.split()
        return applied, int(faults)

    pages = 3 * 16 * 2**20 * 4 // 4096  # three 64 MiB tensors in 4 KiB pages
    _, default = run("default")
    if default < 0.9 * pages:
        pytest.skip(f"{default} faults for {pages} pages without the setting: huge pages, or another allocator")
    applied, retained = run("retain")
    if applied == "False":
        pytest.skip("malloc is not glibc's")
    assert retained < pages // 4, (retained, default)
