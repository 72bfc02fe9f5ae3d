"""Training throughput of HAN on the CPU: images/s of one SGD step (batch 32, both branches' losses).

Reports, per variant and thread count, the median wall time of a step and the median process CPU time
of a step. On a shared machine the wall time depends on the load; the CPU time of a 1-thread run does
much less, so ``images_per_cpu_s`` (batch / CPU seconds per step) is the load-robust figure.
Usage: python benchmarks/training/throughput.py [--variants small,medium,large] [--threads 1] [--steps 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from han_deploy.model import create_model


def measure(variant: str, threads: int, steps: int, batch: int, classes: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model(variant, num_classes=classes).train()
    opt = torch.optim.SGD(model.parameters(), lr=3e-2, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 160, 64)
    y = torch.randint(0, classes, (batch,))
    walls, cpus = [], []
    for i in range(steps + 2):  # 2 warm-up steps
        w0, c0 = time.perf_counter(), time.process_time()
        out = model(x)
        loss = F.cross_entropy(out.global_logits, y) + F.cross_entropy(out.local_logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {
        "variant": variant,
        "threads": threads,
        "batch": batch,
        "steps": steps,
        "median_step_wall_s": wall,
        "median_step_cpu_s": cpu,
        "images_per_s": batch / wall,
        "images_per_cpu_s": batch / cpu,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="small,medium,large", help="comma-separated HAN variants")
    p.add_argument("--threads", default="1", help="comma-separated torch thread counts")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (after 2 warm-up steps)")
    p.add_argument("--batch", type=int, default=32, help="batch size (the paper's is 32)")
    p.add_argument("--classes", type=int, default=743, help="classifier size (743 = CUHK03 pair-1 train ids)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    load_before = os.getloadavg()
    rows = [
        measure(v, int(t), args.steps, args.batch, args.classes)
        for v in args.variants.split(",")
        for t in args.threads.split(",")
    ]
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "niceness": os.nice(0),
        "results": rows,
    }
    for r in rows:
        print(
            f"{r['variant']:<7} threads {r['threads']}: {r['images_per_s']:6.1f} img/s wall, "
            f"{r['images_per_cpu_s']:6.1f} img/s per CPU-second (step {r['median_step_wall_s']:.2f} s wall, "
            f"{r['median_step_cpu_s']:.2f} s CPU)"
        )
    print(f"load average before {load_before}, after {result['load_average_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
