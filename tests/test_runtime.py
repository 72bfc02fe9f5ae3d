"""The torch-free runtime: backends, parity with PyTorch, bad inputs, streaming micro-batching."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType, SimpleNamespace

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from _artifacts import tampered_copy, write_manifest  # noqa: E402

from han_deploy.config import METADATA_KEY, contract_metadata  # noqa: E402
from han_deploy.contract.decode import read_image  # noqa: E402
from han_deploy.export import export_onnx  # noqa: E402
from han_deploy.model import create_model, save_checkpoint  # noqa: E402
from han_deploy.runtime import ModelFileError, load_backend, preprocess  # noqa: E402
from han_deploy.runtime.backends import ArtifactMismatchError, TensorMeta, read_manifest_contract, sha256_file  # noqa: E402
from han_deploy.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend, default_providers  # noqa: E402
from han_deploy.runtime.backends.torch_backend import TorchBackend  # noqa: E402
from han_deploy.runtime.extractor import ExtractionError, Extractor, StreamingExtractor  # noqa: E402


def person_crops(n: int) -> list[np.ndarray]:
    """Synthetic person crops of varied sizes (engineer B's generator when present, else drawn figures)."""
    try:
        from han_deploy.data.synth import sample_crops

        return sample_crops(n, seed=3)
    except ImportError:
        rng = np.random.default_rng(3)
        out = []
        for _ in range(n):
            h, w = int(rng.integers(90, 250)), int(rng.integers(40, 110))
            im = np.full((h, w, 3), rng.integers(0, 255, 3), np.uint8)
            cv2.ellipse(im, (w // 2, h // 2), (w // 3, h // 3), 0, 0, 360, rng.integers(0, 255, 3).tolist(), -1)
            out.append(im)
        return out


@pytest.fixture(scope="module")
def model_and_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = create_model("han_small").eval()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "han_small.onnx")
    return model, path


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, crop in enumerate(person_crops(6)):
        p = folder / f"{i:02d}.jpg"
        cv2.imwrite(str(p), crop)
        paths.append(p)
    return paths


def torch_embed(model: torch.nn.Module, images: list[np.ndarray], pre=None) -> np.ndarray:  # noqa: ANN001
    with torch.no_grad():
        return model(torch.from_numpy(preprocess(images, pre or model.cfg.preprocess))).numpy()


# ---------------------------------------------------------------- parity with training's preprocessing


def test_runtime_matches_pytorch_on_the_same_files(model_and_onnx, image_files) -> None:  # noqa: ANN001
    model, onnx_path = model_and_onnx
    ref = torch_embed(model, [read_image(p) for p in image_files])
    with Extractor(onnx_path, batch_size=4) as ex:
        got = ex.embed(image_files)
    assert got.shape == (len(image_files), 1024) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-4
    # the files are not 160x64, so resizing happens; a different interpolation or channel order would show
    assert all(cv2.imread(str(p)).shape[:2] != (160, 64) for p in image_files)
    for wrong in (replace(model.cfg.preprocess, interpolation="nearest"), replace(model.cfg.preprocess, channel_order="BGR")):
        other = torch_embed(model, [read_image(p) for p in image_files], wrong)
        assert np.abs(got - other).max() > 1e-3, f"parity test could not tell {wrong} apart"


REAL_CROPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cuhk03-pair1" / "test"


@pytest.mark.skipif(not REAL_CROPS.is_dir(), reason="real CUHK03 crops not available (../shared/data/cuhk03-pair1)")
def test_runtime_matches_pytorch_on_real_crops(model_and_onnx) -> None:  # noqa: ANN001
    model, onnx_path = model_and_onnx
    files = sorted(REAL_CROPS.glob("*.jpg"))[:: max(1, len(list(REAL_CROPS.glob("*.jpg"))) // 8)][:8]
    ref = torch_embed(model, [read_image(p) for p in files])
    with Extractor(onnx_path) as ex:
        assert np.abs(ex.embed(files) - ref).max() < 1e-4


def test_torch_checkpoint_backend_gives_the_same_embeddings(model_and_onnx, image_files, tmp_path: Path) -> None:  # noqa: ANN001
    model, onnx_path = model_and_onnx
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model)
    with load_backend(ckpt) as tb, load_backend(onnx_path) as ob:
        assert isinstance(tb, TorchBackend) and isinstance(ob, OnnxRuntimeBackend)
        assert tb.config == ob.config == model.cfg
        x = preprocess([read_image(p) for p in image_files], model.cfg.preprocess)
        assert np.abs(tb.infer(x) - ob.infer(x)).max() < 1e-4


# ---------------------------------------------------------------- backend selection and interface


def test_backend_interface_and_options(model_and_onnx) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    with load_backend(onnx_path, threads=1, spinning=False) as b:
        assert b.name == "onnxruntime" and b.input_name == "images" and b.max_batch is None
        assert b.config.variant == "small" and b.contract["embedding_dim"] == 1024
        assert b.providers == ["CPUExecutionProvider"]
        assert b.infer(np.zeros((0, 3, 160, 64), np.float32)).shape == (0, 1024)
        with pytest.raises(ValueError, match=r"expects \(N, 3, 160, 64\)"):
            b.infer(np.zeros((2, 3, 128, 64), np.float32))
        with pytest.raises(TypeError, match="expects a float32 batch.*got float64"):  # no silent cast
            b.infer(np.zeros((1, 3, 160, 64)))


def test_batches_beyond_max_batch_are_split_and_fixed_batches_padded(model_and_onnx) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    x = np.random.default_rng(0).standard_normal((7, 3, 160, 64)).astype(np.float32)
    with load_backend(onnx_path) as b:
        whole = b.infer(x)
        seen: list[int] = []
        run = b.infer_impl
        b.infer_impl = lambda chunk: (seen.append(len(chunk)), run(chunk))[1]  # type: ignore[method-assign]
        b.max_batch = 3
        assert np.abs(b.infer(x) - whole).max() < 1e-5 and seen == [3, 3, 1]
        seen.clear()
        b.max_batch = b.fixed_batch = 4  # a static-batch engine: the last chunk is zero-padded, padding dropped
        out = b.infer(x)
        assert seen == [4, 4] and out.shape == (7, 1024) and np.abs(out - whole).max() < 1e-5


def test_provider_order() -> None:
    all_ = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert default_providers("cpu", all_) == ["CPUExecutionProvider"]
    assert default_providers("auto", all_[::-1]) == all_
    assert default_providers("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="no GPU provider"):
        default_providers("cuda", ["CPUExecutionProvider"])


def test_model_files_of_the_wrong_kind_are_named(model_and_onnx, image_files, tmp_path: Path) -> None:  # noqa: ANN001
    model, _ = model_and_onnx
    jpeg_as_onnx = tmp_path / "model.onnx"
    jpeg_as_onnx.write_bytes(image_files[0].read_bytes())
    with pytest.raises(ModelFileError, match=r"model\.onnx is not a valid ONNX model \(it looks like a JPEG image\)"):
        load_backend(jpeg_as_onnx)
    ckpt_as_onnx = tmp_path / "ckpt.onnx"
    ckpt_as_onnx.write_bytes(save_checkpoint(tmp_path / "c.safetensors", model).read_bytes())
    with pytest.raises(ModelFileError, match="looks like a safetensors checkpoint"):
        load_backend(ckpt_as_onnx)
    onnx_as_ckpt = tmp_path / "x.safetensors"
    onnx_as_ckpt.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelFileError, match=r"x\.safetensors is not a valid han-deploy safetensors checkpoint"):
        load_backend(onnx_as_ckpt)
    with pytest.raises(ModelFileError, match=r"unsupported model file suffix '\.bin'.*\.onnx"):
        load_backend(_copy(image_files[0], tmp_path / "w.bin"))
    with pytest.raises(ModelFileError, match="is a directory"):
        load_backend(tmp_path)
    with pytest.raises(ModelFileError, match="not found"):
        load_backend(tmp_path / "missing.onnx")


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_onnx_without_contract_is_refused_and_manifest_is_read(model_and_onnx, tmp_path: Path) -> None:  # noqa: ANN001
    import onnx

    model, onnx_path = model_and_onnx
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelFileError, match="no han-deploy contract"):
        load_backend(bare)
    contract = json.loads(contract_metadata(model.cfg)[METADATA_KEY])
    (tmp_path / "manifest.json").write_text(json.dumps({"contract": contract, "artifacts": [{"file": "bare.onnx"}]}))
    with load_backend(bare) as b:
        assert b.config == model.cfg


def test_engine_without_gpu_fails_cleanly(model_and_onnx, tmp_path: Path) -> None:  # noqa: ANN001
    model, _ = model_and_onnx
    engine = tmp_path / "han.engine"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(ModelFileError, match="manifest"):
        load_backend(engine)
    contract = json.loads(contract_metadata(model.cfg)[METADATA_KEY])
    (tmp_path / "manifest.json").write_text(json.dumps({"contract": contract}))
    # in a subprocess: should a TensorRT runtime ever be created without a GPU it would segfault, not raise
    code = (
        "from han_deploy.runtime import load_backend\n"
        f"try:\n load_backend({str(engine)!r})\nexcept Exception as e:\n print(type(e).__name__, e)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    if "TensorRTUnavailable" in proc.stdout:
        assert "TensorRT" in proc.stdout and ("GPU" in proc.stdout or "cuda-python" in proc.stdout or "tensorrt" in proc.stdout)
    with pytest.raises(Exception, match="GPU only"):
        load_backend(engine, device="cpu")


def test_tensorrt_buffer_shapes_come_from_the_engine() -> None:
    from han_deploy.runtime.backends.tensorrt_backend import buffer_shape

    assert buffer_shape("images", (-1, 3, 160, 64), (32, 3, 160, 64)) == (32, 3, 160, 64)  # the profile's max
    assert buffer_shape("images", (8, 3, 160, 64)) == (8, 3, 160, 64)  # a static engine: its own shape
    assert buffer_shape("embeddings", (-1, 1024), (32, 1024)) == (32, 1024)  # inferred at the profile's max
    with pytest.raises(ModelFileError, match="no upper bound"):
        buffer_shape("embeddings", (-1, 1024))
    with pytest.raises(ModelFileError, match="no upper bound"):
        buffer_shape("boxes", (-1, -1), (32, -1))  # data-dependent: not known before running
    with pytest.raises(ModelFileError, match="contradicts"):
        buffer_shape("images", (-1, 3, 160, 64), (32, 3, 128, 64))


class _FakeCudart:
    """The cuda-python calls of the TensorRT backend, on host memory: a device pointer is a numpy buffer's address."""

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self) -> None:
        self.buffers: dict[int, np.ndarray] = {}
        self.freed: list[int] = []

    def cudaGetDeviceCount(self) -> tuple[int, int]:
        return 0, 1

    def cudaSetDevice(self, index: int) -> tuple[int]:
        return (0,)

    def cudaStreamCreate(self) -> tuple[int, int]:
        return 0, 7

    def cudaStreamSynchronize(self, stream: int) -> tuple[int]:
        return (0,)

    def cudaStreamDestroy(self, stream: int) -> tuple[int]:
        return (0,)

    def cudaMalloc(self, nbytes: int) -> tuple[int, int]:
        buf = np.zeros(nbytes, np.uint8)
        self.buffers[buf.ctypes.data] = buf
        return 0, buf.ctypes.data

    def cudaFree(self, ptr: int) -> tuple[int]:
        self.freed.append(ptr)
        return (0,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> tuple[int]:
        ctypes.memmove(dst, src, nbytes)
        return (0,)


class _FakeEngine:
    """An ICudaEngine as the backend reads it: input batch 2..8, the embeddings and a second (float16) output."""

    num_optimization_profiles = 1

    def __init__(self, cudart: _FakeCudart, image: tuple[int, int, int], dim: int, reject: str) -> None:
        self.cudart, self.reject = cudart, reject
        self.tensors = {
            "images": ("input", (-1, *image), "float32"),
            "embeddings": ("output", (-1, dim), "float32"),
            "aux": ("output", (-1, 5), "float16"),
        }
        self.num_io_tensors = len(self.tensors)

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_mode(self, name: str) -> str:
        return self.tensors[name][0]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name][1]

    def get_tensor_dtype(self, name: str) -> str:
        return self.tensors[name][2]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        rest = self.tensors[name][1][1:]
        return [(2, *rest), (4, *rest), (8, *rest)]

    def create_execution_context(self) -> _FakeContext:
        return _FakeContext(self)


class _FakeContext:
    """An IExecutionContext whose 'kernel' writes each image's mean pixel into its embedding row."""

    def __init__(self, engine: _FakeEngine) -> None:
        self.engine, self.batch, self.addresses = engine, 0, {}

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        return index == 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.batch = shape[0]
        return name == "images" and 2 <= shape[0] <= 8

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.batch, *self.engine.tensors[name][1][1:])

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return name != self.engine.reject

    def execute_async_v3(self, stream: int) -> bool:
        n, buffers = self.batch, self.engine.cudart.buffers
        per, dim = int(np.prod(self.engine.tensors["images"][1][1:])), self.engine.tensors["embeddings"][1][1]
        means = buffers[self.addresses["images"]].view(np.float32)[: n * per].reshape(n, per).mean(axis=1)
        buffers[self.addresses["embeddings"]].view(np.float32)[: n * dim].reshape(n, dim)[:] = means[:, None]
        return True


def _fake_tensorrt(engine: _FakeEngine) -> ModuleType:
    """A ``tensorrt`` module with only what the backend calls: a DataType is a numpy type name, a Dims a tuple."""
    trt = ModuleType("tensorrt")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity: None})
    trt.Runtime = lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda plan: engine)
    trt.TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.Dims = tuple
    trt.nptype = np.dtype
    return trt


def test_tensorrt_backend_binds_every_tensor_and_checks_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TensorRT backend against a fake engine (no TensorRT or GPU here): what it allocates, binds, checks and frees."""
    from han_deploy.model import model_config
    from han_deploy.runtime.backends import tensorrt_backend

    cfg = model_config("small")
    h, w = cfg.preprocess.input_size
    plan = tmp_path / "model.fp16.plan"
    plan.write_bytes(b"a serialised engine")
    (tmp_path / "manifest.json").write_text(json.dumps({"contract": json.loads(contract_metadata(cfg)[METADATA_KEY])}))
    cudart = _FakeCudart()
    monkeypatch.setattr(tensorrt_backend, "_cudart", lambda: cudart)

    def open_engine(image: tuple[int, int, int] = (3, h, w), reject: str = "") -> tensorrt_backend.TensorRTBackend:
        monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(_FakeEngine(cudart, image, cfg.embedding_dim, reject)))
        return tensorrt_backend.TensorRTBackend(plan, device="cuda:0").activate()

    with open_engine() as backend:
        assert (backend.min_batch, backend.max_batch, backend.fixed_batch) == (2, 8, None)
        assert backend.input_metadata() == {"images": TensorMeta((None, 3, h, w), np.dtype(np.float32))}  # the engine's
        addresses = dict(backend._context.addresses)  # every I/O tensor bound, sized for the profile's max batch
        sizes = {name: cudart.buffers[ptr].nbytes for name, ptr in addresses.items()}
        assert sizes == {"images": 8 * 3 * h * w * 4, "embeddings": 8 * cfg.embedding_dim * 4, "aux": 8 * 5 * 2}
        x = np.random.default_rng(0).uniform(0, 1, (9, 3, h, w)).astype(np.float32)
        out = backend.infer(x)  # a chunk of 8, then 1 padded to the profile's minimum of 2
        want = np.repeat(x.mean(axis=(1, 2, 3))[:, None], cfg.embedding_dim, axis=1)
        np.testing.assert_allclose(out, want, rtol=1e-4)
    assert sorted(cudart.freed) == sorted(addresses.values()) and backend._context is None and not backend.is_active
    with pytest.raises(RuntimeError, match="rejected the device address of aux"):
        open_engine(reject="aux")
    assert len(cudart.freed) == len(cudart.buffers)  # a failed open frees what it allocated
    with pytest.raises(ModelFileError, match="manifest"):
        open_engine(image=(3, h + 32, w))  # not the input size the contract describes


def test_engine_contract_comes_only_from_the_manifests_contract(model_and_onnx, tmp_path: Path) -> None:  # noqa: ANN001
    model, _ = model_and_onnx
    cfg = model.cfg
    loose = {"variant": cfg.variant, "preprocess": cfg.to_dict()["preprocess"], "artifacts": [{"file": "model.onnx"}]}
    (tmp_path / "manifest.json").write_text(json.dumps(loose))  # no 'contract': no guessing from loose fields
    with pytest.raises(ModelFileError, match="under 'contract'"):
        read_manifest_contract(tmp_path / "model.fp16.plan")
    contract = json.loads(contract_metadata(cfg, flops=1)[METADATA_KEY])
    (tmp_path / "manifest.json").write_text(json.dumps({**loose, "contract": contract}))
    got, read, where = read_manifest_contract(tmp_path / "model.fp16.plan")
    assert got == cfg and read == contract and where.name == "manifest.json"
    (tmp_path / "manifest.json").write_text(json.dumps({"contract": {"model": {"variant": "small", "bogus": 1}}}))
    with pytest.raises(ModelFileError, match="not a han-deploy contract"):
        read_manifest_contract(tmp_path / "model.fp16.plan")


def test_a_model_changed_after_export_is_refused(model_and_onnx, tmp_path: Path) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    (tmp_path / "intact").mkdir()
    intact = _copy(onnx_path, tmp_path / "intact" / onnx_path.name)
    write_manifest(tmp_path / "intact", onnx_path)
    with load_backend(intact) as b:  # the exported file itself passes
        assert b.embedding_dim == 1024
    bad = tampered_copy(onnx_path, tmp_path / "bad")
    write_manifest(tmp_path / "bad", onnx_path)
    with pytest.raises(ArtifactMismatchError, match="does not match its manifest") as err:
        load_backend(bad)
    assert sha256_file(onnx_path) in str(err.value) and sha256_file(bad) in str(err.value)
    with load_backend(bad, verify=False) as b:  # the check can be skipped
        assert b.embedding_dim == 1024


def test_a_named_manifest_is_checked_and_must_list_the_model(model_and_onnx, tmp_path: Path) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    bad = tampered_copy(onnx_path, tmp_path / "alone")
    with load_backend(bad):  # no manifest beside it: nothing to check against
        pass
    elsewhere = write_manifest(tmp_path, onnx_path)
    with pytest.raises(ArtifactMismatchError, match=sha256_file(onnx_path)):
        load_backend(bad, manifest=elsewhere)
    elsewhere.write_text(json.dumps({"artifacts": [{"file": "other.onnx", "sha256": "0" * 64}]}))
    with pytest.raises(ModelFileError, match=f"records no sha256 for {bad.name}"):
        load_backend(bad, manifest=elsewhere)
    with pytest.raises(ModelFileError, match="manifest not found"):
        load_backend(bad, manifest=tmp_path / "missing.json")


# ---------------------------------------------------------------- bad inputs never sink a batch


def test_bad_files_fail_alone_with_clear_reasons(model_and_onnx, image_files, tmp_path: Path) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    data = image_files[0].read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.jpg").write_bytes(data[:2] + bytes(range(256)) * 2 + data[514:])  # header destroyed
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "adir.jpg").mkdir()
    bad = {
        "truncated.jpg": "truncated JPEG",
        "corrupt.jpg": "corrupt",
        "empty.jpg": "0-byte",
        "adir.jpg": "is a directory",
        "missing.jpg": "no such file",
    }
    items: list = [image_files[0], *(tmp_path / n for n in bad), image_files[1], np.zeros((0, 5, 3), np.uint8), image_files[2]]
    with Extractor(onnx_path, batch_size=2) as ex:
        good = ex.embed(image_files[:3])
        res = ex.embed(items, errors="collect")
        assert res.ok.tolist() == [True, False, False, False, False, False, True, False, True]
        assert np.abs(res.embeddings[[0, 6, 8]] - good).max() < 1e-5 and np.isnan(res.embeddings[~res.ok]).all()
        reasons = {Path(e.source).name: e.reason for e in res.errors if e.index <= 5}
        for name, why in bad.items():
            assert why in reasons[name], (name, reasons[name])
        assert "empty image" in res.errors[-1].reason and res.errors[-1].index == 7
        with pytest.raises(ExtractionError, match="6 input") as info:
            ex.embed(items)
        assert "truncated.jpg" in str(info.value) and info.value.result is not None


def test_boxes_are_clipped_and_bad_boxes_fail_alone(model_and_onnx) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    frame = cv2.resize(person_crops(1)[0], (200, 300))
    boxes = [
        [20, 30, 120, 280],  # inside
        [-50, -40, 100, 500],  # partly outside: clipped to [0, 0, 100, 300]
        [300, 10, 400, 100],  # entirely outside
        [50, 50, 50, 120],  # zero width
        [10, np.nan, 60, 90],  # NaN
        [60, 90, 10, 20],  # inverted
    ]
    with Extractor(onnx_path) as ex:
        res = ex.embed_crops(frame, boxes, errors="collect")
        assert res.ok.tolist() == [True, True, False, False, False, False]
        expect = ex.embed([frame[30:280, 20:120], frame[0:300, 0:100]])
        assert np.abs(res.embeddings[:2] - expect).max() < 1e-5
        reasons = [e.reason for e in res.errors]
        assert "outside the 200x300 frame" in reasons[0] and "zero or negative area" in reasons[1]
        assert "non-finite" in reasons[2] and "zero or negative area" in reasons[3]


def test_grayscale_rgba_and_16bit_files_are_converted(model_and_onnx, tmp_path: Path) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    bgr = person_crops(1)[0]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "deep.png"), bgr.astype(np.uint16) * 257)
    with Extractor(onnx_path) as ex:
        files = ex.embed([tmp_path / "gray.png", tmp_path / "rgba.png", tmp_path / "deep.png"])
        arrays = ex.embed([gray, cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), bgr.astype(np.uint16) * 257])
        ref = ex.embed([cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), bgr, bgr])
    assert np.abs(files - ref).max() < 1e-4 and np.abs(arrays - ref).max() < 1e-4


# ---------------------------------------------------------------- streaming micro-batching


def test_streaming_micro_batches_many_cameras(model_and_onnx) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    frames = [cv2.resize(c, (160, 240)) for c in person_crops(4)]
    boxes = [[10, 10, 90, 200], [40, 20, 150, 230], [500, 500, 600, 600]]  # last one is outside
    with Extractor(onnx_path) as ex:
        expect = [ex.embed_crops(f, boxes[:2]) for f in frames]
    with StreamingExtractor(onnx_path, max_batch=8, max_latency_ms=50, workers=2) as stream:
        results: dict[int, list] = {}

        def camera(i: int) -> None:
            futs = []
            for _ in range(3):
                futs.append(stream.submit_crops(frames[i], boxes))
            results[i] = futs

        threads = [threading.Thread(target=camera, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, futs in results.items():
            for per_frame in futs:
                got = np.stack([f.result(timeout=60) for f in per_frame[:2]])
                assert np.abs(got - expect[i]).max() < 1e-4
                with pytest.raises(ValueError, match="outside the 160x240 frame"):
                    per_frame[2].result(timeout=60)
        sizes = list(stream.batch_sizes)
    assert sum(sizes) == 4 * 3 * 2 and max(sizes) <= 8 and max(sizes) > 1  # crops of several streams shared batches


def test_streaming_deadline_flushes_a_partial_batch(model_and_onnx, monkeypatch) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    with StreamingExtractor(onnx_path, max_batch=64, max_latency_ms=100) as stream:
        stream.submit(person_crops(1)[0]).result(timeout=60)  # warm up
        flushed: list[float] = []
        run = stream._run

        def timed_run(batch: list) -> None:  # when the batcher hands a batch to the model (inference time excluded)
            flushed.append(time.monotonic())
            run(batch)

        monkeypatch.setattr(stream, "_run", timed_run)
        t0 = time.monotonic()
        emb = stream.submit(person_crops(1)[0]).result(timeout=60)
    assert emb.shape == (1024,) and stream.batch_sizes == [1, 1]
    # a lone item waits out the 100 ms deadline for company, then runs alone: not at once, not for 63 more
    assert 0.099 <= flushed[0] - t0 < 1.0


# ---------------------------------------------------------------- torch-free import


def test_runtime_extracts_without_importing_torch(model_and_onnx, image_files) -> None:  # noqa: ANN001
    _, onnx_path = model_and_onnx
    code = (
        "import sys\n"
        "import han_deploy.runtime as rt\n"
        "from han_deploy.runtime.extractor import Extractor\n"
        "from han_deploy.runtime.gallery import Gallery\n"
        "from han_deploy.runtime.cli import extract_main, search_main\n"
        f"e = Extractor({str(onnx_path)!r}).embed([{str(image_files[0])!r}])\n"
        "g = Gallery(); g.add(e); g.search(e, k=1)\n"
        "assert e.shape == (1, 1024), e.shape\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'safetensors', 'onnx')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout
