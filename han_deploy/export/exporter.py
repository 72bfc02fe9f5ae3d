"""One export run: PyTorch -> FP32 / FP16 / INT8 ONNX (+ engines, recipes), gated, with a manifest.

Everything is written into a staging folder inside the output folder and moved into place only
after every artifact passed its gate, so a failed run leaves no half-written file behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import INPUT_NAME, OUTPUT_NAME, HANConfig
from . import calibration, graph_checks, manifest, parity, quantize, tensorrt_build
from .onnx_export import MIN_OPSET, export_onnx

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("triton", "deepstream")
# artifact file -> (precision, gate kind, INT8 flavour)
ONNX_FILES = {
    "model.onnx": ("fp32", "fp32", None),
    "model.fp16.onnx": ("fp16", "fp16", None),
    "model.int8.onnx": ("int8", "int8", "tensorrt"),
    "model.int8-cpu.onnx": ("int8", "int8-cpu", "cpu"),
}
ENGINE_SOURCES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
GATE_SAMPLES = 32


class ExportError(RuntimeError):
    """Bad input or a failed step; the message names the input or artifact."""


@dataclass
class ExportOptions:
    """What ``han-export`` does (one field per flag; see ``han-export --help``)."""

    variant: str = "medium"
    output: Path = Path("export-out")
    checkpoint: Path | None = None
    precisions: tuple[str, ...] = PRECISIONS
    calib_data: Path | None = None
    calib_method: str = "percentile"
    calib_size: int = 128
    batch: int = 32
    min_batch: int = 1
    opt_batch: int | None = None
    opset: int = 17
    simplify: bool = True
    engine: bool = False
    workspace: int = 4096  # MiB
    fp16_io: bool = False  # FP16 model with float16 input/output instead of float32
    enforce_gate: bool | None = None  # reduced-precision thresholds: None = enforce iff --checkpoint (trained weights)
    eval_data: Path | None = None
    max_map_drop: float = parity.MAX_MAP_DROP
    targets: tuple[str, ...] = ()
    seed: int = 0
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _check_options(opts: ExportOptions) -> None:
    if opts.opset < MIN_OPSET:
        raise ExportError(f"--opset {opts.opset} is too old: HAN needs GridSample, which ONNX has from opset {MIN_OPSET}")
    unknown = set(opts.precisions) - set(PRECISIONS)
    if unknown or not opts.precisions:
        raise ExportError(
            f"--precision takes a comma list of {', '.join(PRECISIONS)}; got {','.join(opts.precisions) or 'nothing'}"
        )
    bad_targets = set(opts.targets) - set(TARGETS)
    if bad_targets:
        raise ExportError(f"--target must be one of {', '.join(TARGETS)}; got {', '.join(sorted(bad_targets))}")
    if opts.calib_method not in quantize.CALIB_METHODS:
        raise ExportError(f"--calib-method must be one of {', '.join(quantize.CALIB_METHODS)}")
    if opts.calib_size < 1:
        raise ExportError(f"--calib-size must be >= 1, got {opts.calib_size}")
    if opts.engine and tensorrt_build.tensorrt_module() is None:
        raise ExportError(
            "--engine needs TensorRT with a builder (the tensorrt package here has no Builder); install TensorRT 10/11"
        )
    if opts.eval_data is not None and not Path(opts.eval_data).is_dir():
        raise ExportError(f"--eval-data {opts.eval_data} is not a directory")


def _profile(opts: ExportOptions, cfg: HANConfig) -> tensorrt_build.BatchProfile:
    h, w = cfg.preprocess.input_size
    opt_batch = opts.opt_batch if opts.opt_batch is not None else max(opts.min_batch, min(opts.batch, max(1, opts.batch // 2)))
    try:
        return tensorrt_build.BatchProfile(opts.min_batch, opt_batch, opts.batch, h, w)
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def load_model(opts: ExportOptions) -> tuple[Any, bool]:
    """The model to export and whether it carries trained weights; validates ``--checkpoint``."""
    import torch

    from ..model import create_model, load_checkpoint, model_config, read_checkpoint_header

    try:
        wanted = model_config(opts.variant)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if opts.checkpoint is None:
        warnings.warn(
            "no --checkpoint: exporting a freshly initialised network (fine for FLOPs and latency, useless for matching); "
            "reduced-precision parity is reported but not enforced",
            stacklevel=2,
        )
        torch.manual_seed(opts.seed)
        return create_model(opts.variant).eval(), False
    try:
        cfg, _ = read_checkpoint_header(opts.checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        raise ExportError(f"--checkpoint: {exc}") from None
    if cfg.variant != wanted.variant:
        raise ExportError(f"--checkpoint {opts.checkpoint} holds a han_{cfg.variant} model, but --variant is {opts.variant}")
    model, _ = load_checkpoint(opts.checkpoint)
    model.reset_classifier(0)
    return model.eval(), True


def _gate_inputs(opts: ExportOptions, cfg: HANConfig, calib: list[np.ndarray] | None) -> tuple[np.ndarray, str]:
    """32 preprocessed crops the gate compares on: synthetic, disjoint from the calibration seed."""
    from ..runtime.preprocess import preprocess

    try:
        crops = calibration.synthetic_crops(GATE_SAMPLES, seed=opts.seed + 1)
        source = f"synthetic crops (seed {opts.seed + 1})"
    except calibration.CalibrationDataError:
        if not calib:
            raise
        crops = [calib[i % len(calib)] for i in range(GATE_SAMPLES)]
        source = "calibration crops (synthetic generator unavailable)"
    return preprocess(crops, cfg.preprocess), source


def _stage_dir(output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".han-export-", dir=output))


def _publish(stage: Path, output: Path) -> None:
    """Move every staged file or folder into ``output`` (replacing same-named ones)."""
    for item in sorted(stage.iterdir()):
        dest = output / item.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(item, dest)


def run_export(opts: ExportOptions) -> dict[str, Any]:
    """Run the whole export; return the manifest dict. Raises :class:`ExportError` or :class:`parity.ParityGateError`."""
    _check_options(opts)
    output = Path(opts.output)
    model, trained = load_model(opts)
    cfg: HANConfig = model.cfg
    profile = _profile(opts, cfg)
    calib = None
    if "int8" in opts.precisions:
        try:
            calib = calibration.calibration_crops(opts.calib_data, opts.calib_size, opts.seed)
        except calibration.CalibrationDataError as exc:
            raise ExportError(f"--calib-data: {exc}") from None
    stage = _stage_dir(output)
    try:
        data = _export_into(stage, opts, model, trained, profile, calib)
        manifest.write_manifest(stage / manifest.MANIFEST_NAME, data)
        _publish(stage, output)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return data


def _export_into(
    stage: Path, opts: ExportOptions, model: Any, trained: bool, profile: tensorrt_build.BatchProfile, calib: Any
) -> dict[str, Any]:
    import torch

    from ..bench.flops import count_flops_torch

    cfg: HANConfig = model.cfg
    flops = count_flops_torch(model)
    log.info("exporting han_%s to FP32 ONNX (opset %d)", cfg.variant, opts.opset)
    export_onnx(model, stage / "model.onnx", opset=opts.opset, simplify=opts.simplify, flops=flops, precision="fp32")
    files = ["model.onnx"]
    if "fp16" in opts.precisions:
        from .fp16 import convert_fp16

        log.info("converting to FP16")
        convert_fp16(stage / "model.onnx", stage / "model.fp16.onnx", keep_io_types=not opts.fp16_io)
        files.append("model.fp16.onnx")
    quant_reports: dict[str, Any] = {}
    if "int8" in opts.precisions:
        reader = calibration.CropCalibrationReader(calib, cfg.preprocess)
        for name, flavour in (("model.int8.onnx", "tensorrt"), ("model.int8-cpu.onnx", "cpu")):
            log.info("quantizing to INT8 (%s flavour, %s calibration on %d crops)", flavour, opts.calib_method, len(calib))
            report = quantize.quantize_int8(stage / "model.onnx", stage / name, reader, flavour, opts.calib_method)
            quant_reports[name] = report
            files.append(name)
        kept_convs = quant_reports["model.int8-cpu.onnx"].to_dict()["kept_float_convs"]
        stray = graph_checks.unexpected_float_convs(graph_checks.optimized_graph(stage / "model.int8-cpu.onnx"), kept_convs)
        if stray:
            raise ExportError(f"model.int8-cpu.onnx: ONNX Runtime left {len(stray)} conv(s) in float: {', '.join(stray[:5])}")

    # parity gate
    log.info("parity gate: %d artifacts x batch %s", len(files), "/".join(map(str, parity.GATE_BATCHES)))
    inputs, gate_source = _gate_inputs(opts, cfg, calib)
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs)).numpy()
    eval_split = parity.load_eval_split(opts.eval_data, cfg.preprocess) if opts.eval_data is not None else None
    results: list[parity.ParityResult] = []
    fp32_retrieval = None
    for name in files:
        _, kind, _ = ONNX_FILES[name]
        infer = parity.ort_infer(stage / name)
        per_batch = parity.cosine_parity(infer, reference, inputs)
        retrieval = None
        if eval_split is not None:
            retrieval = parity.retrieval_metrics(infer, *eval_split)
            if fp32_retrieval is None:
                fp32_retrieval = retrieval
            retrieval["map_drop"] = fp32_retrieval["mAP"] - retrieval["mAP"]
            retrieval["r1_drop"] = fp32_retrieval["R1"] - retrieval["R1"]
        enforce = trained if opts.enforce_gate is None else opts.enforce_gate
        results.append(parity.judge(name, kind, per_batch, enforce, retrieval, opts.max_map_drop))
    for r in results:
        log.info(
            "gate %s: %s cosine %.6f (threshold %s)%s", r.artifact, r.statistic, r.value, r.threshold, "" if r.passed else " FAIL"
        )
        if r.failures and not r.enforced:
            warnings.warn(f"{r.artifact}: {'; '.join(r.failures)} (reported, not enforced)", stacklevel=2)
    if not all(r.passed for r in results):
        raise parity.ParityGateError(results)

    # engines (unverified: needs TensorRT and a GPU)
    engines = []
    cache = stage / "timing.cache"
    for precision in opts.precisions:
        source = ENGINE_SOURCES[precision]
        engine = f"model.{precision}.plan"
        entry: dict[str, Any] = {
            "file": engine,
            "precision": precision,
            "source": source,
            "profile": profile.to_dict(),
            "trtexec": tensorrt_build.trtexec_command(source, engine, profile, opts.workspace, "timing.cache"),
            "built": False,
        }
        if opts.engine:
            log.info("building TensorRT %s engine", precision)
            tensorrt_build.build_engine(stage / source, stage / engine, profile, opts.workspace, cache)
            entry.update(manifest.file_entry(stage / engine), built=True, gpu=tensorrt_build.gpu_name())
        engines.append(entry)

    artifacts = []
    for name in files:
        precision, kind, flavour = ONNX_FILES[name]
        extra: dict[str, Any] = {"precision": precision, "gate": kind}
        if flavour:
            extra["int8_flavour"] = flavour
            extra["quantization"] = quant_reports[name].to_dict()
        artifacts.append(manifest.file_entry(stage / name, **extra))
    artifacts += [e for e in engines if e["built"]]

    recipes: dict[str, Any] = {}
    if "deepstream" in opts.targets:
        recipes["deepstream"] = _deepstream(stage, opts, model, inputs)
    if "triton" in opts.targets:
        recipes["triton"] = _triton(stage, opts, cfg, files, engines)

    return {
        "variant": cfg.variant,
        "trained_weights": trained,
        "checkpoint": str(opts.checkpoint) if opts.checkpoint else None,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", 3, *cfg.preprocess.input_size]},
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", cfg.embedding_dim],
            "layout": cfg.embedding_layout,
        },
        "preprocess": cfg.to_dict()["preprocess"],
        "flops": flops,
        "opset": opts.opset,
        "versions": manifest.versions(),
        "profile": profile.to_dict(),
        "calibration": None
        if calib is None
        else {
            "source": str(opts.calib_data) if opts.calib_data else "synthetic",
            "size": len(calib),
            "method": opts.calib_method,
        },
        "artifacts": artifacts,
        "engines": engines,
        "parity": {
            "inputs": gate_source,
            "batches": list(parity.GATE_BATCHES),
            "enforced_for_reduced_precision": trained if opts.enforce_gate is None else opts.enforce_gate,
            "results": [r.to_dict() for r in results],
        },
        "recipes": recipes,
    }


def _deepstream(stage: Path, opts: ExportOptions, model: Any, inputs: np.ndarray) -> dict[str, Any]:
    import torch

    from ..runtime.preprocess import resize_crop
    from . import deepstream

    cfg: HANConfig = model.cfg
    precision = "fp16" if "fp16" in opts.precisions else "fp32"
    onnx_file = "model.fp16.onnx" if precision == "fp16" else "model.onnx"
    text = deepstream.deepstream_reid_config(
        cfg, f"../{onnx_file}", f"../model.{precision}.plan", precision, batch_size=opts.batch
    )
    path = deepstream.write_deepstream_recipe(stage, text)
    crops = calibration.synthetic_crops(GATE_SAMPLES, seed=opts.seed + 1)
    rgb = np.stack([resize_crop(c, cfg.preprocess) for c in crops])

    def embed(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    scale, offsets = deepstream.scale_and_offsets(cfg)
    return {
        "file": str(path.relative_to(stage)),
        "netScaleFactor": scale,
        "offsets": offsets,
        "single_scale_cosine_vs_exact": deepstream.single_scale_cosine(embed, rgb, cfg),
    }


def _triton(stage: Path, opts: ExportOptions, cfg: HANConfig, files: list[str], engines: list[dict]) -> dict[str, Any]:
    from .triton import TritonArtifact, write_triton_repository

    artifacts = []
    for name in files:
        precision, _, flavour = ONNX_FILES[name]
        artifacts.append(TritonArtifact(stage / name, precision=precision, flavour=flavour))
    for e in engines:
        if e["built"]:
            artifacts.append(TritonArtifact(stage / e["file"], precision=e["precision"], max_batch=opts.batch))
    root = write_triton_repository(stage / "triton", artifacts, config=cfg, max_batch_size=opts.batch)
    return {"repository": str(Path(root).relative_to(stage))}
