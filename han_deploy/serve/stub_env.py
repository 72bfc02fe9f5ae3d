"""The Python environment that Triton's python-backend stub runs in, when it cannot be this one as is.

The stub bundled in ``nvidia-pytriton`` 0.7.0 (Triton 2.51) is compiled against NumPy 1.x. Under NumPy
2 it imports fine but reads a wrong item size from every array: inputs arrive as copies of their first
element and outputs leave empty (``binary_data_size: 0``), with no error. It finds its interpreter
prefix from the ``python3`` first on ``PATH`` and ignores ``PYTHONPATH``, so the fix is a tiny venv
whose own ``site-packages`` holds ``numpy<2`` and a ``.pth`` that adds this interpreter's
site-packages *after* it: han_deploy, ONNX Runtime and OpenCV come from here, NumPy 1.x from there
(ONNX Runtime 1.32 and OpenCV 5 run on NumPy 1.26; checked). ``python -m han_deploy.serve prepare``
builds it; :func:`stub_bin_dir` says which ``bin`` folder to put first on the server's ``PATH``.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

ENV_VARIABLE = "HAN_TRITON_STUB_ENV"
STUB_NUMPY = "numpy>=1.21,<2"
PTH_NAME = "han_deploy_parent_env.pth"


def numpy_major() -> int:
    import numpy

    return int(numpy.__version__.split(".")[0])


def default_stub_env() -> Path:
    """``$HAN_TRITON_STUB_ENV``, else ``triton-stub-env`` inside this interpreter's prefix (the venv)."""
    return Path(os.environ.get(ENV_VARIABLE) or Path(sys.prefix) / "triton-stub-env")


def _site_packages(env: Path) -> Path:
    return env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def stub_env_ready(env: Path) -> bool:
    """The env exists, has NumPy 1.x in its own site-packages and links back to this interpreter's packages."""
    sp = _site_packages(env)
    return (env / "bin" / "python3").exists() and (sp / PTH_NAME).is_file() and any(sp.glob("numpy-1.*.dist-info"))


def prepare_stub_env(env: Path | None = None, quiet: bool = True) -> Path:
    """Create (or refresh) the stub env: a venv without pip, ``numpy<2`` installed into it, and the ``.pth`` link."""
    env = Path(env or default_stub_env())
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(env)], check=True)
    sp = _site_packages(env)
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "--target", str(sp), STUB_NUMPY]
    done = subprocess.run(cmd, capture_output=quiet, text=True)
    if done.returncode:  # pip's resolver notes about this env's numpy 2 are noise; a failure is not
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    parents = [p for p in dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"]]) if os.path.isdir(p)]
    lines = [f"import site; site.addsitedir({p!r})" for p in parents]
    (sp / PTH_NAME).write_text("\n".join(lines) + "\n")
    return env


def stub_bin_dir(env: Path | None = None) -> Path:
    """The ``bin`` folder whose ``python3`` the stub must find: this interpreter's under NumPy 1.x, else the stub env's.

    Raises :class:`RuntimeError` naming the command that builds the stub env when it is needed and missing.
    """
    if numpy_major() < 2:
        return Path(sys.executable).parent
    env = Path(env or default_stub_env())
    if not stub_env_ready(env):
        raise RuntimeError(
            f"NumPy {__import__('numpy').__version__} is installed, but the Triton python stub of nvidia-pytriton needs "
            f"NumPy 1.x: build its env with `python -m han_deploy.serve prepare` (creates {env}; set ${ENV_VARIABLE} "
            "to put it elsewhere)"
        )
    return env / "bin"
