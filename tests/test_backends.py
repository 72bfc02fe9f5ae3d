"""The backend lifecycle (docs/runtime.md, "Lifecycle") on tiny hand-built ONNX graphs: no torch, no export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from han_deploy.config import INPUT_NAME, OUTPUT_NAME, HANConfig, contract_metadata  # noqa: E402
from han_deploy.runtime import BackendInactiveError, ModelFileError, load_backend  # noqa: E402
from han_deploy.runtime.backends import TensorMeta  # noqa: E402
from han_deploy.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402

CFG = HANConfig(variant="small", strides=(2, 1, 1), feature="global", feat_dim=4)  # 4-d embeddings
H, W = CFG.preprocess.input_size


def tiny_onnx(path: Path, batch: int | str = "batch", elem: int = TensorProto.FLOAT) -> Path:
    """A han-deploy ONNX file in miniature: per-channel means times a (3, 4) matrix, contract in its metadata."""
    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    nodes = [
        helper.make_node("GlobalAveragePool", [INPUT_NAME], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], [OUTPUT_NAME]),
    ]
    if elem != TensorProto.FLOAT:  # a float16-input graph casts to float32 first
        nodes.insert(0, helper.make_node("Cast", [INPUT_NAME], ["as_float"], to=TensorProto.FLOAT))
        nodes[1].input[0] = "as_float"
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(INPUT_NAME, elem, [batch, 3, H, W])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, 4])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, contract_metadata(CFG))
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def batch(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3, H, W)).astype(np.float32)


def expected(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(2, 3)) @ np.arange(12, dtype=np.float32).reshape(3, 4)


def test_construction_loads_nothing_and_an_inactive_backend_names_itself_and_its_file(tmp_path: Path) -> None:
    missing = OnnxRuntimeBackend(tmp_path / "missing.onnx", optimization="fastest")  # nothing read, nothing checked yet
    assert not missing.is_active and missing.session is None
    for use in (lambda: missing.infer(batch(1)), missing.input_metadata):
        with pytest.raises(BackendInactiveError, match=r"onnxruntime backend for .*missing\.onnx is not active"):
            use()
    with pytest.raises(ValueError, match="optimization must be one of") as err:  # create_session's check, the only one
        missing.activate()
    assert not isinstance(err.value, ModelFileError) and not missing.is_active
    with pytest.raises(ModelFileError, match="missing.onnx is not a valid ONNX model"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx").activate()


def test_context_manager_activates_and_deactivate_releases_the_session(model_path: Path) -> None:
    backend = OnnxRuntimeBackend(model_path)
    with backend as active:
        assert active is backend and backend.is_active and backend.session is not None
        out = backend.infer(batch(3))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected(batch(3)), rtol=1e-4, atol=1e-5)
    assert not backend.is_active and backend.session is None
    assert backend.config == CFG  # metadata read at activation stays readable
    with pytest.raises(BackendInactiveError, match=r"onnxruntime backend for .*tiny\.onnx"):
        backend.infer(batch(3))


def test_activate_twice_is_a_no_op_and_reactivation_works(model_path: Path) -> None:
    backend = OnnxRuntimeBackend(model_path).activate()
    session, first = backend.session, backend.infer(batch(2))
    assert backend.activate() is backend and backend.session is session  # no second session
    backend.deactivate()
    backend.deactivate()  # deactivating an inactive backend: nothing to do
    with backend:  # a fresh session
        assert backend.session is not session
        np.testing.assert_array_equal(backend.infer(batch(2)), first)
    assert backend.session is None


def test_load_backend_returns_an_active_backend_the_with_block_deactivates(model_path: Path) -> None:
    with load_backend(model_path) as backend:
        assert backend.is_active and backend.infer(batch(1)).shape == (1, 4)
    assert not backend.is_active and backend.session is None


def test_input_metadata_comes_from_the_session(tmp_path: Path, model_path: Path) -> None:
    with load_backend(model_path) as dynamic:
        assert dynamic.input_metadata() == {INPUT_NAME: TensorMeta((None, 3, H, W), np.dtype(np.float32))}
        assert dynamic.max_batch is None and dynamic.fixed_batch is None
    with load_backend(tiny_onnx(tmp_path / "static.onnx", batch=2)) as static:  # a static batch axis: chunks of 2
        assert static.input_metadata()[INPUT_NAME].shape == (2, 3, H, W)
        assert static.max_batch == static.fixed_batch == 2 and static.infer(batch(3)).shape == (3, 4)
    with load_backend(tiny_onnx(tmp_path / "half.onnx", elem=TensorProto.FLOAT16)) as half:
        assert half.input_metadata()[INPUT_NAME].dtype == np.float16  # fed float32, cast at the model's boundary
        np.testing.assert_allclose(half.infer(batch(2)), expected(batch(2)), atol=1e-2)
    with pytest.raises(ModelFileError, match="takes float32 or float16") as err:
        load_backend(tiny_onnx(tmp_path / "ints.onnx", elem=TensorProto.INT32))
    assert "ints.onnx: input 'images' is tensor(int32)" in str(err.value)


def test_a_failed_activation_leaves_the_backend_inactive_and_released(tmp_path: Path) -> None:
    bare = tiny_onnx(tmp_path / "bare.onnx")
    proto = onnx.load(str(bare))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare))
    backend = OnnxRuntimeBackend(bare)
    with pytest.raises(ModelFileError, match="no han-deploy contract"):
        backend.activate()
    assert not backend.is_active and backend.session is None


def test_torch_backend_activates_a_copy_of_the_module_and_releases_it() -> None:
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        cfg = CFG

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)) @ torch.arange(12, dtype=torch.float32).reshape(3, 4)

    from han_deploy.runtime.backends.torch_backend import TorchBackend

    module = Tiny()
    backend = TorchBackend.from_module(module, name="tiny")
    assert not backend.is_active and backend.model is None
    with backend:
        assert backend.model is not module and backend.input_metadata()[INPUT_NAME].shape == (None, 3, H, W)
        out = backend.infer(batch(2))
    assert backend.model is None and backend.forward is None
    with pytest.raises(BackendInactiveError, match="torch backend for tiny"):
        backend.infer(batch(2))
    with backend:
        np.testing.assert_array_equal(backend.infer(batch(2)), out)
