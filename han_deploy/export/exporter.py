"""One export run: PyTorch -> FP32 / FP16 / INT8 ONNX (+ engines, recipes), gated, with a manifest.

Everything is written into a staging folder inside the output folder and moved into place only
after the gate, so no half-written file is ever left behind. An artifact that fails its gate is
refused (left out, named in the manifest) and the others are written; a failed FP32 gate, or
``strict``, writes nothing (docs/export.md "When a gate fails"). The gate compares on the user's
crops (--eval-data, or --calib-data crops held apart from calibration) and falls back to
synthetic crops only without either (docs/export.md "The parity gate").
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import METADATA_KEY, HANConfig, contract_metadata
from . import calibration, graph_checks, manifest, parity, quantize, sensitivity, tensorrt_build
from .onnx_export import MIN_OPSET, export_onnx

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8", "int8-fp16")  # int8-fp16: the TensorRT INT8 model with an FP16 body, on request
DEFAULT_PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("triton", "deepstream")
# artifact file -> (precision, gate kind, INT8 flavour)
ONNX_FILES = {
    "model.onnx": ("fp32", "fp32", None),
    "model.fp16.onnx": ("fp16", "fp16", None),
    "model.int8.onnx": ("int8", "int8", "tensorrt"),
    "model.int8-cpu.onnx": ("int8", "int8-cpu", "cpu"),
    "model.int8-fp16.onnx": ("int8", "int8", "tensorrt-fp16"),
    "model.int8-qat.onnx": ("int8", "int8", "tensorrt-qat"),  # --qat-epochs: the TensorRT flavour, fine-tuned
}
ENGINE_SOURCES = {
    "fp32": "model.onnx",
    "fp16": "model.fp16.onnx",
    "int8": "model.int8.onnx",
    "int8-fp16": "model.int8-fp16.onnx",
}
GATE_SAMPLES = 32
SENSITIVITY_MARGIN = 0.002  # the sensitivity pass aims this far above the gate threshold (probe crops differ)
SYNTHETIC_CALIBRATION_WARNING = (
    "INT8 is calibrated on SYNTHETIC people (no --calib-data): its ranges are not your cameras', so the INT8 "
    "artifacts are not deployable; pass --calib-data DIR with crops from the target cameras, or "
    "--calib-data synthetic to ask for this on purpose"
)


class ExportError(RuntimeError):
    """Bad input or a failed step; the message names the input or artifact."""


@dataclass
class ExportOptions:
    """What ``han-export`` does (one field per flag; see ``han-export --help``)."""

    variant: str = "medium"
    output: Path = Path("export-out")
    checkpoint: Path | None = None
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS
    calib_data: Path | str | None = None  # a folder, or calibration.SYNTHETIC
    calib_method: str = "percentile"
    calib_size: int = 128
    batch: int = 32
    min_batch: int = 1
    opt_batch: int | None = None
    opset: int = 17
    simplify: bool = True
    engine: bool = False
    workspace: int = 4096  # MiB
    timing_cache: Path | None = None  # TensorRT timing cache, loaded and saved back; None: OUTPUT/timing.cache
    fp16_io: bool = False  # FP16 model with float16 input/output instead of float32
    enforce_gate: bool | None = None  # reduced-precision thresholds: None = enforce iff --checkpoint (trained weights)
    eval_data: Path | None = None
    max_map_drop: float = parity.MAX_MAP_DROP
    targets: tuple[str, ...] = ()
    seed: int = 0
    sensitivity_layers: int = 12  # at most this many INT8 layers kept float when a flavour misses its target
    qat_epochs: int = 0  # quantization-aware fine-tuning epochs for model.int8-qat.onnx (0: off)
    qat_data: Path | None = None  # QAT: folder of person crops (None: the calib_data folder)
    qat_lr: float | None = None  # QAT: peak lr (None: qat.DEFAULT_LR)
    qat_scales: str | None = None  # QAT: "fixed" (None: the PTQ activation scales) or "learned" (fine-tuned, LSQ)
    strict: bool = False  # a failed gate writes nothing (default: write what passed, refuse what failed)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _check_options(opts: ExportOptions) -> Any:
    """Refuse bad flags before anything is exported; return the checked QAT request (None without --qat-epochs)."""
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
    return _qat_request(opts)  # checked now, not after the FP32 and PTQ artifacts; kept for the QAT step


def _makes_int8(opts: ExportOptions) -> bool:
    """Whether INT8 models are made: for ``int8``, or for ``int8-fp16`` (made from the TensorRT INT8 model)."""
    return bool({"int8", "int8-fp16"} & set(opts.precisions))


def _qat_request(opts: ExportOptions) -> Any:
    """The ``--qat-epochs`` request (a ``qat.QATRequest``, None without QAT), or an :class:`ExportError` naming a bad flag."""
    from . import qat  # imports torch and the trainer's data tools: when an export runs, not for --help

    try:
        return qat.check_request(
            opts.qat_epochs,
            opts.qat_data,
            opts.calib_data,
            opts.qat_lr,
            opts.checkpoint,
            _makes_int8(opts),
            opts.seed,
            opts.qat_scales,
        )
    except qat.QATError as exc:
        raise ExportError(str(exc)) from None


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

    from ..model import create_model, list_models, load_checkpoint, model_config, read_checkpoint_header

    try:
        wanted = model_config(opts.variant)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if not isinstance(wanted, HANConfig):  # the registry also builds the benchmark's comparator networks
        han = ", ".join(list_models("han_*"))
        raise ExportError(f"--variant {opts.variant} is not a HAN variant ({han}): han-export exports HAN models only")
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


@dataclass
class ExportData:
    """What calibrates INT8, what QAT fine-tunes on and what the gate compares on, each with where it came from."""

    calib: list[np.ndarray] | None
    calib_source: str | None
    gate_inputs: np.ndarray
    gate_source: str
    eval_split: tuple[np.ndarray, np.ndarray, dict] | None
    probe: list[np.ndarray] | None = None  # the sensitivity pass's crops: held apart from calibration and the gate
    qat: Any = None  # the checked --qat-epochs request (qat.QATRequest), None without QAT


def _select_data(opts: ExportOptions, cfg: HANConfig) -> ExportData:
    """Gate on --eval-data, else on crops of --calib-data held apart from calibration, else on synthetic crops.

    The sensitivity pass probes on other crops held apart from calibration (scored on the crops the ranges
    were fitted to, it overrates the INT8 model: docs/export.md "Sensitivity pass").
    """
    from ..contract.preprocess import preprocess

    try:
        eval_split = parity.load_eval_split(opts.eval_data, cfg.preprocess) if opts.eval_data is not None else None
    except ValueError as exc:
        raise ExportError(f"--eval-data: {exc}") from None
    folder = None if opts.calib_data in (None, calibration.SYNTHETIC) else Path(opts.calib_data)
    int8 = _makes_int8(opts)
    calib, held, probe = None, None, None
    if folder is not None and eval_split is None:
        calib, apart = calibration.split_crops(folder, opts.calib_size, 2 * GATE_SAMPLES, opts.seed)
        held, probe = (apart[::2], apart[1::2]) if len(apart) > 1 else (apart, None)
    elif folder is not None and int8:
        calib, probe = calibration.split_crops(folder, opts.calib_size, GATE_SAMPLES, opts.seed)
    if eval_split is not None:
        pool = np.concatenate(eval_split[:2])
        pick = np.sort(np.random.default_rng(opts.seed).permutation(len(pool))[:GATE_SAMPLES])
        gate, source = pool[pick], f"{len(pick)} crops of --eval-data {opts.eval_data}"
    elif held is not None:
        gate, source = preprocess(held, cfg.preprocess), f"{len(held)} crops of {folder} held apart from calibration"
    else:
        crops = calibration.synthetic_crops(GATE_SAMPLES, seed=opts.seed + 1)
        gate = preprocess(crops, cfg.preprocess)
        source = f"synthetic crops (seed {opts.seed + 1}): no --eval-data or --calib-data given"
        log.warning("gate compares on %s", source)
    calib_source = str(folder) if calib is not None else None
    if int8 and calib is None:
        if opts.calib_data is None:
            warnings.warn(SYNTHETIC_CALIBRATION_WARNING, stacklevel=3)
        calib, calib_source = calibration.synthetic_crops(opts.calib_size, opts.seed), calibration.SYNTHETIC
        probe = calibration.synthetic_crops(GATE_SAMPLES, seed=opts.seed + 2)
    return ExportData(calib if int8 else None, calib_source if int8 else None, gate, source, eval_split, probe if int8 else None)


def _stage_dir(output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".han-export-", dir=output))


def _publish(stage: Path, output: Path, refused: list[str]) -> None:
    """Move every staged file or folder into ``output`` (replacing same-named ones); drop stale refused artifacts.

    A refused artifact left in ``output`` by an earlier export would sit beside a manifest that no longer
    lists it, so it goes, with the engine built from it.
    """
    for name in refused:
        (output / name).unlink(missing_ok=True)
        for precision, source in ENGINE_SOURCES.items():
            if source == name:
                (output / f"model.{precision}.plan").unlink(missing_ok=True)
    for item in sorted(stage.iterdir()):
        dest = output / item.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(item, dest)


class RefusedArtifactsError(parity.ParityGateError):
    """Reduced-precision artifacts failed their gate and were left out; ``manifest`` is what was written."""

    def __init__(self, results: list[parity.ParityResult], written: dict[str, Any]) -> None:
        super().__init__(results)
        self.manifest = written


def run_export(opts: ExportOptions) -> dict[str, Any]:
    """Run the whole export; return the manifest dict.

    Raises :class:`ExportError` on bad input and :class:`parity.ParityGateError` when nothing was written
    (FP32 failed, or ``strict``); :class:`RefusedArtifactsError` when the artifacts that passed were written
    and the ones that failed were refused.
    """
    qat_request = _check_options(opts)
    output = Path(opts.output)
    model, trained = load_model(opts)
    cfg: HANConfig = model.cfg
    profile = _profile(opts, cfg)
    try:
        data = _select_data(opts, cfg)
    except calibration.CalibrationDataError as exc:
        raise ExportError(f"--calib-data: {exc}") from None
    data.qat = qat_request
    stage = _stage_dir(output)
    try:
        result, results = _export_into(stage, opts, model, trained, profile, data)
        manifest.write_manifest(stage / manifest.MANIFEST_NAME, result)
        _publish(stage, output, result["parity"]["refused"])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if result["parity"]["refused"]:
        raise RefusedArtifactsError(results, result)
    return result


def _quantize(
    stage: Path, opts: ExportOptions, cfg: HANConfig, calib: list[np.ndarray], held: list[np.ndarray] | None
) -> dict[str, Any]:
    """Both INT8 flavours from ``stage/model.onnx``, each with the sensitivity pass; name -> quantization report.

    The pass probes on ``held`` (crops apart from calibration and the gate), else on calibration crops.
    """
    from ..contract.preprocess import preprocess

    reader = calibration.CropCalibrationReader(calib, cfg.preprocess)
    probe = preprocess(held, cfg.preprocess) if held else reader.inputs[:GATE_SAMPLES]
    reference = parity.run_batched(parity.ort_infer(stage / "model.onnx"), probe, GATE_SAMPLES)
    reports: dict[str, Any] = {}
    for name, kind, flavour in (("model.int8.onnx", "int8", "tensorrt"), ("model.int8-cpu.onnx", "int8-cpu", "cpu")):
        log.info("quantizing to INT8 (%s flavour, %s calibration on %d crops)", flavour, opts.calib_method, len(calib))
        report = quantize.quantize_int8(stage / "model.onnx", stage / name, reader, flavour, opts.calib_method)
        found = sensitivity.keep_most_harmful(
            stage / name,
            probe,
            reference,
            parity.THRESHOLDS[kind].value + SENSITIVITY_MARGIN,
            opts.sensitivity_layers,
            functools.partial(parity.ort_infer, session=parity.GATE_SESSIONS[kind]),
        )
        if found.kept:
            log.info("%s: keeping %d layer(s) float after the sensitivity pass: %s", name, len(found.kept), ", ".join(found.kept))
            report = quantize.quantize_int8(
                stage / "model.onnx", stage / name, reader, flavour, opts.calib_method, extra_float=tuple(found.kept)
            )
        reports[name] = {**report.to_dict(), "sensitivity": found.to_dict()}
    kept_convs = reports["model.int8-cpu.onnx"]["kept_float_convs"]
    stray = graph_checks.unexpected_float_convs(graph_checks.optimized_graph(stage / "model.int8-cpu.onnx"), kept_convs)
    if stray:
        raise ExportError(f"model.int8-cpu.onnx: ONNX Runtime left {len(stray)} conv(s) in float: {', '.join(stray[:5])}")
    return reports


def _gate(
    stage: Path, files: list[str], opts: ExportOptions, reference: np.ndarray, data: ExportData, enforce: bool
) -> list[parity.ParityResult]:
    """Every artifact's parity, judged in its gate session; INT8-TRT also reports the default ONNX Runtime session."""
    results: list[parity.ParityResult] = []
    fp32_retrieval = None
    for name in files:
        kind = ONNX_FILES[name][1]
        measured = {}
        for session in dict.fromkeys((parity.GATE_SESSIONS[kind], "ort-default")):
            infer = parity.ort_infer(stage / name, session=session)
            retrieval = None
            if data.eval_split is not None:
                retrieval = parity.retrieval_metrics(infer, *data.eval_split)
                fp32_retrieval = fp32_retrieval or dict(retrieval)
                retrieval["map_drop"] = fp32_retrieval["mAP"] - retrieval["mAP"]
                retrieval["r1_drop"] = fp32_retrieval["R1"] - retrieval["R1"]
            measured[session] = (parity.cosine_parity(infer, reference, data.gate_inputs), retrieval)
        gate_session = parity.GATE_SESSIONS[kind]
        per_batch, retrieval = measured.pop(gate_session)
        result = parity.judge(name, kind, per_batch, enforce, retrieval, opts.max_map_drop, session=gate_session)
        result.reported = {s: parity.summarise(*m) for s, m in measured.items()}
        results.append(result)
    return results


def _export_into(
    stage: Path, opts: ExportOptions, model: Any, trained: bool, profile: tensorrt_build.BatchProfile, data: ExportData
) -> tuple[dict[str, Any], list[parity.ParityResult]]:
    """Write, gate and describe every artifact in ``stage``; the manifest dict and every gate result."""
    from ..model.flops import count_flops_torch

    cfg: HANConfig = model.cfg
    flops = count_flops_torch(model)
    files, quant_reports = _write_onnx(stage, opts, model, flops, data)
    enforce = trained if opts.enforce_gate is None else opts.enforce_gate
    results = _run_gate(stage, files, opts, model, data, enforce)
    refused = _refuse_failed(stage, results, opts.strict)
    files = [name for name in files if name not in refused]
    engines = _engines(stage, opts, profile, files)
    artifacts = [_artifact_entry(stage, name, quant_reports) for name in files] + [e for e in engines if e["built"]]
    recipes: dict[str, Any] = {}
    if "deepstream" in opts.targets:
        recipes["deepstream"] = _deepstream(stage, opts, model, files)
    if "triton" in opts.targets:
        recipes["triton"] = _triton(stage, opts, cfg, files, engines)
    return {
        "variant": cfg.variant,
        "trained_weights": trained,
        "checkpoint": str(opts.checkpoint) if opts.checkpoint else None,
        "contract": json.loads(contract_metadata(cfg, opset=opts.opset, flops=flops)[METADATA_KEY]),
        "flops": flops,
        "versions": manifest.versions(),
        "profile": profile.to_dict(),
        "calibration": None
        if data.calib is None
        else {"source": data.calib_source, "size": len(data.calib), "method": opts.calib_method},
        "artifacts": artifacts,
        "engines": engines,
        "parity": {
            "inputs": data.gate_source,
            "batches": list(parity.GATE_BATCHES),
            "enforced_for_reduced_precision": enforce,
            "results": [r.to_dict() for r in results],
            "refused": refused,
            # what quantization (and its sensitivity pass) did for the INT8 artifacts that were refused
            "refused_quantization": {name: quant_reports[name] for name in refused if name in quant_reports},
        },
        "recipes": recipes,
    }, results


def _write_onnx(stage: Path, opts: ExportOptions, model: Any, flops: int, data: ExportData) -> tuple[list[str], dict[str, Any]]:
    """FP32, then FP16, both INT8 flavours and the FP16-body INT8 as asked; the file names written and the INT8 reports."""
    cfg: HANConfig = model.cfg
    log.info("exporting han_%s to FP32 ONNX (opset %d)", cfg.variant, opts.opset)
    export_fp32 = functools.partial(export_onnx, opset=opts.opset, simplify=opts.simplify, flops=flops, precision="fp32")
    export_fp32(model, stage / "model.onnx")
    files = ["model.onnx"]
    if "fp16" in opts.precisions:
        from .fp16 import convert_fp16

        log.info("converting to FP16")
        convert_fp16(stage / "model.onnx", stage / "model.fp16.onnx", keep_io_types=not opts.fp16_io)
        files.append("model.fp16.onnx")
    quant_reports: dict[str, Any] = {}
    if data.calib is not None:
        quant_reports = _quantize(stage, opts, cfg, data.calib, data.probe)
        files += list(quant_reports)
    if "int8-fp16" in opts.precisions and "model.int8.onnx" in quant_reports:
        from .mixed_precision import convert_int8_fp16

        log.info("converting the TensorRT INT8 model's unquantized layers to FP16 (opset 19)")
        body = convert_int8_fp16(stage / "model.int8.onnx", stage / "model.int8-fp16.onnx")
        quant_reports["model.int8-fp16.onnx"] = {**quant_reports["model.int8.onnx"], "fp16_body": body}
        files.append("model.int8-fp16.onnx")
    if data.qat is not None and data.calib is not None:
        kept = tuple(quant_reports["model.int8.onnx"]["sensitivity"]["kept"])
        quant_reports["model.int8-qat.onnx"] = _quantization_aware(stage, opts, model, export_fp32, data, kept)
        files.append("model.int8-qat.onnx")
    return files, quant_reports


def _quantization_aware(
    stage: Path, opts: ExportOptions, model: Any, export_fp32: Any, data: ExportData, kept: tuple[str, ...]
) -> dict[str, Any]:
    """model.int8-qat.onnx: ``model`` distilled into a copy with model.int8.onnx's fake quantization and scales.

    See docs/export.md "Quantization-aware fine-tuning".
    """
    from . import qat

    assert data.calib is not None  # QAT runs only where the INT8 models were made
    reader = calibration.CropCalibrationReader(data.calib, model.cfg.preprocess)
    ptq = (stage / "model.onnx", stage / "model.int8.onnx")
    out = stage / "model.int8-qat.onnx"
    try:
        return qat.quantization_aware_int8(data.qat, model, ptq, out, reader, export_fp32, data.gate_inputs, kept, opts.progress)
    except qat.QATError as exc:  # e.g. no readable crop in the folder
        raise ExportError(str(exc)) from None


def _run_gate(
    stage: Path, files: list[str], opts: ExportOptions, model: Any, data: ExportData, enforce: bool
) -> list[parity.ParityResult]:
    """Every artifact against PyTorch on the gate crops, logged; failures of unenforced gates become warnings."""
    from ..runtime.backends.torch_backend import TorchBackend

    log.info("parity gate: %d artifacts x batch %s on %s", len(files), "/".join(map(str, parity.GATE_BATCHES)), data.gate_source)
    with TorchBackend.from_module(model) as torch_reference:
        reference = torch_reference.infer(data.gate_inputs)
    results = _gate(stage, files, opts, reference, data, enforce)
    for r in results:
        log.info(
            "gate %s: %s cosine %.6f (threshold %s, %s)%s",
            r.artifact, r.statistic, r.value, r.threshold, r.session, "" if r.passed else " FAIL",
        )  # fmt: skip
        if r.failures and not r.enforced:
            warnings.warn(f"{r.artifact}: {'; '.join(r.failures)} (reported, not enforced)", stacklevel=2)
    return results


def _refuse_failed(stage: Path, results: list[parity.ParityResult], strict: bool) -> list[str]:
    """The artifacts that failed their gate, deleted from ``stage``; all-or-nothing when FP32 failed or ``strict``.

    A failed FP32 gate means the export itself is wrong, so nothing derived from it is written either.
    """
    failed = [r.artifact for r in results if not r.passed]
    if failed and (strict or "model.onnx" in failed):
        raise parity.ParityGateError(results)
    for name in failed:
        (stage / name).unlink()
        log.warning("%s failed its gate: refused, not written", name)
    return failed


def _engines(stage: Path, opts: ExportOptions, profile: tensorrt_build.BatchProfile, files: list[str]) -> list[dict[str, Any]]:
    """One entry per precision whose ONNX was written, with its trtexec command; built when ``--engine`` (unverified here).

    The timing cache is not staged: a cache, not an artifact, it is loaded and saved back in place (docs/export.md).
    """
    cache = Path(opts.timing_cache) if opts.timing_cache is not None else Path(opts.output) / "timing.cache"
    trtexec_cache = cache.resolve() if opts.timing_cache is not None else cache.name  # trtexec runs in the output folder
    engines = []
    for precision in opts.precisions:
        source = ENGINE_SOURCES[precision]
        if source not in files:
            continue
        engine = f"model.{precision}.plan"
        entry: dict[str, Any] = {
            "file": engine,
            "precision": precision,
            "source": source,
            "profile": profile.to_dict(),
            "trtexec": tensorrt_build.trtexec_command(source, engine, profile, opts.workspace, trtexec_cache),
            "built": False,
        }
        if opts.engine:
            log.info("building TensorRT %s engine", precision)
            tensorrt_build.build_engine(stage / source, stage / engine, profile, opts.workspace, cache)
            entry.update(manifest.file_entry(stage / engine), built=True, gpu=tensorrt_build.gpu_name())
        engines.append(entry)
    return engines


def _artifact_entry(stage: Path, name: str, quant_reports: dict[str, Any]) -> dict[str, Any]:
    """The manifest entry of one written ONNX file: size, sha256, precision, gate kind and INT8 report."""
    precision, kind, flavour = ONNX_FILES[name]
    extra: dict[str, Any] = {"precision": precision, "gate": kind}
    if flavour:
        extra["int8_flavour"] = flavour
        extra["quantization"] = quant_reports[name]
    return manifest.file_entry(stage / name, **extra)


def _deepstream(stage: Path, opts: ExportOptions, model: Any, files: list[str]) -> dict[str, Any]:
    import torch

    from ..contract.preprocess import resize_crop
    from . import deepstream

    cfg: HANConfig = model.cfg
    precision = "fp16" if "model.fp16.onnx" in files else "fp32"
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
    from ..serve.triton import TritonArtifact, write_triton_repository

    artifacts = []
    for name in files:
        precision, _, flavour = ONNX_FILES[name]
        artifacts.append(TritonArtifact(stage / name, precision=precision, flavour=flavour))
    for e in engines:
        if e["built"]:  # the int8-fp16 engine is Triton's int8, told apart by its source's flavour
            precision, _, flavour = ONNX_FILES[e["source"]]
            named = flavour if precision != e["precision"] else None
            artifacts.append(TritonArtifact(stage / e["file"], precision=precision, max_batch=opts.batch, flavour=named))
    root = write_triton_repository(stage / "triton", artifacts, config=cfg, max_batch_size=opts.batch)
    return {"repository": str(Path(root).relative_to(stage))}
