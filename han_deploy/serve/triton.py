"""Write an NVIDIA Triton Inference Server model repository from exported HAN artifacts.

Public entry point (what ``han-export --target triton`` calls)::

    write_triton_repository(
        out_dir,                       # repository root to create (models become sub-folders)
        artifacts,                     # TritonArtifact | path: .onnx -> onnxruntime_onnx, .plan/.engine/.trt -> tensorrt_plan
        *,
        config=None,                   # HANConfig; None = read from the first ONNX artifact's metadata_props
        max_batch_size=32,             # Triton max_batch_size; an engine's max_batch (its profile max) wins for it
        preferred_batch_sizes=(8, 16, 32),
        max_queue_delay_us=2000,       # dynamic batcher's max_queue_delay_microseconds
        instances=1,                   # instance_group count (per GPU for KIND_GPU)
        instance_kind="KIND_GPU",      # for the onnxruntime_onnx / tensorrt_plan models
        ort_tensorrt=False,            # add the ONNX models' optional TensorRT accelerator block
        python_model=True,             # also write the python-backend model (han_deploy.runtime inside)
        python_source=None,            # ONNX file the python models run (default: the FP32 ONNX artifact)
        python_instances=1,            # instance_group count of the python models (KIND_CPU)
        python_threads=0,              # ONNX Runtime intra-op threads per python instance (0 = its default)
        python_spinning=None,          # ONNX Runtime allow_spinning in the python models (None = its default)
        jpeg_model=True,               # also write the python model that takes encoded JPEG/PNG bytes
        ensembles=True,                # also write {prefix}_preprocess (bytes -> images) and ensembles over it
        ensemble_targets=None,         # tensor models the ensembles end in (None = the python model and every engine)
        sys_path=None,                 # sys.path entries for the python models (None = where han_deploy is now)
        name_prefix="han",
        overwrite=False,
    ) -> Path                          # the repository root

Model names: ``{prefix}_onnx_{precision}``, ``{prefix}_trt_{precision}`` (plus ``_{flavour}`` when an
artifact has one, e.g. the two INT8 ONNX flavours), ``{prefix}_python``, ``{prefix}_jpeg``,
``{prefix}_preprocess`` and ``{prefix}_ensemble_{target}`` (encoded bytes -> preprocess on the CPU ->
the target model, e.g. a TensorRT engine: cameras send JPEGs, the GPU runs the network). Every
config uses the tensor names of :mod:`han_deploy.config` (``images``: ``[3, H, W]`` per item,
``embeddings``: float32 ``[D]`` per item). ``dims`` never include the batch axis: Triton adds it from
``max_batch_size``. Every model carries the preprocessing contract as the ``han_deploy.contract``
parameter, so a client can read it from ``/v2/models/NAME/config``. A ``repository.json`` at the root
lists the models, their source files and sha256.

Only the python models run in the Triton bundled with ``nvidia-pytriton`` (it has no ONNX Runtime or
TensorRT backend); the ``onnxruntime_onnx`` / ``tensorrt_plan`` configs are for a full Triton and are
checked here only by parsing them (see docs/serving.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, HANConfig, contract_metadata, read_contract

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
PRECISIONS = ("fp32", "fp16", "int8")
INSTANCE_KINDS = ("KIND_GPU", "KIND_CPU", "KIND_AUTO")
CPU_FLAVOURS = ("cpu",)  # han-export's INT8 flavour for the ONNX Runtime CPU (uint8 activations)
ENCODED_INPUT_NAME = "encoded"  # TYPE_STRING, one encoded image (JPEG/PNG/...) per batch item
VALID_OUTPUT_NAME = "valid"  # TYPE_BOOL, false where the item could not be decoded (its embedding is zeros)
CONTRACT_PARAMETER = METADATA_KEY
PYTHON_MODEL_TEMPLATE = Path(__file__).resolve().parent / "python_model" / "model.py"
_TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8"}
_OnnxIo = tuple[dict[str, str], str, dict[str, Any] | None]  # what onnx_io returns


@dataclass(frozen=True)
class TritonArtifact:
    """One exported file to serve, with what its Triton config needs that the file may not say.

    ``max_batch`` is an engine's optimisation-profile maximum (required for engines: their config's
    ``max_batch_size`` must not exceed it). ``input_dtype`` is the engine's input type (default: that
    of the ONNX artifact of the same precision it was built from, else ``"float32"``); for ONNX files
    it is read from the graph. ``flavour`` tells apart two artifacts of one precision (han-export's
    INT8 ``"tensorrt"`` / ``"cpu"``); the ``"cpu"`` flavour gets ``KIND_CPU`` instances and no
    TensorRT block. ``instance_kind`` overrides the kind.
    """

    path: Path
    precision: str = "fp32"
    max_batch: int | None = None
    flavour: str | None = None
    input_dtype: str | None = None
    instance_kind: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.precision not in PRECISIONS:
            raise ValueError(f"{self.path}: precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.kind not in ("onnx", "engine"):
            raise ValueError(
                f"{self.path}: unsupported suffix {self.path.suffix!r}; expected one of {ONNX_SUFFIXES + ENGINE_SUFFIXES}"
            )
        if self.instance_kind is not None and self.instance_kind not in INSTANCE_KINDS:
            raise ValueError(f"{self.path}: instance_kind must be one of {INSTANCE_KINDS}, got {self.instance_kind!r}")

    @property
    def kind(self) -> str:
        suffix = self.path.suffix.lower()
        return "onnx" if suffix in ONNX_SUFFIXES else "engine" if suffix in ENGINE_SUFFIXES else "unknown"

    def model_name(self, prefix: str) -> str:
        if self.name:
            return self.name
        base = f"{prefix}_{'onnx' if self.kind == 'onnx' else 'trt'}_{self.precision}"
        return f"{base}_{self.flavour}" if self.flavour else base


class PbSym(str):
    """A protobuf text-format enum value (written unquoted)."""


def _pb_scalar(value: Any) -> str:
    if isinstance(value, PbSym):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + "".join(c if 32 <= ord(c) < 127 else "".join(f"\\{b:03o}" for b in c.encode()) for c in escaped) + '"'


def to_pbtxt(message: Mapping[str, Any], indent: int = 0) -> str:
    """A nested dict as protobuf text format: dicts are messages, lists repeated fields, ``PbSym`` enums.

    ``map<string, ...>`` fields are given as lists of ``{"key": ..., "value": ...}`` entries.
    """
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", to_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list | tuple):
            if value and all(isinstance(v, Mapping) for v in value):
                for item in value:
                    lines += [f"{pad}{key} {{", to_pbtxt(item, indent + 1), f"{pad}}}"]
            elif value:
                lines.append(f"{pad}{key}: [ {', '.join(_pb_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_pb_scalar(value)}")
    return "\n".join(line for line in lines if line)


def _tensor(name: str, dtype: str, dims: Sequence[int]) -> dict[str, Any]:
    return {"name": name, "data_type": PbSym(dtype), "dims": list(dims)}


def _string_parameters(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]


def onnx_io(path: Path) -> tuple[dict[str, str], str, dict[str, Any] | None]:
    """(metadata_props, input element type name, contract or None) of an ONNX file, weights not loaded."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    inputs = [i for i in proto.graph.input if i.name == INPUT_NAME] or list(proto.graph.input)
    if not inputs:
        raise ValueError(f"{path}: the ONNX graph has no input")
    elem = onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type).name
    contract = read_contract(meta)[1] if METADATA_KEY in meta else None
    return meta, elem, contract


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dynamic_batching(preferred: Sequence[int], max_batch: int, delay_us: int) -> dict[str, Any]:
    sizes = sorted({int(s) for s in preferred if 0 < int(s) <= max_batch})
    return {"preferred_batch_size": sizes, "max_queue_delay_microseconds": int(delay_us)}


def _ort_tensorrt_block(precision: str, cache_dir: str) -> dict[str, Any]:
    """ONNX Runtime's TensorRT execution provider inside Triton's onnxruntime backend (UNVERIFIED: no GPU here)."""
    params = {
        "precision_mode": "INT8" if precision == "int8" else "FP16" if precision in ("fp16", "int8") else "FP32",
        "max_workspace_size_bytes": str(1 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": cache_dir,
    }
    accel = {"name": "tensorrt", "parameters": [{"key": k, "value": v} for k, v in params.items()]}
    return {"execution_accelerators": {"gpu_execution_accelerator": [accel]}}


def default_sys_path() -> list[str]:
    """Where ``han_deploy`` and this interpreter's packages live now (for the python models' ``sys.path``)."""
    import site

    package_parent = str(Path(__file__).resolve().parents[2])
    return list(dict.fromkeys([package_parent, *site.getsitepackages()]))


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _write_ensembles(
    write_model: Any,
    prefix: str,
    py_common: dict[str, Any],
    py_params: dict[str, str],
    tensor_models: dict[str, tuple[int, str]],
    targets: Sequence[str] | None,
    default_targets: list[str],
    item: tuple[int, int, int],
    dim: int,
) -> None:
    """``{prefix}_preprocess`` (python: encoded bytes -> images, valid) and one ensemble per target tensor model."""
    pre_name = f"{prefix}_preprocess"
    cfg = {
        **py_common,
        "input": [_tensor(ENCODED_INPUT_NAME, "TYPE_STRING", [1])],
        "output": [_tensor(INPUT_NAME, "TYPE_FP32", list(item)), _tensor(VALID_OUTPUT_NAME, "TYPE_BOOL", [1])],
        "parameters": _string_parameters({**py_params, "model_file": "", "input_kind": "preprocess"}),
    }
    write_model(pre_name, cfg, {"1/model.py": PYTHON_MODEL_TEMPLATE}, "python backend: encoded bytes -> network input")
    chosen = default_targets if targets is None else list(targets)
    for target in chosen:
        if target not in tensor_models:
            raise ValueError(f"ensemble target {target!r} is not a tensor model of this repository ({sorted(tensor_models)})")
        target_batch, dtype = tensor_models[target]
        if dtype != "TYPE_FP32":
            if targets is not None:
                raise ValueError(f"ensemble target {target!r} takes {dtype}; the preprocess step produces TYPE_FP32")
            continue
        steps = [
            {
                "model_name": pre_name,
                "model_version": -1,
                "input_map": [{"key": ENCODED_INPUT_NAME, "value": ENCODED_INPUT_NAME}],
                "output_map": [{"key": INPUT_NAME, "value": INPUT_NAME}, {"key": VALID_OUTPUT_NAME, "value": VALID_OUTPUT_NAME}],
            },
            {
                "model_name": target,
                "model_version": -1,
                "input_map": [{"key": INPUT_NAME, "value": INPUT_NAME}],
                "output_map": [{"key": OUTPUT_NAME, "value": OUTPUT_NAME}],
            },
        ]
        cfg = {
            "platform": "ensemble",
            "max_batch_size": min(py_common["max_batch_size"], target_batch),
            "input": [_tensor(ENCODED_INPUT_NAME, "TYPE_STRING", [1])],
            "output": [_tensor(OUTPUT_NAME, "TYPE_FP32", [dim]), _tensor(VALID_OUTPUT_NAME, "TYPE_BOOL", [1])],
            "ensemble_scheduling": {"step": steps},
            "parameters": _string_parameters({CONTRACT_PARAMETER: py_params[CONTRACT_PARAMETER]}),
        }
        suffix = target[len(prefix) + 1 :] if target.startswith(prefix + "_") else target
        write_model(f"{prefix}_ensemble_{suffix}", cfg, {}, f"ensemble: {pre_name} -> {target}")


@dataclass(frozen=True)
class _Settings:
    """What the model configs of one repository share: the contract, the tensor shapes and the batching options."""

    contract: str  # the CONTRACT_PARAMETER value (JSON)
    item: tuple[int, int, int]  # network input per batch item: (3, H, W)
    dim: int  # embedding length
    max_batch_size: int
    preferred_batch_sizes: Sequence[int]
    max_queue_delay_us: int
    instances: int
    instance_kind: str
    ort_tensorrt: bool
    python_instances: int
    python_threads: int
    python_spinning: bool | None
    ensembles: bool

    def batching(self, max_batch: int) -> dict[str, Any]:
        """The dynamic_batching block of a model whose max_batch_size is ``max_batch``."""
        return _dynamic_batching(self.preferred_batch_sizes, max_batch, self.max_queue_delay_us)

    def summary(self) -> dict[str, Any]:
        """The settings as repository.json records them."""
        return {
            "max_batch_size": self.max_batch_size,
            "preferred_batch_sizes": list(self.preferred_batch_sizes),
            "max_queue_delay_us": self.max_queue_delay_us,
            "instances": self.instances,
            "instance_kind": self.instance_kind,
            "ort_tensorrt": self.ort_tensorrt,
            "python_instances": self.python_instances,
            "python_threads": self.python_threads,
            "python_spinning": self.python_spinning,
            "ensembles": self.ensembles,
        }


@dataclass
class _Repository:
    """A model repository being written: its root, and the models written so far (for repository.json)."""

    out: Path
    listing: list[dict[str, Any]] = field(default_factory=list)
    # model name -> (max_batch_size, input data type) of the models an ensemble may end in
    tensor_models: dict[str, tuple[int, str]] = field(default_factory=dict)

    def write_model(self, name: str, cfg: dict[str, Any], files: Mapping[str, Path], note: str) -> None:
        """Write model ``name``: its version folder, ``files`` copied in, its config.pbtxt, and its listing entry."""
        model_dir = self.out / name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)  # ensembles too need a version folder
        for rel, src in files.items():
            _copy(src, model_dir / rel)
        (model_dir / "config.pbtxt").write_text(to_pbtxt({"name": name, **cfg}) + "\n")
        self.listing.append(
            {
                "name": name,
                "backend": cfg.get("backend") or cfg.get("platform"),
                "max_batch_size": cfg["max_batch_size"],
                "files": {
                    rel: {"source": src.name, "sha256": _sha256(src)} for rel, src in files.items() if rel.startswith("1/")
                },
                "note": note,
            }
        )

    def write_summary(self, settings: _Settings, arts: Sequence[TritonArtifact]) -> None:
        """Write repository.json: the contract, the settings, the artifacts and the models written."""
        summary = {
            "generator": "han_deploy.serve.triton",
            "contract": json.loads(settings.contract),
            "settings": settings.summary(),
            "artifacts": [dataclasses.asdict(a) | {"path": a.path.name} for a in arts],
            "models": self.listing,
        }
        (self.out / "repository.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _check_options(max_batch_size: int, instances: int, python_instances: int, instance_kind: str, name_prefix: str) -> None:
    """Reject invalid batching / instance options and model-name prefixes before anything is read or written."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if instances < 1 or python_instances < 1:
        raise ValueError("instances and python_instances must be >= 1")
    if instance_kind not in INSTANCE_KINDS:
        raise ValueError(f"instance_kind must be one of {INSTANCE_KINDS}, got {instance_kind!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name_prefix):
        raise ValueError(f"name_prefix {name_prefix!r} must be letters, digits, '_', '.', '-'")


def _read_onnx_files(arts: Sequence[TritonArtifact], python_source: str | os.PathLike[str] | None) -> dict[Path, _OnnxIo]:
    """``onnx_io`` of every ONNX artifact and of ``python_source``, after checking that every file exists."""
    for art in arts:
        if not art.path.is_file():
            raise FileNotFoundError(f"artifact not found: {art.path}")
    onnx_info = {art.path: onnx_io(art.path) for art in arts if art.kind == "onnx"}
    if python_source is not None and Path(python_source) not in onnx_info:
        if not Path(python_source).is_file():
            raise FileNotFoundError(f"python_source not found: {python_source}")
        onnx_info[Path(python_source)] = onnx_io(Path(python_source))
    return onnx_info


def _resolve_contract(config: HANConfig | None, onnx_info: Mapping[Path, _OnnxIo]) -> tuple[str, tuple[int, int, int], int]:
    """(contract JSON, network input per item, embedding length) from ``config``, else from the first ONNX contract."""
    contract: dict[str, Any] | None = next((c for _, _, c in onnx_info.values() if c), None)
    if config is None:
        if contract is None:
            raise ValueError("no HANConfig given and no ONNX artifact with a han-deploy contract in its metadata_props")
        config = HANConfig.from_dict(contract["model"])
    extra = {
        k: v
        for k, v in (contract or {}).items()
        if k not in ("model", "input_name", "output_name", "embedding_dim", "embedding_layout")
    }
    contract_str = contract_metadata(config, **extra)[METADATA_KEY]
    h, w = config.preprocess.input_size
    dim = config.embedding_dim
    return contract_str, (3, h, w), dim


def _default_python_source(arts: Sequence[TritonArtifact]) -> Path:
    """The ONNX file the python models run when no python_source is given: the first FP32 ONNX artifact."""
    fp32 = [a.path for a in arts if a.kind == "onnx" and a.precision == "fp32"]
    if not fp32:
        raise ValueError("the python models need an ONNX file: give an FP32 ONNX artifact or python_source")
    return fp32[0]


def _model_names(arts: Sequence[TritonArtifact], name_prefix: str) -> list[str]:
    """The model name of every artifact, which must all differ."""
    names = [a.model_name(name_prefix) for a in arts]
    if len(set(names)) != len(names):
        raise ValueError(f"two artifacts map to one model name ({names}): set TritonArtifact.flavour or .name")
    return names


def _empty_root(out: Path, overwrite: bool) -> None:
    """Create ``out`` empty, replacing an existing folder only if it is empty or ``overwrite`` is set."""
    if out.exists():
        if not overwrite and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _tensor_model_config(
    art: TritonArtifact, platform: str, mbs: int, dtype: str, kind: str, optimization: dict[str, Any] | None, s: _Settings
) -> dict[str, Any]:
    """config.pbtxt fields of the onnxruntime_onnx / tensorrt_plan model serving ``art`` (``None`` fields are not written)."""
    return {
        "platform": platform,
        "default_model_filename": "model.onnx" if platform == "onnxruntime_onnx" else "model.plan",
        "max_batch_size": mbs,
        "input": [_tensor(INPUT_NAME, dtype, s.item)],
        "output": [_tensor(OUTPUT_NAME, "TYPE_FP32", [s.dim])],
        "dynamic_batching": s.batching(mbs),
        "instance_group": [{"kind": PbSym(kind), "count": s.instances}],
        "optimization": optimization,
        "parameters": _string_parameters({CONTRACT_PARAMETER: s.contract, "precision": art.precision}),
    }


def _onnx_model_config(art: TritonArtifact, name: str, elem: str, s: _Settings) -> tuple[dict[str, Any], int, str]:
    """(config fields, max_batch_size, input data type) of the onnxruntime_onnx model of ``art`` (input type ``elem``)."""
    cpu_flavour = art.flavour in CPU_FLAVOURS  # an ONNX Runtime CPU-flavoured INT8 model belongs on the CPU
    kind = art.instance_kind or ("KIND_CPU" if cpu_flavour else s.instance_kind)
    dtype = _TRITON_DTYPES.get(elem)
    if dtype is None:
        raise ValueError(f"{art.path}: unsupported ONNX input type {elem}")
    mbs = min(s.max_batch_size, art.max_batch) if art.max_batch else s.max_batch_size
    trt = _ort_tensorrt_block(art.precision, f"/tmp/triton_trt_cache/{name}") if s.ort_tensorrt and kind != "KIND_CPU" else None
    return _tensor_model_config(art, "onnxruntime_onnx", mbs, dtype, kind, trt, s), mbs, dtype


def _engine_model_config(art: TritonArtifact, source_dtypes: Mapping[str, str], s: _Settings) -> tuple[dict[str, Any], int, str]:
    """(config fields, max_batch_size, input data type) of the tensorrt_plan model of engine ``art``.

    ``source_dtypes`` maps a precision to the input type of the ONNX file its engine is built from.
    """
    if not art.max_batch:
        raise ValueError(f"{art.path}: an engine needs max_batch (its optimisation profile's max batch)")
    dtype = _TRITON_DTYPES[art.input_dtype or source_dtypes.get(art.precision, "float32")]
    mbs = int(art.max_batch)
    return _tensor_model_config(art, "tensorrt_plan", mbs, dtype, "KIND_GPU", None, s), mbs, dtype


def _write_tensor_models(
    repo: _Repository,
    arts: Sequence[TritonArtifact],
    names: Sequence[str],
    onnx_info: Mapping[Path, _OnnxIo],
    s: _Settings,
) -> None:
    """Write the onnxruntime_onnx model of every ONNX artifact and the tensorrt_plan model of every engine."""
    # an engine is built from the ONNX of its precision (the TensorRT-flavoured one for INT8): same input type
    engine_source_dtype = {a.precision: onnx_info[a.path][1] for a in arts if a.kind == "onnx" and a.flavour not in CPU_FLAVOURS}
    for art, name in zip(arts, names, strict=True):
        if art.kind == "onnx":
            cfg, mbs, dtype = _onnx_model_config(art, name, onnx_info[art.path][1], s)
            repo.write_model(name, cfg, {"1/model.onnx": art.path}, "onnxruntime backend (full Triton); not in nvidia-pytriton")
        else:
            cfg, mbs, dtype = _engine_model_config(art, engine_source_dtype, s)
            note = "tensorrt_plan (full Triton on a GPU with the TensorRT version that built the engine); UNVERIFIED here"
            repo.write_model(name, cfg, {"1/model.plan": art.path}, note)
        repo.tensor_models[name] = (mbs, dtype)


def _python_parameters(s: _Settings, sys_path: Sequence[str] | None) -> dict[str, str]:
    """The string parameters every python model shares: ONNX Runtime threading, sys.path, the contract."""
    paths = default_sys_path() if sys_path is None else list(sys_path)
    return {
        "device": "cpu",
        "threads": str(int(s.python_threads)),
        "spinning": "" if s.python_spinning is None else str(int(s.python_spinning)),
        "sys_path": os.pathsep.join(paths),
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        CONTRACT_PARAMETER: s.contract,
    }


def _write_python_models(
    repo: _Repository,
    s: _Settings,
    *,
    prefix: str,
    python_model: bool,
    jpeg_model: bool,
    python_source: str | os.PathLike[str] | None,
    sys_path: Sequence[str] | None,
    ensemble_targets: Sequence[str] | None,
    engine_names: Sequence[str],
) -> None:
    """Write the python-backend models: ``{prefix}_python``, ``{prefix}_jpeg``, and the preprocess model and ensembles."""
    py_params = _python_parameters(s, sys_path)
    py_common: dict[str, Any] = {
        "backend": "python",
        "max_batch_size": s.max_batch_size,
        "dynamic_batching": s.batching(s.max_batch_size),
        "instance_group": [{"kind": PbSym("KIND_CPU"), "count": s.python_instances}],
    }
    files = {"1/model.py": PYTHON_MODEL_TEMPLATE}
    if python_source is not None:
        files["1/model.onnx"] = Path(python_source)
    if python_model:
        cfg = {
            **py_common,
            "input": [_tensor(INPUT_NAME, "TYPE_FP32", s.item)],
            "output": [_tensor(OUTPUT_NAME, "TYPE_FP32", [s.dim])],
            "parameters": _string_parameters({**py_params, "model_file": "model.onnx", "input_kind": "tensor"}),
        }
        repo.write_model(f"{prefix}_python", cfg, files, "python backend, han_deploy.runtime (ONNX Runtime) inside")
        repo.tensor_models[f"{prefix}_python"] = (s.max_batch_size, "TYPE_FP32")
    if jpeg_model:
        cfg = {
            **py_common,
            "input": [_tensor(ENCODED_INPUT_NAME, "TYPE_STRING", [1])],
            "output": [_tensor(OUTPUT_NAME, "TYPE_FP32", [s.dim]), _tensor(VALID_OUTPUT_NAME, "TYPE_BOOL", [1])],
            "parameters": _string_parameters({**py_params, "model_file": "model.onnx", "input_kind": "encoded"}),
        }
        note = "python backend: encoded image bytes -> decode, resize, normalise, embed"
        repo.write_model(f"{prefix}_jpeg", cfg, files, note)
    if s.ensembles:
        _write_ensembles(
            repo.write_model,
            prefix,
            py_common,
            py_params,
            repo.tensor_models,
            ensemble_targets,
            default_targets=[n for n in repo.tensor_models if n == f"{prefix}_python" or n in engine_names],
            item=s.item,
            dim=s.dim,
        )


def write_triton_repository(
    out_dir: str | os.PathLike[str],
    artifacts: Iterable[TritonArtifact | str | os.PathLike[str]],
    *,
    config: HANConfig | None = None,
    max_batch_size: int = 32,
    preferred_batch_sizes: Sequence[int] = (8, 16, 32),
    max_queue_delay_us: int = 2000,
    instances: int = 1,
    instance_kind: str = "KIND_GPU",
    ort_tensorrt: bool = False,
    python_model: bool = True,
    python_source: str | os.PathLike[str] | None = None,
    python_instances: int = 1,
    python_threads: int = 0,
    python_spinning: bool | None = None,
    jpeg_model: bool = True,
    ensembles: bool = True,
    ensemble_targets: Sequence[str] | None = None,
    sys_path: Sequence[str] | None = None,
    name_prefix: str = "han",
    overwrite: bool = False,
) -> Path:
    """Write a Triton model repository under ``out_dir`` and return its path (see the module docstring)."""
    out = Path(out_dir)
    arts = [a if isinstance(a, TritonArtifact) else TritonArtifact(Path(a)) for a in artifacts]
    _check_options(max_batch_size, instances, python_instances, instance_kind, name_prefix)
    onnx_info = _read_onnx_files(arts, python_source)
    contract_str, item, dim = _resolve_contract(config, onnx_info)
    if (python_model or jpeg_model) and python_source is None:
        python_source = _default_python_source(arts)
    names = _model_names(arts, name_prefix)
    _empty_root(out, overwrite)
    repo = _Repository(out)
    s = _Settings(
        contract=contract_str,
        item=item,
        dim=dim,
        max_batch_size=max_batch_size,
        preferred_batch_sizes=preferred_batch_sizes,
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        instance_kind=instance_kind,
        ort_tensorrt=ort_tensorrt,
        python_instances=python_instances,
        python_threads=python_threads,
        python_spinning=python_spinning,
        ensembles=ensembles,
    )
    _write_tensor_models(repo, arts, names, onnx_info, s)
    if python_model or jpeg_model or ensembles:
        _write_python_models(
            repo,
            s,
            prefix=name_prefix,
            python_model=python_model,
            jpeg_model=jpeg_model,
            python_source=python_source,
            sys_path=sys_path,
            ensemble_targets=ensemble_targets,
            engine_names=[n for a, n in zip(arts, names, strict=True) if a.kind == "engine"],
        )
    repo.write_summary(s, arts)
    return out
