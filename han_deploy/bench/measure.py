"""Measure a set of cases (model x backend x precision) over batch sizes, interleaved, into plain result dicts.

Per batch size every case that can run is first probed once for its peak memory (which also tells
whether it runs at that size at all), then all of them are timed together by
:func:`~han_deploy.bench.timing.run_interleaved`, so ratios between cases come from the same minutes
of the same machine. A case that cannot be built is ``skipped`` (cannot run here: no GPU, no
TensorRT, an unsupported precision) or ``failed`` (it should have run and did not), with the reason,
and has no numbers at all.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .memory import measure_memory
from .models import ModelInfo
from .runners import Runner, Skipped
from .timing import TimingPlan, run_interleaved


@dataclass
class Case:
    """One thing to measure: a model, how it runs, and a factory that builds its runner (raises Skipped if it cannot)."""

    key: str  # unique, e.g. "han_small/onnxruntime/int8"
    model: ModelInfo
    backend: str
    precision: str
    build: Callable[[], Runner]


def _status(case: Case, status: str, reason: str, runner: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "key": case.key,
        "model": case.model.to_dict(),
        "backend": case.backend,
        "precision": case.precision,
        "status": status,
        "reason": reason,
        "runner": runner,
        "batches": [],
    }


def build_runners(cases: Sequence[Case]) -> tuple[dict[str, Runner], dict[str, dict[str, Any]]]:
    """Build every case's runner; those that cannot be built get their skipped/failed result right away."""
    runners: dict[str, Runner] = {}
    results: dict[str, dict[str, Any]] = {}
    for case in cases:
        if case.key in results:
            raise ValueError(f"duplicate case key {case.key!r}")
        try:
            runner = case.build()
        except Skipped as exc:
            results[case.key] = _status(case, "skipped", str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one broken case must not sink the others
            results[case.key] = _status(case, "failed", f"{type(exc).__name__}: {exc}")
            continue
        runners[case.key] = runner
        results[case.key] = _status(case, "ok", "", runner.describe())
    return runners, results


def measure_cases(
    cases: Sequence[Case],
    batches: Sequence[int],
    plan: TimingPlan,
    memory_calls: int = 1,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Results in the order of ``cases``; see ``docs/benchmarking.md`` for the fields."""
    if not batches or any(b < 1 for b in batches):
        raise ValueError(f"batch sizes must be >= 1, got {list(batches)}")
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    runners, results = build_runners(cases)
    for key, res in results.items():
        if res["status"] != "ok":
            say(f"  {key}: {res['status']} - {res['reason']}")
    try:
        for batch in batches:
            calls: dict[str, Callable[[], Any]] = {}
            memory: dict[str, dict[str, Any]] = {}
            for key, runner in runners.items():
                try:
                    fn = runner.call(batch)
                    memory[key] = measure_memory(fn, memory_calls, cuda=runner.device.startswith("cuda")).to_dict()
                except Exception as exc:  # noqa: BLE001 - e.g. out of memory, batch beyond an engine's profile
                    results[key]["batches"].append({"batch": batch, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
                    continue
                calls[key] = fn
            if not calls:
                continue
            say(f"batch {batch}: timing {len(calls)} case(s) interleaved ({plan.repeats} repeats)")
            stats = run_interleaved(calls, batch, plan)
            for key, st in stats.items():
                flops = results[key]["model"]["flops"]
                row = {"status": "ok", **st.to_dict(), "memory": memory[key]}
                row["achieved_gflops"] = None if not flops else flops * st.throughput / 1e9
                results[key]["batches"].append(row)
    finally:
        for runner in runners.values():
            runner.close()
    return [results[c.key] for c in cases]


def add_efficiency(results: list[dict[str, Any]], peak_gflops: float | None, int8_peak_gops: float | None = None) -> None:
    """Efficiency = achieved FLOP/s / the measured GEMM peak (INT8 cases also against the INT8 GEMM peak)."""
    for res in results:
        for row in res["batches"]:
            if row.get("status") != "ok":
                continue
            achieved = row.get("achieved_gflops")
            row["efficiency"] = achieved / peak_gflops if achieved and peak_gflops else None
            if res["precision"] == "int8":
                row["efficiency_vs_int8_peak"] = achieved / int8_peak_gops if achieved and int8_peak_gops else None
