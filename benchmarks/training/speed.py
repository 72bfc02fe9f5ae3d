"""Training speed on the CPU: images/s of a full HAN training step, eager baseline vs each speed-up.

One process, interleaved rounds: every configuration runs ``--steps`` timed steps (after warm-up) in
each round, so a change in machine load hits all of them alike; the table reports each configuration's
median over rounds and its ratio to the eager baseline of the same variant. A step is what
``han-train`` does per batch: (optionally) get the batch, forward, both branches' cross-entropies,
backward, SGD step. Configurations:

- ``eager``: the model as built, contiguous (NCHW) tensors, SGD with for-loop updates, a random batch.
- ``channels_last``: model and input in NHWC memory format.
- ``foreach`` / ``fused``: SGD's multi-tensor / fused update (with channels_last).
- ``bf16``: bfloat16 autocast (with channels_last); only worth it on CPUs with AVX512-BF16 or AMX.
  ``bf16_fp32dw``: the same with the strided depthwise convolutions kept float32, as ``han-train --amp``
  does (``han_deploy.train.precision``: oneDNN's bf16 backward of those layers is slow).
- ``compile``: ``torch.compile`` of the model (inductor, C++ codegen), with channels_last; the first
  call's compile time is reported separately.
- ``jpeg_loader``: the eager step plus the old trainer's data path (decode and preprocess 32 JPEGs per
  batch with the runtime's preprocessing). ``cached_loader``: the new trainer's whole step, i.e. the
  channels_last step plus a batch from the decoded-once uint8 cache, normalised and augmented (flip,
  pad-and-crop, random erasing). Both need ``--images`` (a folder of person crops, >= ``--batch``).
  ``cached_loader_amp``: ``cached_loader`` with ``--amp``'s mixed precision (as ``bf16_fp32dw``).
- ``cached_loader_b64``: ``cached_loader`` at twice ``--batch`` (images/s counts its own batch): fewer,
  larger steps per epoch, a lead from the GPU recipe search (docs/training.md).

Each row also gives the step's minor page faults (``getrusage``). ``--retain-heap`` first makes glibc keep
freed memory in the process, as ``han-train`` does by default (``han_deploy.train.heap``); the allocator is
process-wide, so the comparison with and without it is two runs of this script, one after the other.

``--profile CONFIG`` then runs ``torch.profiler`` over a few more steps of CONFIG per variant and records
the operators that take the most self CPU time (where a step's time goes).

Usage: python benchmarks/training/speed.py --variants small,medium,large --threads 2 --images DIR --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from han_deploy.config import PreprocessConfig
from han_deploy.contract.decode import read_image
from han_deploy.contract.preprocess import preprocess
from han_deploy.model import create_model
from han_deploy.train.augment import BatchAugment
from han_deploy.train.heap import retain_freed_memory
from han_deploy.train.losses import han_losses
from han_deploy.train.memory_cache import ImageCache
from han_deploy.train.precision import keep_strided_depthwise_float32

Step = Callable[[], None]


CONFIGS = frozenset(
    {"eager", "channels_last", "foreach", "fused", "bf16", "bf16_fp32dw", "compile", "jpeg_loader", "cached_loader"}
    | {"cached_loader_b64", "cached_loader_amp"}
)


def config_batch(config: str, batch: int) -> int:
    """Images per step of ``config``: ``--batch``, twice it for the ``_b64`` configuration."""
    return 2 * batch if config.endswith("_b64") else batch


def make_step(variant: str, config: str, batch: int, classes: int, files: list[Path]) -> tuple[Step, float]:
    """A closure running one training step of ``config``, and the seconds its first call took."""
    torch.manual_seed(0)
    batch = config_batch(config, batch)
    loader = config.removesuffix("_b64").removesuffix("_amp")
    amp = config in ("bf16", "bf16_fp32dw", "cached_loader_amp")
    model = create_model(variant, num_classes=classes).train()
    pre: PreprocessConfig = model.cfg.preprocess
    nhwc = loader in ("channels_last", "foreach", "fused", "bf16", "bf16_fp32dw", "compile", "cached_loader")
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if amp and config != "bf16":
        keep_strided_depthwise_float32(model)
    opt_kw = {"foreach": config == "foreach", "fused": True if config == "fused" else None}
    opt = torch.optim.SGD(model.parameters(), lr=3e-2, momentum=0.9, weight_decay=5e-4, **opt_kw)
    net = torch.compile(model) if config == "compile" else model
    labels = torch.randint(0, classes, (batch,))
    fixed = torch.randn(batch, 3, *pre.input_size).contiguous(memory_format=fmt)
    cache = ImageCache.build(files[:512], pre, progress=False) if loader == "cached_loader" else None
    augment = BatchAugment(flip=True, pad=10, erasing=0.5)
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)

    def get_batch() -> torch.Tensor:
        if config == "jpeg_loader":
            chosen = rng.choice(len(files), size=batch, replace=False)
            return torch.from_numpy(preprocess([read_image(files[i]) for i in chosen], pre))
        if cache is not None:
            x = cache.batch(rng.choice(len(cache), size=batch, replace=False))
            return augment(x, gen).contiguous(memory_format=fmt)
        return fixed

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = net(get_batch())
        loss = torch.stack(list(han_losses(out, labels).values())).sum()  # the trainer's loss, as han-train sums it
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start


def timed(step: Step, steps: int) -> tuple[float, float]:
    """Seconds per step (median of ``steps`` runs) and minor page faults per step (mean)."""
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps


def run(
    variants: list[str], configs: list[str], args: argparse.Namespace, files: list[Path], profiles: dict[str, list[dict]]
) -> list[dict]:
    """Time every configuration of every variant in interleaved rounds; with ``--profile``, fill ``profiles`` too."""
    rows = []
    for variant in variants:
        steps, first = {}, {}
        for c in configs:
            steps[c], first[c] = make_step(variant, c, args.batch, args.classes, files)
            timed(steps[c], 1)  # warm-up beyond the first call (compile, allocator)
        per_round: dict[str, list[float]] = {c: [] for c in configs}
        faults: dict[str, list[float]] = {c: [] for c in configs}
        for _ in range(args.rounds):
            for c in configs:
                sec, flt = timed(steps[c], args.steps)
                per_round[c].append(sec)
                faults[c].append(flt)
        eager_rate = args.batch / statistics.median(per_round["eager"])
        for c in configs:
            sec = statistics.median(per_round[c])
            rate = config_batch(c, args.batch) / sec
            rows.append(
                {
                    "variant": variant,
                    "config": c,
                    "batch": config_batch(c, args.batch),
                    "step_s": sec,
                    "images_per_s": rate,
                    "speedup_vs_eager": rate / eager_rate,
                    "first_call_s": first[c],
                    "rounds_step_s": per_round[c],
                    "minor_faults_per_step": statistics.median(faults[c]),
                }
            )
            print(
                f"{variant:<7} {c:<18} {rate:7.1f} img/s  x{rate / eager_rate:4.2f}  (first call {first[c]:.1f} s, "
                f"{statistics.median(faults[c]):.0f} page faults a step)"
            )
        if args.profile:
            profiles[variant] = profile(steps[args.profile], args.steps)
    return rows


def profile(step: Step, steps: int, top: int = 15) -> list[dict]:
    """The ``top`` operators by self CPU time over ``steps`` steps of ``step`` (ms and calls per step, share of all)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return [
        {
            "op": e.key,
            "self_ms_per_step": e.self_cpu_time_total / 1000 / steps,
            "calls_per_step": e.count / steps,
            "share": e.self_cpu_time_total / total,
        }
        for e in rows
    ]


def machine() -> dict:
    """CPU model, family/model numbers and the SIMD extensions that decide which speed-ups pay."""
    info = {"cores": os.cpu_count(), "arch": platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    simd = [f for f in fields.get("flags", "").split() if f.startswith(("avx", "amx")) or "vnni" in f]
    return (
        info
        | {"cpu": fields.get("model name"), "family": fields.get("cpu family"), "model": fields.get("model")}
        | {"simd": simd}
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="small,medium,large", help="comma-separated HAN variants")
    every = "eager,channels_last,foreach,fused,bf16,bf16_fp32dw,compile,jpeg_loader,cached_loader,cached_loader_amp"
    p.add_argument("--configs", default=every, help="comma-separated configurations (the module docstring)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--steps", type=int, default=4, help="timed steps per configuration and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--batch", type=int, default=32, help="batch size (the paper's is 32)")
    p.add_argument("--classes", type=int, default=743, help="classifier size (743 = CUHK03 pair-1 train ids)")
    p.add_argument("--images", type=Path, help="folder of person crops for the loader configurations")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--profile", metavar="CONFIG", help="then profile this configuration's step (torch.profiler, CPU)")
    p.add_argument("--retain-heap", action="store_true", help="keep freed memory in the process, as han-train does")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    retained = retain_freed_memory() if args.retain_heap else False
    configs = args.configs.split(",")
    if unknown := [c for c in configs if c not in CONFIGS]:
        raise SystemExit(f"--configs: unknown {', '.join(unknown)} (known: {', '.join(sorted(CONFIGS))})")
    if "eager" not in configs:
        raise SystemExit("--configs must include eager: every ratio is taken against it")
    files = sorted(args.images.glob("*.jpg")) if args.images else []
    if args.images and len(files) < args.batch:
        raise SystemExit(f"--images {args.images}: needs at least --batch {args.batch} .jpg crops, found {len(files)}")
    if not files:
        configs = [c for c in configs if "_loader" not in c]
    if args.profile and args.profile not in configs:
        raise SystemExit(f"--profile {args.profile}: not among the configurations run ({', '.join(configs)})")
    load_before = os.getloadavg()
    profiles: dict[str, list[dict]] = {}
    rows = run(args.variants.split(","), configs, args, files, profiles)
    result = {
        "command": "python benchmarks/training/speed.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "threads": args.threads,
        "retain_heap": retained,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "results": rows,
    } | ({"profile": {"config": args.profile, "top_ops": profiles}} if args.profile else {})
    print(f"load average before {load_before}, after {result['load_average_after']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
