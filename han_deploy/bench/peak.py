"""The machine's own GEMM peak, measured in the same run as the models it is compared with.

Efficiency = a model's achieved FLOP/s (FLOPs = 2 x MACs per image x images/s) / this peak. The FP32
peak is the best of three GEMM libraries, each reported: numpy's BLAS, PyTorch's ``mm`` and ONNX
Runtime's own ``MatMul`` kernel (MLAS). On AMD CPUs numpy/PyTorch BLAS can take AVX2 paths while
MLAS does not (docs/benchmarking.md), so the libraries differ by up to 2x and the best is the honest peak.
ONNX Runtime's ``MatMulInteger`` (uint8 x int8 -> int32) gives the INT8 peak, in GOP/s (2 per MAC).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

GEMM_SIZE = 2048  # square M = N = K: 17.2 GFLOP a call, large enough to be compute bound


def _best_rate(fn: Callable[[], Any], flops: float, warmup: int, repeats: int) -> dict[str, Any]:
    for _ in range(warmup):
        fn()
    secs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        secs.append(time.perf_counter() - t0)
    secs.sort()
    return {
        "gflops": flops / secs[0] / 1e9,
        "median_gflops": flops / secs[len(secs) // 2] / 1e9,
        "best_s": secs[0],
        "repeats": repeats,
    }


def _ort_matmul_session(size: int, threads: int | None, integer: bool) -> Any:
    from onnx import TensorProto, helper

    from ..runtime.backends.onnxruntime_backend import create_session

    if integer:
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])
        b = helper.make_tensor_value_info("b", TensorProto.INT8, [size, size])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    else:
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])
        b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [size, size])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "gemm_peak", [a, b], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = min(proto.ir_version, 9)
    return create_session(proto.SerializeToString(), threads=threads, spinning=False)


def measure_gemm_peaks(
    threads: int | None = None,
    size: int = GEMM_SIZE,
    warmup: int = 2,
    repeats: int = 5,
    libraries: tuple[str, ...] = ("numpy", "torch", "onnxruntime", "onnxruntime_u8s8"),
) -> dict[str, Any]:
    """FP32 (and INT8) GEMM rates of each library and the FP32 peak (the best of them).

    ``threads``: PyTorch and ONNX Runtime use exactly that many; numpy's BLAS uses its own default
    (the process's OMP/OPENBLAS settings), which the result records.
    """
    if size < 1:
        raise ValueError(f"GEMM size must be >= 1, got {size}")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    flops = 2.0 * size**3
    out: dict[str, Any] = {"size": size, "threads": threads, "libraries": {}}
    libs = out["libraries"]
    for lib in libraries:
        try:
            if lib == "numpy":
                libs[lib] = _best_rate(lambda: a @ b, flops, warmup, repeats)
                libs[lib]["threads"] = "BLAS default"
            elif lib == "torch":
                import torch

                prev = torch.get_num_threads()
                if threads:
                    torch.set_num_threads(threads)
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                try:
                    libs[lib] = _best_rate(functools.partial(torch.mm, ta, tb), flops, warmup, repeats)
                finally:
                    torch.set_num_threads(prev)
            elif lib in ("onnxruntime", "onnxruntime_u8s8"):
                integer = lib.endswith("u8s8")
                sess = _ort_matmul_session(size, threads, integer)
                feeds = (
                    {
                        "a": rng.integers(0, 255, (size, size), dtype=np.uint8),
                        "b": rng.integers(-127, 127, (size, size), dtype=np.int8),
                    }
                    if integer
                    else {"a": a, "b": b}
                )
                libs[lib] = _best_rate(functools.partial(sess.run, None, feeds), flops, warmup, repeats)
                if integer:
                    libs[lib]["unit"] = "GOP/s (int8 MACs x 2)"
            else:
                raise ValueError(f"unknown GEMM library {lib!r}")
        except ImportError as exc:
            libs[lib] = {"skipped": f"{type(exc).__name__}: {exc}"}
    fp32 = {k: v["gflops"] for k, v in libs.items() if "gflops" in v and not k.endswith("u8s8")}
    if fp32:
        best = max(fp32, key=lambda k: fp32[k])
        out["fp32_peak_gflops"] = fp32[best]
        out["fp32_peak_library"] = best
    if "gflops" in libs.get("onnxruntime_u8s8", {}):
        out["int8_peak_gops"] = libs["onnxruntime_u8s8"]["gflops"]
    return out


def measure_cuda_peaks(device: str = "cuda", size: int = 8192, warmup: int = 3, repeats: int = 10) -> dict[str, Any]:
    """FP32 (TF32 off) and FP16 ``torch.mm`` rates on a CUDA device (the GPU suite's efficiency is against FP16).

    UNTESTED: written against the PyTorch 2.x CUDA API, never run (no GPU in the task that wrote it).
    """
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"no CUDA device for the GEMM peak on {device!r}")
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    libs: dict[str, Any] = {}
    try:
        for name, dtype in (("torch_cuda_fp32", torch.float32), ("torch_cuda_fp16", torch.float16)):
            a = torch.randn(size, size, device=device, dtype=dtype)
            b = torch.randn(size, size, device=device, dtype=dtype)

            def mm(a: Any = a, b: Any = b) -> None:
                torch.mm(a, b)
                torch.cuda.synchronize()

            libs[name] = _best_rate(mm, 2.0 * size**3, warmup, repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    return {
        "size": size,
        "device": torch.cuda.get_device_name(device),
        "libraries": libs,
        "fp32_peak_gflops": libs["torch_cuda_fp32"]["gflops"],
        "fp32_peak_library": "torch_cuda_fp32",
        "fp16_peak_gflops": libs["torch_cuda_fp16"]["gflops"],
        "verified": False,
    }
