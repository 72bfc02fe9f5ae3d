"""``han-demo``: the whole job in one command, on a CPU-only machine, with the built-in synthetic data by default.

Stages: synthetic dataset (or ``--data``), colour-histogram baseline, untrained HAN-small, brief
training, evaluation, FP32 + INT8 ONNX export through the parity gate, torch-free extraction and
evaluation of both ONNX files, latency benchmark, attention and ranking pictures, then one Markdown
report. Every stage calls the public API of the package's other stages; a stage whose API is not
there fails with "stage X not available yet", and the stages that need its results are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VARIANT = "han_small"
SYNTH_DATASET = "market_layout"  # the generator writes the Market-1501 layout
METRIC_KEYS = ("R1", "R5", "R10", "mAP", "mINP")
MARKET_LAYOUT = ("market_layout", "market1501", "dukemtmcreid")  # datasets the export's retrieval gate can read
# the ONNX files the CPU runtime and benchmark use (the export also writes the TensorRT-flavoured model.int8.onnx)
CPU_ARTIFACTS = {"fp32": "model.onnx", "int8": "model.int8-cpu.onnx"}


@dataclass(frozen=True)
class Sizes:
    """How big one demo run is: the synthetic data, the training, the benchmark and the pictures."""

    num_ids: int
    num_cameras: int
    images_per_camera: tuple[int, int]
    epochs: int
    batch_size: int
    calib_images: int
    bench_batches: tuple[int, ...]
    bench_seconds: float
    attention_images: int
    rank_queries: int


# --quick: about a minute of CPU (tests); default: aimed at ~10 minutes on 2 idle cores (estimate in docs/pipeline.md)
QUICK = Sizes(12, 3, (2, 3), 1, 16, 16, (1, 4), 0.2, 2, 2)
DEFAULT = Sizes(120, 4, (3, 6), 12, 32, 128, (1, 8, 32), 1.0, 6, 6)


class StageUnavailable(RuntimeError):
    """A stage needs another part of the package that does not exist (yet)."""


def require(module: str, *names: str) -> Any:
    """``module.name`` (a tuple for several names), or :class:`StageUnavailable` saying which API is missing."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise StageUnavailable(f"needs {module} ({exc})") from exc
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        raise StageUnavailable(f"needs {', '.join(f'{module}.{n}' for n in missing)}, which does not exist")
    found = tuple(getattr(mod, n) for n in names)
    return found[0] if len(found) == 1 else found


@dataclass
class Stage:
    """One step: what it needs from earlier stages (keys of the shared results) and the function that runs it."""

    name: str
    title: str
    needs: tuple[str, ...]
    run: Callable[[], list[str]]


@dataclass
class Outcome:
    """How a stage ended: ok, unavailable, failed or skipped, with its time and summary lines."""

    name: str
    title: str
    status: str
    seconds: float
    lines: list[str] = field(default_factory=list)


@dataclass
class Section:
    """Text (shown verbatim) and plots a stage contributes to the report."""

    lines: list[str]
    plots: list[Path] = field(default_factory=list)


@dataclass
class Settings:
    """The command line, resolved."""

    out: Path
    sizes: Sizes
    data: Path | None = None
    dataset: str = SYNTH_DATASET
    seed: int = 0
    epochs: int | None = None
    threads: int | None = None
    pictures: bool = True
    quick: bool = False

    @property
    def epochs_to_train(self) -> int:
        return self.epochs if self.epochs is not None else self.sizes.epochs


class Demo:
    """Runs the stages in order, keeping their results in :attr:`results` for later stages and the report."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.results: dict[str, Any] = {}
        self.metrics: dict[str, dict[str, float]] = {}  # row label -> R1, R5, R10, mAP, mINP
        self.outcomes: list[Outcome] = []
        self.sections: dict[str, Section] = {}  # report heading -> text lines and plots from a stage

    # ----------------------------------------------------------------- stages
    def stage_data(self) -> list[str]:
        build_dataset = require("han_deploy.data", "build_dataset")
        s = self.s
        if s.data is None:
            generate_dataset = require("han_deploy.data.synth", "generate_dataset")
            z = s.sizes
            root = generate_dataset(
                s.out / "data" / "synth",
                num_ids=z.num_ids,
                num_cameras=z.num_cameras,
                seed=s.seed,
                images_per_camera=z.images_per_camera,
                workers=s.threads,
                overwrite=True,
                progress=True,
            )
        else:
            root = s.data
        splits = build_dataset(s.dataset, root)
        self.results.update(data_root=Path(root), splits=splits)
        counts = (
            f"{len(splits.train)} train ({splits.num_train_pids} ids), {len(splits.query)} query, {len(splits.gallery)} gallery"
        )
        return [f"{'synthetic' if s.data is None else 'dataset'} root: {root}", counts]

    def stage_baseline(self) -> list[str]:
        features = require("han_deploy.evaluate.baseline", "color_histogram_features")
        evaluate_features = require("han_deploy.evaluate", "evaluate_features")
        splits = self.results["splits"]
        q = features([r.path for r in splits.query])
        g = features([r.path for r in splits.gallery])
        label = "colour histogram (no learning)"
        (q_pids, q_cams), (g_pids, g_cams) = _ids(splits.query), _ids(splits.gallery)
        self.metrics[label] = _pick(evaluate_features(q, g, q_pids, g_pids, q_cams, g_cams))
        return [_metric_line(label, self.metrics[label])]

    def _evaluate_torch(self, model: Any, label: str) -> list[str]:
        from .evaluate.protocol import headline

        evaluate_model = require("han_deploy.evaluate.torch_eval", "evaluate_model")
        self.metrics[label] = _pick(headline(evaluate_model(model, self.results["splits"], progress=True)))
        return [_metric_line(label, self.metrics[label])]

    def stage_untrained(self) -> list[str]:
        import torch

        from .model import create_model

        torch.manual_seed(self.s.seed)
        return self._evaluate_torch(create_model(VARIANT), f"{VARIANT} untrained (random weights)")

    def stage_train(self) -> list[str]:
        train, train_config = require("han_deploy.train", "train", "TrainConfig")
        from .model import load_checkpoint

        s = self.s
        cfg = train_config(
            variant=VARIANT,
            epochs=s.epochs_to_train,
            batch_size=s.sizes.batch_size,
            seed=s.seed,
            threads=s.threads,
            output=str(s.out / "train"),
            dataset=s.dataset if s.data is not None else "synthetic",
            command="han-demo",
        )
        result = train(self.results["splits"], cfg)
        model, _ = load_checkpoint(result.last_checkpoint)
        curves = result.output / "curves.png"
        self.results.update(checkpoint=result.last_checkpoint, model=model.eval(), curves=curves if curves.is_file() else None)
        loss = result.last_entry.get("loss", {}).get("total")
        return [
            f"{cfg.epochs} epoch(s) on {len(self.results['splits'].train)} images; last loss {loss:.4f}",
            f"checkpoint: {result.last_checkpoint}",
        ]

    def stage_evaluate(self) -> list[str]:
        return self._evaluate_torch(self.results["model"], f"{VARIANT} trained (PyTorch)")

    def stage_export(self) -> list[str]:
        export_options, run_export = require("han_deploy.export.exporter", "ExportOptions", "run_export")
        s = self.s
        market_layout = s.data is None or s.dataset in MARKET_LAYOUT
        out = s.out / "export"
        manifest = run_export(
            export_options(
                variant=VARIANT,
                output=out,
                checkpoint=self.results["checkpoint"],
                precisions=("fp32", "int8"),
                calib_size=s.sizes.calib_images,
                eval_data=self.results["data_root"] if market_layout else None,
                seed=s.seed,
                # a demo-length training run is not a deployable model: the gate is measured and shown,
                # but reduced-precision thresholds are not enforced (han-export enforces them on a checkpoint)
                enforce_gate=False,
            )
        )
        files = {a["file"]: a for a in manifest["artifacts"]}
        lines = []
        for r in manifest["parity"]["results"]:
            art = files.get(r["artifact"], {})
            size = f"{art['bytes'] / 2**20:.1f} MiB" if "bytes" in art else "?"
            verdict = "pass" if not r["failures"] else ("FAIL" if r["enforced"] else "below threshold (reported, not enforced)")
            gate = f"{r['statistic']} cosine {r['value']:.5f} (needs >= {r['threshold']})"
            line = f"{r['artifact']:<20} {size:>9}  gate {r['kind']}: {gate} {verdict}"
            if r.get("retrieval"):
                line += f"; R1 {r['retrieval']['R1']:.1f}% mAP {r['retrieval']['mAP']:.1f}%"
            lines.append(line)
        self.results["onnx"] = {name: out / file for name, file in CPU_ARTIFACTS.items() if file in files}
        self.sections["Export and parity gate"] = Section(
            [*lines, f"manifest: {out / 'manifest.json'} (cosine per sample vs PyTorch at batch {manifest['parity']['batches']})"]
        )
        return lines

    def stage_runtime(self) -> list[str]:
        extractor_cls = require("han_deploy.runtime", "Extractor")
        evaluate_features = require("han_deploy.evaluate", "evaluate_features")
        splits = self.results["splits"]
        q_paths = [r.path for r in splits.query]
        g_paths = [r.path for r in splits.gallery]
        feats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        lines = []
        for name, path in self.results["onnx"].items():
            with extractor_cls(path, batch_size=64, threads=self.s.threads) as ex:
                q, g = ex.embed(q_paths, errors="collect"), ex.embed(g_paths, errors="collect")
            for res in (q, g):
                for err in res.errors:
                    lines.append(f"skipped {err}")
            feats[name] = (q.embeddings, q.ok, g.embeddings, g.ok)
            label = f"{VARIANT} {name} ONNX (runtime)"
            q_pids, q_cams = _ids(splits.query, q.ok)
            g_pids, g_cams = _ids(splits.gallery, g.ok)
            self.metrics[label] = _pick(evaluate_features(q.embeddings[q.ok], g.embeddings[g.ok], q_pids, g_pids, q_cams, g_cams))
            lines.append(_metric_line(label, self.metrics[label]))
        self.results["runtime_features"] = feats
        return lines

    def stage_bench(self) -> list[str]:
        module_cases, artifact_case, run_options = require(
            "han_deploy.bench.cases", "module_cases", "artifact_case", "RunOptions"
        )
        measure_cases = require("han_deploy.bench.measure", "measure_cases")
        timing_plan = require("han_deploy.bench.timing", "TimingPlan")
        model_info = require("han_deploy.bench.models", "model_info")
        text_table, plot_latency_throughput = require("han_deploy.bench.report", "text_table", "plot_latency_throughput")
        z, model = self.s.sizes, self.results["model"]
        opts = run_options(threads=self.s.threads)
        workdir = self.s.out / "bench"
        todo = module_cases(VARIANT, model, model_info(model, VARIANT), ["torch"], ["fp32"], workdir, opts)
        # label the ONNX cases with the precision this pipeline exported them at (the case itself says "from artifact")
        todo += [dataclasses.replace(artifact_case(Path(p), opts), precision=name) for name, p in self.results["onnx"].items()]
        plan = timing_plan(warmup=2, iters=None, duration=z.bench_seconds, repeats=3)
        results = measure_cases(todo, z.bench_batches, plan, log=lambda msg: print(f"      {msg}", flush=True))
        plot = plot_latency_throughput(results, self.s.out / "plots" / "latency.png", title=f"{VARIANT} on this CPU")
        table = text_table(results).splitlines()
        self.sections["Latency"] = Section(table, [plot] if plot else [])
        print("\n".join(f"      {line}" for line in table))
        return _latency_summary(results)

    def stage_pictures(self) -> list[str]:
        from .viz.attention import render_attention
        from .viz.ranking import render_rankings

        if not self.s.pictures:
            return ["--no-pictures: none drawn"]
        splits = self.results["splits"]
        z, out = self.s.sizes, self.s.out / "pictures"
        first_of_each: dict[int, Path] = {}  # one query image per person, in query order
        for r in splits.query:
            first_of_each.setdefault(r.pid, r.path)
        people = list(first_of_each.values())[: z.attention_images]
        att, failures = render_attention(self.results["model"], people, out / "attention", label=f"{VARIANT} trained")
        lines = [f"attention: {len(att)} picture(s) in {out / 'attention'}"] + [f"skipped {p}: {e}" for p, e in failures]
        ranks: list[Path] = []
        feats = self.results.get("runtime_features", {})
        if "fp32" in feats:
            q, q_ok, g, g_ok = feats["fp32"]
            q_recs = [r for r, ok in zip(splits.query, q_ok, strict=True) if ok]
            g_recs = [r for r, ok in zip(splits.gallery, g_ok, strict=True) if ok]
            ranks = render_rankings(
                q_recs, g_recs, q[q_ok], g[g_ok], out / "rank", num_queries=z.rank_queries, seed=self.s.seed, title="FP32 ONNX"
            )
            lines.append(f"ranking: {len(ranks)} picture(s) in {out / 'rank'}")
        else:
            lines.append("ranking: skipped (no FP32 ONNX embeddings from the runtime stage)")
        self.results.update(attention_pictures=att, rank_pictures=ranks)
        return lines

    # ----------------------------------------------------------------- driver
    def stages(self) -> list[Stage]:
        return [
            Stage("data", "dataset", (), self.stage_data),
            Stage("baseline", "colour-histogram baseline", ("splits",), self.stage_baseline),
            Stage("untrained", "untrained HAN-small", ("splits",), self.stage_untrained),
            Stage("train", "training HAN-small", ("splits",), self.stage_train),
            Stage("evaluate", "evaluation of the trained model", ("model",), self.stage_evaluate),
            Stage("export", "FP32 + INT8 ONNX export with parity gate", ("checkpoint",), self.stage_export),
            Stage("runtime", "torch-free extraction + evaluation of the ONNX files", ("onnx",), self.stage_runtime),
            Stage("bench", "latency benchmark", ("onnx",), self.stage_bench),
            Stage("pictures", "attention and ranking pictures", ("model",), self.stage_pictures),
        ]

    def run(self) -> int:
        """Run every stage, write the report, print the summary; 0 when every stage succeeded."""
        stages = self.stages()
        start = time.perf_counter()
        for i, stage in enumerate(stages, 1):
            print(f"[{i}/{len(stages)}] {stage.title} ...", flush=True)
            t0 = time.perf_counter()
            missing = [k for k in stage.needs if k not in self.results]
            if missing:
                outcome = Outcome(stage.name, stage.title, "skipped", 0.0, [f"needs {', '.join(missing)} from an earlier stage"])
            else:
                try:
                    outcome = Outcome(stage.name, stage.title, "ok", 0.0, stage.run())
                except StageUnavailable as exc:
                    outcome = Outcome(
                        stage.name, stage.title, "unavailable", 0.0, [f"stage {stage.name} not available yet: {exc}"]
                    )
                except Exception as exc:  # report and go on: later independent stages still run
                    tb = traceback.format_exc()
                    (self.s.out / f"error-{stage.name}.txt").write_text(tb)
                    outcome = Outcome(
                        stage.name,
                        stage.title,
                        "failed",
                        0.0,
                        [f"{type(exc).__name__}: {exc}", f"traceback: {self.s.out}/error-{stage.name}.txt"],
                    )
            outcome.seconds = time.perf_counter() - t0
            self.outcomes.append(outcome)
            for line in outcome.lines:
                print(f"      {line}")
            print(f"      -> {outcome.status} in {outcome.seconds:.1f} s", flush=True)
        total = time.perf_counter() - start
        from .viz.report import write_report

        report = write_report(self, total)
        self.print_summary(total, report)
        return 0 if all(o.status == "ok" for o in self.outcomes) else 1

    def print_summary(self, total: float, report: Path) -> None:
        print("\n=== han-demo summary ===")
        for o in self.outcomes:
            print(f"  {o.name:<10} {o.status:<12} {o.seconds:7.1f} s")
        if self.metrics:
            print(f"  {'model':<44} " + " ".join(f"{k:>6}" for k in METRIC_KEYS))
            for label, m in self.metrics.items():
                print(f"  {label:<44} " + " ".join(f"{100 * m[k]:6.1f}" for k in METRIC_KEYS))
        print(f"  total {total:.1f} s")
        print(f"report: {report}")


def _ids(records: list[Any], keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Person ids and camera ids of ``records`` (only the rows where ``keep`` is true)."""
    pids = np.array([r.pid for r in records], dtype=np.int64)
    cams = np.array([r.camid for r in records], dtype=np.int64)
    return (pids, cams) if keep is None else (pids[keep], cams[keep])


def _latency_summary(results: list[dict[str, Any]]) -> list[str]:
    """One line per batch size: median latency of every case that ran (the full table goes to the report)."""
    per_batch: dict[int, list[str]] = {}
    for res in results:
        for row in res["batches"]:
            if res["status"] == "ok" and row.get("status") == "ok":
                per_batch.setdefault(row["batch"], []).append(f"{res['backend']} {res['precision']} {row['p50_ms']:.1f} ms")
    return [f"batch {b} p50: {', '.join(cases)}" for b, cases in sorted(per_batch.items())] or ["no case ran"]


def _pick(result: dict[str, Any]) -> dict[str, float]:
    """The five headline metrics of a result dict (fractions)."""
    missing = [k for k in METRIC_KEYS if k not in result]
    if missing:
        raise KeyError(f"evaluation result lacks {', '.join(missing)}: got keys {sorted(result)}")
    return {k: float(result[k]) for k in METRIC_KEYS}


def _metric_line(label: str, m: dict[str, float]) -> str:
    return f"{label}: " + ", ".join(f"{k} {100 * m[k]:.1f}%" for k in METRIC_KEYS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="han-demo",
        description="Generate synthetic re-id data, train HAN-small briefly, evaluate, export FP32/INT8 ONNX "
        "through the parity gate, extract with the torch-free runtime, benchmark, draw attention and ranking "
        "pictures, and write one Markdown report.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/demo"),
        help="output folder for data, model, ONNX files, pictures and report (default runs/demo)",
    )
    p.add_argument("--quick", action="store_true", help="tiny run for tests: a few dozen images, 1 epoch, short benchmark")
    p.add_argument("--data", type=Path, help="use this dataset root instead of generating synthetic data (needs --dataset)")
    p.add_argument("--dataset", help="name of the dataset at --data, as han_deploy.data.build_dataset knows it (e.g. market1501)")
    p.add_argument("--epochs", type=int, help="training epochs (default: 12, or 1 with --quick)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic data, the initial weights and the picture samples (default 0)"
    )
    p.add_argument("--threads", type=int, help="CPU threads for PyTorch, data generation and ONNX Runtime (default: all cores)")
    p.add_argument(
        "--no-pictures", action="store_true", help="do not draw attention or ranking pictures (e.g. for data of real people)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.data is None) != (args.dataset is None):
        parser.error("--data and --dataset go together")
    if args.data is not None and not args.data.is_dir():
        parser.error(f"--data: folder not found: {args.data}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        out=args.out,
        sizes=QUICK if args.quick else DEFAULT,
        data=args.data,
        dataset=args.dataset or SYNTH_DATASET,
        seed=args.seed,
        epochs=args.epochs,
        threads=args.threads,
        pictures=not args.no_pictures,
        quick=args.quick,
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    (args.out / "command.json").write_text(
        json.dumps({"argv": sys.argv if argv is None else ["han-demo", *argv], "cwd": os.getcwd()}, indent=1) + "\n"
    )
    return Demo(settings).run()


if __name__ == "__main__":
    sys.exit(main())
