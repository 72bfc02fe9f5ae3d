"""Quantization-aware fine-tuning (QAT) of the TensorRT INT8 flavour by self-distillation.

``han-export --qat-epochs N`` fine-tunes a copy of the exported model (the student), int8
fake-quantized where ``model.int8.onnx`` has Q/DQ (:mod:`.fake_quant`), for N epochs toward the
embeddings of the frozen FP32 model (the teacher) on unlabeled person crops, and writes it as
``model.int8-qat.onnx``. The loss is the gate's own statistic (1 - per-sample cosine to the FP32
embedding), so no labels and no classifier are needed and the crops can come from the user's cameras.
The artifact is built as the PTQ one (FP32 export, ``quantize_int8``), then given the PTQ activation scales
(or, with ``--qat-scales learned``, the fine-tuned ones).
See docs/export.md "Quantization-aware fine-tuning".
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import PreprocessConfig
from ..contract.decode import IMAGE_SUFFIXES, image_files
from ..model import HAN
from ..train.augment import BatchAugment
from ..train.memory_cache import ImageCache
from ..train.recipes import RECIPES
from ..train.schedule import warmup_cosine
from . import calibration, parity, quantize
from .fake_quant import QATError, Site, fake_quantized, read_plan, tied_sites, write_scales

log = logging.getLogger(__name__)

BATCH = 32
DEFAULT_LR = 1e-5  # Adam's peak lr: NVIDIA's QAT guidance starts at 1% of the initial lr, Adam's customary one is 1e-3
# --qat-scales learned: Adam's peak lr on the log of each activation scale (a step moves a scale by about 1 %)
SCALE_LR = 1e-2
SCALE_MODES = ("fixed", "learned")
# light: the fast recipe's flip and pad-and-crop, without its random erasing
AUGMENT = BatchAugment(flip=True, pad=RECIPES["fast"]["pad"])
QAT_FLAVOUR = "tensorrt-qat"  # the TensorRT flavour's graph, fine-tuned weights
OBJECTIVE = "self-distillation: mean 1 - cosine to the FP32 model's embedding"


@dataclasses.dataclass(frozen=True)
class QATRequest:
    """What ``han-export --qat-epochs`` asks for: the crops folder, epochs, peak lr, seed, batch size, learned scales."""

    data: Path
    epochs: int
    lr: float = DEFAULT_LR
    seed: int = 0
    batch_size: int = BATCH
    learn_scales: bool = False  # --qat-scales learned: the activation scales are fine-tuned too (LSQ)


def check_request(
    epochs: int,
    qat_data: Path | None,
    calib_data: Path | str | None,
    lr: float | None,
    checkpoint: Path | None,
    int8: bool,
    seed: int = 0,
    scales: str | None = None,
) -> QATRequest | None:
    """The QAT request of these flags (None when ``epochs`` is 0), or a :class:`QATError` naming the flag."""
    if epochs < 0:
        raise QATError(f"--qat-epochs must be >= 0, got {epochs}")
    if scales is not None and scales not in SCALE_MODES:
        raise QATError(f"--qat-scales must be one of {', '.join(SCALE_MODES)}, got {scales!r}")
    if not epochs:
        if qat_data is not None or lr is not None or scales is not None:
            raise QATError("--qat-data, --qat-lr and --qat-scales only serve --qat-epochs N (quantization-aware fine-tuning)")
        return None
    if not int8:
        raise QATError("--qat-epochs fine-tunes the TensorRT INT8 flavour: add int8 to --precision")
    if checkpoint is None:
        raise QATError("--qat-epochs needs --checkpoint: it fine-tunes trained weights (a fresh network has none to keep)")
    if lr is not None and lr <= 0:
        raise QATError(f"--qat-lr must be > 0, got {lr}")
    folder = _data_folder(qat_data, calib_data)
    return QATRequest(folder, epochs, DEFAULT_LR if lr is None else lr, seed, learn_scales=scales == "learned")


def _data_folder(qat_data: Path | None, calib_data: Path | str | None) -> Path:
    """``--qat-data``, else the ``--calib-data`` folder; it must hold image files. Synthetic people are refused."""
    if qat_data is None and (calib_data is None or calib_data == calibration.SYNTHETIC):
        given = "--calib-data synthetic" if calib_data == calibration.SYNTHETIC else "no --calib-data folder"
        raise QATError(
            f"--qat-epochs needs a folder of person crops to fine-tune on: give --qat-data DIR (default: the --calib-data "
            f"folder, but {given} was given; QAT does not fine-tune on synthetic people)"
        )
    flag, folder = ("--qat-data", Path(qat_data)) if qat_data is not None else ("--calib-data", Path(str(calib_data)))
    if not folder.is_dir():
        raise QATError(f"{flag} {folder} is not a directory (QAT fine-tunes on its person crops)")
    if not image_files(folder, recursive=True):
        raise QATError(f"{flag} {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return folder


# ---- data ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Crops:
    """QAT crops decoded once: rows ``indices`` of ``cache`` are trained on; ``left_out`` readable ones were gate crops."""

    cache: ImageCache
    indices: np.ndarray
    left_out: int


def _digest(x: np.ndarray) -> bytes:
    """Fingerprint of one preprocessed input (preprocessing is deterministic: the same crop gives the same bytes)."""
    return hashlib.blake2b(np.ascontiguousarray(x, dtype=np.float32).tobytes(), digest_size=16).digest()


def load_crops(folder: Path, pre: PreprocessConfig, gate_inputs: np.ndarray, progress: bool = True) -> Crops:
    """Every image under ``folder`` decoded once with the model's preprocessing, less those equal to a gate input.

    The gate compares on crops of ``--calib-data`` held apart from calibration, and ``--calib-data`` is
    QAT's default folder: trained on, the gate would judge on training crops. Unreadable files are skipped.
    """
    cache = ImageCache.build(image_files(folder, recursive=True), pre, progress=progress)
    gate = {_digest(x) for x in gate_inputs}
    readable = np.flatnonzero(cache.ok)
    keep = np.array([i for i in readable if _digest(cache.batch([i]).numpy()[0]) not in gate], dtype=np.int64)
    if not len(keep):
        raise QATError(f"QAT data {folder}: no readable crop apart from the gate's ({len(cache) - len(readable)} unreadable)")
    return Crops(cache, keep, len(readable) - len(keep))


# ---- distillation --------------------------------------------------------------------------------


def distillation_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean of 1 - per-sample cosine, the gate's statistic; no MSE term: on L2-normalised embeddings it is 2(1 - cosine)."""
    return (1.0 - F.cosine_similarity(student, teacher, dim=1)).mean()


def distil(
    student: nn.Module,
    teacher: nn.Module,
    plan: dict[Site, float],
    crops: Crops,
    request: QATRequest,
    progress: bool = True,
    ties: list[tuple[Site, ...]] | None = None,
) -> tuple[list[float], dict[Site, float]]:
    """Fine-tune ``student`` in place, fake-quantized at ``plan``, toward the frozen ``teacher``'s embeddings.

    Adam without weight decay (decay would pull the weights off the teacher's) with per-iteration cosine
    decay from ``request.lr`` (from :data:`SCALE_LR` for learned scales); both in eval mode, so the student
    runs the deployed graph (BatchNorm is folded). ``ties``: sites that share one learned scale
    (:func:`.fake_quant.tied_sites`). Returns the loss per epoch and the plan's scales after training
    (``plan``'s own unless ``request.learn_scales``).
    """
    steps = math.ceil(len(crops.indices) / request.batch_size)
    generator = torch.Generator().manual_seed(request.seed)
    losses: list[float] = []
    with fake_quantized(student.eval(), plan, request.learn_scales, ties) as quantizers:
        shared = {id(q.log_scale): q.log_scale for q in quantizers.values() if q.log_scale is not None}
        scales = list(shared.values())
        weights = [p for p in student.parameters() if id(p) not in shared]
        groups = [{"params": weights, "lr": request.lr}] + ([{"params": scales, "lr": SCALE_LR}] if scales else [])
        optimizer = torch.optim.Adam(groups)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: warmup_cosine(it, 0, request.epochs * steps))
        for epoch in range(1, request.epochs + 1):
            order = crops.indices[torch.randperm(len(crops.indices), generator=generator).numpy()]
            batches = [order[i : i + request.batch_size] for i in range(0, len(order), request.batch_size)]
            bar = tqdm(batches, desc=f"QAT epoch {epoch}/{request.epochs}", unit="batch", leave=False, disable=not progress)
            losses.append(_epoch(student, teacher.eval(), crops.cache, bar, optimizer, schedule, generator))
            log.info("QAT epoch %d/%d: distillation loss %.3g", epoch, request.epochs, losses[-1])
        return losses, {site: q.scale for site, q in quantizers.items()}


def _epoch(
    student: nn.Module,
    teacher: nn.Module,
    cache: ImageCache,
    bar: tqdm,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LambdaLR,
    generator: torch.Generator,
) -> float:
    """One optimiser step per batch of cache rows in ``bar``, augmented; the epoch's mean loss over its crops."""
    total, seen = 0.0, 0
    for idx in bar:
        x = AUGMENT(cache.batch(idx), generator)
        with torch.no_grad():
            target = teacher(x)
        loss = distillation_loss(student(x), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        total, seen = total + loss.item() * len(idx), seen + len(idx)
        bar.set_postfix(loss=f"{loss.item():.2e}")
    return total / seen


def embed(model: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """``model``'s eval-mode embeddings of the preprocessed ``inputs``."""
    with torch.no_grad():
        return model.eval()(torch.from_numpy(inputs)).float().numpy()


def quantized_cosine(model: nn.Module, plan: dict[Site, float], inputs: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-sample cosine of ``model``'s fake-quantized embeddings of ``inputs`` against ``reference``."""
    with fake_quantized(model, plan):
        return float(parity.cosine_rows(embed(model, inputs), reference).mean())


# ---- the artifact --------------------------------------------------------------------------------


def export_artifact(
    model: HAN,
    plan: dict[Site, float],
    out_path: Path,
    reader: Any,
    export_fp32: Callable[[Any, Path], Any],
    extra_float: tuple[str, ...],
) -> quantize.QuantizeReport:
    """``model`` as TensorRT-flavour Q/DQ ONNX at ``out_path``: ``quantize_int8``'s graph with ``plan``'s activation scales."""
    import onnx

    from .onnx_export import save_derived

    with tempfile.TemporaryDirectory(prefix="han-qat-") as tmp:
        fp32_path = Path(tmp) / "qat.onnx"
        export_fp32(model.eval(), fp32_path)
        # minmax: the cheapest calibration, its activation scales are replaced by the plan's below
        report = quantize.quantize_int8(fp32_path, out_path, reader, "tensorrt", "minmax", extra_float=extra_float)
        int8 = onnx.load(str(out_path))
        write_scales(int8, onnx.load(str(fp32_path)), model, plan)
    save_derived(int8, int8, out_path, int8_flavour=QAT_FLAVOUR)
    return report


def quantization_aware_int8(
    request: QATRequest,
    model: HAN,
    ptq: tuple[Path, Path],
    out_path: Path,
    reader: Any,
    export_fp32: Callable[[Any, Path], Any],
    gate_inputs: np.ndarray,
    extra_float: tuple[str, ...] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Distil a fake-quantized copy of ``model`` (left as it is: the teacher) and write it to ``out_path``.

    ``ptq`` is ``model``'s FP32 export and its TensorRT-flavour PTQ artifact (placement, activation scales);
    ``reader`` the PTQ calibration reader (``quantize_int8`` needs one; its scales are replaced);
    ``gate_inputs`` the gate's crops, never trained on and where the cosines are measured; ``extra_float``
    the sensitivity pass's float nodes. Returns the artifact's quantization report with a ``qat`` entry.
    """
    student = copy.deepcopy(model).eval()
    ptq_plan = read_plan(*ptq, student)
    crops = load_crops(request.data, model.cfg.preprocess, gate_inputs, progress)
    reference = embed(model, gate_inputs)
    before = quantized_cosine(student, ptq_plan, gate_inputs, reference)
    mode = "learned" if request.learn_scales else "fixed"
    log.info(
        "QAT: %d epoch(s) on %d crops of %s, lr %g, %s scales", request.epochs, len(crops.indices), request.data, request.lr, mode
    )
    ties = tied_sites(*ptq, student) if request.learn_scales else None
    losses, plan = distil(student, model, ptq_plan, crops, request, progress, ties)
    cosine = {"crops": len(gate_inputs), "ptq": before, "qat": quantized_cosine(student, plan, gate_inputs, reference)}
    cosine["qat_vs_own_fp32"] = quantized_cosine(student, plan, gate_inputs, embed(student, gate_inputs))
    report = export_artifact(student, plan, out_path, reader, export_fp32, extra_float)
    qat = {
        "objective": OBJECTIVE, "epochs": request.epochs, "lr": request.lr, "optimizer": "adam", "schedule": "cosine",
        "batch": request.batch_size, "augmentation": {"flip": AUGMENT.flip, "pad": AUGMENT.pad}, "batchnorm": "frozen, folded",
        "data": str(request.data), "crops": len(crops.indices), "left_out_gate_crops": crops.left_out,
        "unreadable": int((~crops.cache.ok).sum()), "loss": losses, "sites": len(plan), "probe_cosine": cosine,
        "scales": _scale_report(ptq_plan, plan, request.learn_scales),
    }  # fmt: skip
    origin = "learned from" if request.learn_scales else "fixed:"
    return {**report.to_dict(), "calib_method": f"{origin} the scales of {Path(ptq[1]).name}", "qat": qat}


def _scale_report(before: dict[Site, float], after: dict[Site, float], learned: bool) -> dict[str, Any]:
    """How the activation scales moved: the mode, and with learned scales the spread of after/before ratios."""
    if not learned:
        return {"mode": "fixed"}
    ratios = np.array([after[site] / before[site] for site in before])
    return {
        "mode": "learned", "lr": SCALE_LR, "median_ratio": float(np.median(ratios)),
        "min_ratio": float(ratios.min()), "max_ratio": float(ratios.max()),
    }  # fmt: skip
