"""Triton serving: generated model repositories, and the bundled Triton server on loopback.

The config tests parse every generated ``config.pbtxt`` with Triton's own protobuf schema (from
tritonclient) and check it states what the artifacts say. The server tests start the ``tritonserver``
bundled in ``nvidia-pytriton`` on 127.0.0.1 (skipped with the reason when it is not installed), send
a bounded number of concurrent requests, and compare Triton's embeddings with the local runtime's.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from han_deploy.config import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, read_contract  # noqa: E402
from han_deploy.runtime import load_backend, preprocess  # noqa: E402
from han_deploy.runtime.extractor import Extractor  # noqa: E402
from han_deploy.serve.handler import BatchHandler  # noqa: E402
from han_deploy.serve.triton import TritonArtifact, to_pbtxt, write_triton_repository  # noqa: E402

EMB_TOL = 1e-5


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from han_deploy.export import export_onnx
    from han_deploy.model import create_model

    torch.manual_seed(0)
    return export_onnx(create_model("han_small").eval(), tmp_path_factory.mktemp("onnx") / "han_small.onnx")


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    from han_deploy.data.synth import sample_crops

    return sample_crops(12, seed=3)


def _encode(image: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _parse(path: Path):  # -> model_config_pb2.ModelConfig
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is not installed")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


# ---------------------------------------------------------------- generated configs


def test_generated_configs_parse_and_state_the_artifacts(onnx_path: Path, tmp_path: Path) -> None:
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is not installed")
    int8 = tmp_path / "han_int8.onnx"
    shutil.copy(onnx_path, int8)
    int8_cpu = tmp_path / "han_int8_cpu.onnx"
    shutil.copy(onnx_path, int8_cpu)
    engine = tmp_path / "han_fp16.plan"
    engine.write_bytes(b"serialized engine bytes")  # copied as is: the generator never opens an engine
    repo = write_triton_repository(
        tmp_path / "repo",
        [
            onnx_path,
            TritonArtifact(int8, precision="int8", flavour="tensorrt"),
            TritonArtifact(int8_cpu, precision="int8", flavour="cpu"),
            TritonArtifact(engine, precision="fp16", max_batch=64),
        ],
        max_batch_size=32,
        preferred_batch_sizes=(4, 8, 16, 64),
        max_queue_delay_us=1500,
        instances=2,
        ort_tensorrt=True,
        python_instances=1,
        sys_path=["/opt/han"],
    )
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    cfg, contract = read_contract(meta)
    h, w = cfg.preprocess.input_size
    models = {p.parent.name: _parse(p) for p in sorted(repo.glob("*/config.pbtxt"))}
    assert sorted(models) == [
        "han_ensemble_python",
        "han_ensemble_trt_fp16",
        "han_jpeg",
        "han_onnx_fp32",
        "han_onnx_int8_cpu",
        "han_onnx_int8_tensorrt",
        "han_preprocess",
        "han_python",
        "han_trt_fp16",
    ]
    encoded_in = {"han_jpeg", "han_preprocess", "han_ensemble_python", "han_ensemble_trt_fp16"}
    for name, m in models.items():
        assert m.name == name
        assert json.loads(m.parameters[METADATA_KEY].string_value) == contract
        if name == "han_preprocess":  # bytes in, the network input out
            assert [(o.name, list(o.dims)) for o in m.output] == [(INPUT_NAME, [3, h, w]), ("valid", [1])]
        else:
            assert m.output[0].name == OUTPUT_NAME and m.output[0].data_type == mc.TYPE_FP32
            assert list(m.output[0].dims) == [cfg.embedding_dim]  # no batch axis: Triton adds it
        if not name.startswith("han_ensemble"):  # an ensemble's steps batch, not the ensemble
            assert m.dynamic_batching.max_queue_delay_microseconds == 1500
        if name in encoded_in:
            assert m.input[0].name == "encoded" and m.input[0].data_type == mc.TYPE_STRING and list(m.input[0].dims) == [1]
        else:
            assert m.input[0].name == INPUT_NAME and list(m.input[0].dims) == [3, h, w]
            assert m.input[0].data_type == mc.TYPE_FP32
    for name in ("han_onnx_fp32", "han_onnx_int8_tensorrt"):
        m = models[name]
        assert m.platform == "onnxruntime_onnx" and m.max_batch_size == 32
        assert list(m.dynamic_batching.preferred_batch_size) == [4, 8, 16]  # 64 > max_batch_size is dropped
        assert m.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU and m.instance_group[0].count == 2
        accel = m.optimization.execution_accelerators.gpu_execution_accelerator[0]
        assert accel.name == "tensorrt"
        assert accel.parameters["precision_mode"] == ("INT8" if "int8" in name else "FP32")
        assert (repo / name / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    cpu = models["han_onnx_int8_cpu"]  # the ONNX Runtime CPU flavour: CPU instances, no TensorRT block
    assert cpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU and not cpu.HasField("optimization")
    trt = models["han_trt_fp16"]
    assert trt.platform == "tensorrt_plan" and trt.max_batch_size == 64  # the engine profile's max
    assert list(trt.dynamic_batching.preferred_batch_size) == [4, 8, 16, 64]
    assert (repo / "han_trt_fp16" / "1" / "model.plan").read_bytes() == b"serialized engine bytes"
    for name in ("han_python", "han_jpeg", "han_preprocess"):
        m = models[name]
        assert m.backend == "python" and m.max_batch_size == 32
        assert m.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
        assert m.parameters["sys_path"].string_value == "/opt/han"
        assert (repo / name / "1" / "model.py").is_file()
        assert (repo / name / "1" / "model.onnx").is_file() == (name != "han_preprocess")
    for name in ("han_jpeg", "han_ensemble_python", "han_ensemble_trt_fp16"):
        assert [(o.name, o.data_type) for o in models[name].output] == [(OUTPUT_NAME, mc.TYPE_FP32), ("valid", mc.TYPE_BOOL)]
    for name, target in (("han_ensemble_python", "han_python"), ("han_ensemble_trt_fp16", "han_trt_fp16")):
        m = models[name]
        assert m.platform == "ensemble" and m.max_batch_size == 32  # min(preprocess 32, target 32 or 64)
        steps = m.ensemble_scheduling.step
        assert [s.model_name for s in steps] == ["han_preprocess", target]
        assert dict(steps[0].output_map) == {INPUT_NAME: INPUT_NAME, "valid": "valid"}
        assert dict(steps[1].input_map) == {INPUT_NAME: INPUT_NAME} and dict(steps[1].output_map) == {OUTPUT_NAME: OUTPUT_NAME}
        assert (repo / name / "1").is_dir()
    listing = json.loads((repo / "repository.json").read_text())
    import hashlib

    for entry in listing["models"]:
        for rel, info in entry["files"].items():
            assert hashlib.sha256((repo / entry["name"] / rel).read_bytes()).hexdigest() == info["sha256"]


def test_generator_refuses_what_it_cannot_describe(onnx_path: Path, tmp_path: Path) -> None:
    engine = tmp_path / "e.plan"
    engine.write_bytes(b"x")
    with pytest.raises(ValueError, match="max_batch"):
        write_triton_repository(tmp_path / "a", [onnx_path, engine])
    with pytest.raises(ValueError, match="one model name"):
        write_triton_repository(tmp_path / "b", [onnx_path, onnx_path])
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        write_triton_repository(tmp_path / "c", [tmp_path / "missing.onnx"])
    with pytest.raises(ValueError, match="unsupported suffix"):
        TritonArtifact(tmp_path / "model.bin")
    with pytest.raises(ValueError, match="python models need an ONNX"):
        write_triton_repository(tmp_path / "d", [TritonArtifact(engine, max_batch=8)], config=read_contract(_meta(onnx_path))[0])
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        write_triton_repository(tmp_path / "e", [onnx_path])
    assert (tmp_path / "e" / "keep.txt").read_text() == "user data"


def test_han_serve_repo_command(onnx_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from han_deploy.serve.cli import main

    engine = tmp_path / "m.plan"
    engine.write_bytes(b"x")
    argv = ["repo", str(tmp_path / "r"), str(onnx_path), f"{engine}:int8:16", "--no-jpeg", "--max-batch-size", "8"]
    assert main([*argv, "--preferred-batch-sizes", "2,4", "--sys-path", "", "--python-spinning", "0"]) == 0
    assert "han_preprocess, han_python, han_trt_int8" in capsys.readouterr().out
    trt = _parse(tmp_path / "r" / "han_trt_int8" / "config.pbtxt")
    assert trt.max_batch_size == 16 and list(trt.dynamic_batching.preferred_batch_size) == [2, 4]
    py = _parse(tmp_path / "r" / "han_python" / "config.pbtxt")
    assert py.max_batch_size == 8 and py.parameters["sys_path"].string_value == ""
    assert py.parameters["spinning"].string_value == "0"
    assert not (tmp_path / "r" / "han_jpeg").exists()
    with pytest.raises(SystemExit):
        main(["repo", str(tmp_path / "s"), f"{engine}:fp64"])


def test_committed_example_repository_parses() -> None:
    example = Path(__file__).resolve().parents[1] / "export" / "triton" / "example"
    configs = sorted(example.glob("*/config.pbtxt"))
    assert len(configs) == 10
    for path in configs:
        m = _parse(path)
        assert m.name == path.parent.name and m.max_batch_size == 32
        assert [list(o.dims) for o in m.output][:1] in ([[1024]], [[3, 160, 64]])
        contract = json.loads(m.parameters[METADATA_KEY].string_value)
        assert contract["model"]["variant"] == "small" and contract["embedding_dim"] == 1024


def _meta(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.mark.parametrize("text", ["plain", 'quote " and back\\slash', "new\nline", "caf\u00e9 \u4eba", '{"k": [1, 2]}'])
def test_pbtxt_strings_round_trip(text: str) -> None:
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is not installed")
    from google.protobuf import text_format

    pbtxt = to_pbtxt({"name": "m", "parameters": [{"key": "k", "value": {"string_value": text}}]})
    parsed = text_format.Parse(pbtxt, model_config_pb2.ModelConfig())
    assert parsed.parameters["k"].string_value == text


# ---------------------------------------------------------------- the python model's batch logic, without Triton


def test_batch_handler_isolates_bad_requests(onnx_path: Path, crops: list[np.ndarray]) -> None:
    backend = load_backend(onnx_path)
    x = preprocess(crops[:5], backend.config.preprocess)
    handler = BatchHandler(onnx_path)
    results = handler.run([x[:2], np.zeros((1, 3, 10, 10), np.float32), x[2:5], x[:1].astype(np.float64)])
    assert results[1].error and "(N, 3, 160, 64)" in results[1].error
    assert results[3].error and "float32" in results[3].error
    ref = backend.infer(x)
    np.testing.assert_allclose(results[0].embeddings, ref[:2], atol=EMB_TOL)
    np.testing.assert_allclose(results[2].embeddings, ref[2:5], atol=EMB_TOL)

    encoded = BatchHandler(onnx_path, input_kind="encoded")
    good = [_encode(c) for c in crops[:3]]
    req = np.array([good[0], b"not an image", good[1], good[2][:-200]], dtype=object).reshape(-1, 1)
    (res,) = encoded.run([req])
    assert res.valid.ravel().tolist() == [True, False, True, False]  # the truncated JPEG is refused too
    local = Extractor(onnx_path).embed([good[0], good[1]])
    np.testing.assert_allclose(res.embeddings[[0, 2]], local, atol=EMB_TOL)
    assert not res.embeddings[[1, 3]].any()

    pre_only = BatchHandler(None, input_kind="preprocess", contract=_meta(onnx_path)[METADATA_KEY])
    (res,) = pre_only.run([req])
    assert res.embeddings is None and res.valid.ravel().tolist() == [True, False, True, False]
    import cv2

    decoded = [cv2.imdecode(np.frombuffer(g, np.uint8), cv2.IMREAD_COLOR) for g in good[:2]]
    np.testing.assert_array_equal(res.images[[0, 2]], preprocess(decoded, backend.config.preprocess))


def test_missing_stub_env_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from han_deploy.serve import stub_env

    monkeypatch.setenv(stub_env.ENV_VARIABLE, str(tmp_path / "nowhere"))
    monkeypatch.setattr(stub_env, "numpy_major", lambda: 2)
    with pytest.raises(RuntimeError, match="python -m han_deploy.serve prepare"):
        stub_env.stub_bin_dir()
    monkeypatch.setattr(stub_env, "numpy_major", lambda: 1)  # NumPy 1.x: this interpreter's own bin is fine
    assert stub_env.stub_bin_dir() == Path(sys.executable).parent


# ---------------------------------------------------------------- the bundled Triton server

THREADS = 8
REQUESTS_PER_THREAD = 6  # 48 single-crop requests in all: bounded, and enough to show batching


@pytest.fixture(scope="module")
def served(onnx_path: Path, tmp_path_factory: pytest.TempPathFactory):
    from han_deploy.serve.server import BundledTriton, TritonNotAvailable, TritonServer

    try:
        BundledTriton.locate()
    except TritonNotAvailable as exc:
        pytest.skip(f"no bundled Triton server: {exc}")
    pytest.importorskip("tritonclient.http", reason="tritonclient[http,grpc] is not installed")
    repo = write_triton_repository(
        tmp_path_factory.mktemp("triton") / "repo",
        [onnx_path],
        max_batch_size=16,
        preferred_batch_sizes=(4, 8, 16),
        max_queue_delay_us=50_000,  # long enough for 8 threads' requests to meet on this 2-core machine
        python_threads=2,
    )
    models = ["han_python", "han_jpeg", "han_preprocess", "han_ensemble_python"]
    server = TritonServer(repo, models=models, startup_timeout_s=120)
    try:
        server.start()
        yield server
    finally:
        pid = server.pid
        server.stop()
        if pid is not None:  # stopped by its own pid: neither it nor anything in its process group is left
            with pytest.raises(ProcessLookupError):
                os.killpg(pid, 0)


def test_every_listener_is_on_loopback(served) -> None:
    from han_deploy.serve.server import is_loopback, listening_sockets

    expected = {served.http_port, served.grpc_port, served.metrics_port}
    deadline = time.monotonic() + 10  # the metrics listener can open a moment after the server reports ready
    sockets = listening_sockets(served.pid)
    while {port for _, port in sockets} != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        sockets = listening_sockets(served.pid)
    assert {port for _, port in sockets} == expected
    assert all(is_loopback(addr) for addr, _ in sockets), sockets


def _model_stats(server, model: str) -> dict:
    return server.get_json(f"/v2/models/{model}/stats")["model_stats"][0]


def test_concurrent_requests_match_the_local_runtime_and_are_batched(served, onnx_path: Path, crops: list[np.ndarray]) -> None:
    from han_deploy.serve.client import TritonBackend

    local = load_backend(onnx_path)
    x = preprocess(crops, local.config.preprocess)
    ref = local.infer(x)
    before = _model_stats(served, "han_python")
    backend = TritonBackend(served.http_url, "han_python", "http").activate()
    results: dict[tuple[int, int], np.ndarray] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(t: int) -> None:
        try:
            start.wait(timeout=30)
            for r in range(REQUESTS_PER_THREAD):
                i = (t * REQUESTS_PER_THREAD + r) % len(crops)
                results[(t, r)] = backend.infer(x[i : i + 1])[0]  # one request per crop, each thread its own client
        except BaseException as exc:  # reported below; a thread's exception would otherwise be lost
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    backend.deactivate()
    assert not failures, failures
    assert len(results) == THREADS * REQUESTS_PER_THREAD
    for (t, r), emb in results.items():
        np.testing.assert_allclose(emb, ref[(t * REQUESTS_PER_THREAD + r) % len(crops)], atol=EMB_TOL)

    after = _model_stats(served, "han_python")
    requests = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == THREADS * REQUESTS_PER_THREAD
    assert executions < requests, f"dynamic batching did not batch: {executions} executions for {requests} requests"
    assert any(b["batch_size"] > 1 for b in after["batch_stats"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_has_the_extractor_contract(served, onnx_path: Path, crops: list[np.ndarray], protocol: str) -> None:
    from han_deploy.runtime.extractor import ExtractionError
    from han_deploy.serve.client import triton_extractor

    url = served.http_url if protocol == "http" else served.grpc_url
    items = [*crops, np.zeros((0, 5, 3), np.uint8), crops[0][:, :, 0]]  # an empty image and a grayscale one
    with Extractor(onnx_path) as local:
        expected = local.embed(items, errors="collect")
    with triton_extractor(url, protocol=protocol, batch_size=5) as remote:
        got = remote.embed(items, errors="collect")
        with pytest.raises(ExtractionError, match=r"\[12\]"):
            remote.embed(items)
    assert got.ok.tolist() == expected.ok.tolist() == [True] * 12 + [False, True]
    np.testing.assert_allclose(got.embeddings[got.ok], expected.embeddings[expected.ok], atol=EMB_TOL)
    assert [e.index for e in got.errors] == [12]


@pytest.mark.parametrize("model", ["han_jpeg", "han_ensemble_python"])
def test_encoded_images_are_decoded_on_the_server(served, onnx_path: Path, crops: list[np.ndarray], model: str) -> None:
    from han_deploy.serve.client import TritonEncodedExtractor

    blobs = [_encode(c) for c in crops[:4]]
    items = [blobs[0], b"\x00garbage", blobs[1], blobs[2], blobs[3]]
    remote = TritonEncodedExtractor(served.http_url, model)
    try:
        got = remote.embed(items, errors="collect")
    finally:
        remote.close()
    expected = Extractor(onnx_path).embed(items, errors="collect")
    assert got.ok.tolist() == expected.ok.tolist() == [True, False, True, True, True]
    np.testing.assert_allclose(got.embeddings[got.ok], expected.embeddings[expected.ok], atol=EMB_TOL)


def test_a_malformed_request_fails_alone(served, onnx_path: Path, crops: list[np.ndarray]) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(served.http_url)
    try:
        bad = httpclient.InferInput(INPUT_NAME, [1, 3, 160, 64], "FP32")
        bad.set_data_from_numpy(np.full((1, 3, 160, 64), np.nan, np.float32))
        with pytest.raises(InferenceServerException, match="NaN"):
            client.infer("han_python", [bad])
        assert client.is_server_live() and client.is_model_ready("han_python")
        x = preprocess(crops[:2], load_backend(onnx_path).config.preprocess)
        good = httpclient.InferInput(INPUT_NAME, list(x.shape), "FP32")
        good.set_data_from_numpy(x)
        out = client.infer("han_python", [good]).as_numpy(OUTPUT_NAME)
        np.testing.assert_allclose(out, load_backend(onnx_path).infer(x), atol=EMB_TOL)
    finally:
        client.close()
