"""Launch the ``tritonserver`` bundled in the ``nvidia-pytriton`` wheel on loopback, and stop it by its pid.

The wheel ships Triton 2.51 with only the python backend (no ONNX Runtime or TensorRT backend), so
it serves the repository's ``python``-backend models. What it needs, found here once:

- the stub that matches this interpreter (``python_backend_stubs/3.X``) copied next to
  ``libtriton_python.so`` in a private backend directory (pytriton does the same);
- ``LD_LIBRARY_PATH`` with the wheel's ``nvidia_pytriton.libs`` and this interpreter's ``LIBDIR``: the
  stub links ``libpython3.X.so.1.0``, and a pyenv/conda interpreter keeps its own copy there;
- ``PATH`` starting with the ``bin`` folder of the Python the stub should be: its embedded interpreter
  finds its prefix (and so a venv's ``site-packages``) from the ``python3`` it sees on ``PATH``, and
  ignores ``PYTHONPATH``. Under NumPy 2 that is a small stub env with NumPy 1.x (see :mod:`.stub_env`).

Every listener (HTTP, gRPC, metrics) is bound to ``127.0.0.1`` by default; the server runs in its
own process group and :meth:`TritonServer.stop` signals that group by the pid it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stub_env import stub_bin_dir

LOOPBACK = "127.0.0.1"


class TritonNotAvailable(RuntimeError):
    """The bundled Triton server cannot run here (``nvidia-pytriton`` missing or incomplete)."""


@dataclass(frozen=True)
class BundledTriton:
    """Paths of the Triton distribution inside the installed ``nvidia-pytriton`` wheel."""

    binary: Path
    python_backend: Path
    stub: Path
    libs: Path
    caches: Path

    @classmethod
    def locate(cls) -> BundledTriton:
        """Find the wheel's ``tritonserver`` and the python-backend stub for this interpreter, or raise."""
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise TritonNotAvailable("nvidia-pytriton is not installed (pip install --no-deps nvidia-pytriton)")
        root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        found = cls(
            binary=root / "bin" / "tritonserver",
            python_backend=root / "backends" / "python",
            stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
            libs=root.parent.parent / "nvidia_pytriton.libs",
            caches=root / "caches",
        )
        for path in (found.binary, found.python_backend / "libtriton_python.so", found.stub, found.libs):
            if not path.exists():
                raise TritonNotAvailable(f"nvidia-pytriton is incomplete: {path} is missing (Python {version})")
        return found


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _decode_proc_address(hex_addr: str) -> tuple[str, int]:
    """``0100007F:1F90`` (IPv4) or 32-hex-digit IPv6 from ``/proc/net/tcp*`` -> (address, port)."""
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1]), int(port, 16)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))  # four little-endian 32-bit words
    return socket.inet_ntop(socket.AF_INET6, words), int(port, 16)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """The (address, port) of every TCP socket process ``pid`` listens on, read from ``/proc`` (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                found.append(_decode_proc_address(fields[1]))
    return sorted(found)


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback (``::ffff:127.x.y.z``, how gRPC binds 127.0.0.1)."""
    import ipaddress

    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def python_library_dirs() -> list[str]:
    """Directories holding this interpreter's ``libpython3.X.so`` (the stub links it dynamically)."""
    dirs = [sysconfig.get_config_var("LIBDIR"), os.path.join(sys.base_prefix, "lib")]
    return [d for d in dict.fromkeys(dirs) if d and os.path.isdir(d)]


@dataclass
class TritonServer:
    """One ``tritonserver`` process serving ``model_repository`` on loopback.

    Use as a context manager (``with TritonServer(repo) as server: ...``) so the process is stopped in
    every case. ``models`` loads only those models (explicit model control; the bundled server has no
    ONNX Runtime or TensorRT backend, so a full repository's other models would fail). Ports default
    to free ones; ``http_url`` / ``grpc_url`` / ``metrics_url`` say where it listens. ``extra_args``
    are appended to the command line.
    """

    model_repository: Path
    host: str = LOOPBACK
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    log_file: Path | None = None
    startup_timeout_s: float = 60.0
    log_verbose: int = 0
    exit_timeout_s: int = 5
    models: list[str] | None = None
    stub_env: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    final_log: str = field(default="", init=False)
    _workdir: Path | None = field(default=None, init=False)
    _log_handle: Any = field(default=None, init=False)

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def command(self, dist: BundledTriton, backend_dir: Path) -> list[str]:
        """The ``tritonserver`` command line: every listener on ``self.host``, python backend only."""
        return [
            str(dist.binary),
            f"--model-repository={Path(self.model_repository).resolve()}",
            f"--backend-directory={backend_dir}",
            f"--cache-directory={dist.caches}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.log_verbose}",
            *(["--model-control-mode=explicit", *(f"--load-model={m}" for m in self.models)] if self.models else []),
            *self.extra_args,
        ]

    def environment(self, dist: BundledTriton) -> dict[str, str]:
        """This process's environment plus what the bundled server and its python stub need."""
        env = dict(os.environ)
        libs = [str(dist.libs), *python_library_dirs()]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        env["PATH"] = os.pathsep.join([str(stub_bin_dir(self.stub_env)), env.get("PATH", "")])
        return env

    def start(self) -> TritonServer:
        """Start the server and wait until it reports ready; raise with the log tail if it does not."""
        if self.process is not None:
            raise RuntimeError(f"server already started (pid {self.process.pid})")
        dist = BundledTriton.locate()
        for name in ("http_port", "grpc_port", "metrics_port"):
            if not getattr(self, name):
                setattr(self, name, free_port(self.host))
        self._workdir = Path(tempfile.mkdtemp(prefix="han-triton-"))
        backend = self._workdir / "backends" / "python"
        backend.mkdir(parents=True)
        for item in dist.python_backend.iterdir():
            if item.is_file():
                (backend / item.name).symlink_to(item)
        shutil.copy2(dist.stub, backend / "triton_python_backend_stub")
        if self.log_file is None:  # a temporary log, removed by stop() (its tail stays in final_log)
            self.log_file = self._workdir / "tritonserver.log"
        self._log_handle = open(self.log_file, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.process = subprocess.Popen(
                self.command(dist, backend.parent),
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(dist),
                cwd=self._workdir,
                start_new_session=True,  # own process group: stop() kills the stubs too
            )
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Poll ``/v2/health/ready`` until it answers 200, the process dies, or the timeout passes."""
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            time.sleep(0.2)
        raise TimeoutError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        """The last ``chars`` characters of the server log (kept in memory once a temporary log is removed)."""
        if self.log_file is None or not Path(self.log_file).exists():
            return self.final_log[-chars:]
        return Path(self.log_file).read_text(errors="replace")[-chars:]

    def get_json(self, path: str) -> Any:
        """GET ``path`` (e.g. ``/v2/models/NAME/stats``) from the HTTP endpoint and decode the JSON."""
        with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=10.0) as response:
            return json.loads(response.read())

    def metrics(self) -> str:
        """The Prometheus text of the metrics endpoint."""
        with urllib.request.urlopen(self.metrics_url, timeout=10.0) as response:
            return response.read().decode()

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """Stop the server's process group (SIGTERM, then SIGKILL after ``timeout_s``); return its exit code."""
        code = None
        if self.process is not None:
            pid = self.process.pid
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                    self.process.wait(timeout_s)
            # the python stubs are in the same group; make sure none outlives the server
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            code = self.process.returncode
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        if self._workdir is not None:
            self.final_log = self.log_tail(20000)
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
