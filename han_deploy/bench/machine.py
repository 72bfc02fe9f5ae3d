"""What a benchmark ran on: CPU model and SIMD flags, cores, load, the busiest other processes, GPU, versions.

Numbers without the machine and the software versions cannot be compared, and a load average above
the core count means other processes shared the CPU: both travel with every result.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

# SIMD / matrix extensions that decide which kernels the libraries can use
CPU_FLAGS_OF_INTEREST = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
PACKAGES = ("numpy", "torch", "onnxruntime", "onnx", "onnxslim", "fvcore", "tensorrt", "tensorrt_lean", "matplotlib")


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def cpu_info() -> dict[str, Any]:
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "model": info.get("model name") or platform.processor() or platform.machine(),
        "vendor": info.get("vendor_id"),
        "family_model_stepping": "/".join(info.get(k, "?") for k in ("cpu family", "model", "stepping")),
        "mhz": info.get("cpu MHz"),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "flags": {f: f in flags for f in CPU_FLAGS_OF_INTEREST},
        "hypervisor": "hypervisor" in flags,
    }


def load_snapshot(top: int = 5) -> dict[str, Any]:
    """Load averages and the busiest processes (command name and CPU%), to say whether the CPU was shared."""
    snap: dict[str, Any] = {"utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        snap["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        snap["loadavg_1_5_15"] = None
    try:
        ps = subprocess.run(["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True, timeout=5)
        rows = []
        for line in ps.stdout.splitlines()[1:]:
            parts = line.split(None, 2)
            if len(parts) == 3 and int(parts[0]) != os.getpid() and parts[2] != "ps":
                rows.append({"pid": int(parts[0]), "cpu_percent": float(parts[1]), "command": parts[2]})
            if len(rows) >= top:
                break
        snap["top_processes"] = rows
    except (OSError, ValueError, subprocess.SubprocessError):
        snap["top_processes"] = None
    return snap


def gpu_info() -> dict[str, Any]:
    """CUDA devices PyTorch sees (an empty list on a CPU-only machine or without torch)."""
    try:
        import torch
    except ImportError:
        return {"cuda_available": False, "devices": [], "note": "torch not installed"}
    if not torch.cuda.is_available():
        return {"cuda_available": False, "devices": []}
    return {
        "cuda_available": True,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cuda": torch.version.cuda,
    }


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            mod = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken optional package is reported as absent
            out[name] = None
            continue
        out[name] = getattr(mod, "__version__", "installed (no __version__)")
    try:
        from importlib.metadata import version

        out["han_deploy"] = version("han-deploy")
    except Exception:  # noqa: BLE001
        out["han_deploy"] = None
    try:
        repo = Path(__file__).resolve().parents[2]
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            out["git_commit"] = rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def machine_record() -> dict[str, Any]:
    """Everything about the machine and software that a result needs next to it."""
    return {"hostname": platform.node(), "cpu": cpu_info(), "gpu": gpu_info(), "versions": versions()}
