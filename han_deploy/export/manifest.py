"""``manifest.json``: what an export wrote, with hashes, versions, profile shapes and gate results."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from ..runtime.backends import sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def file_entry(path: str | os.PathLike[str], **extra: Any) -> dict[str, Any]:
    """One artifact: file name (relative to the manifest), size, sha256, plus ``extra`` fields."""
    path = Path(path)
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), **extra}


def versions() -> dict[str, str | None]:
    """Versions of the tools that shaped the artifacts (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version(), "han-deploy": None}
    for dist in ("han-deploy", "torch", "onnx", "onnxruntime", "onnxslim", "tensorrt"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def write_manifest(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Write ``data`` as JSON via a temporary name (never half-written)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps({"manifest_version": MANIFEST_VERSION, **data}, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def verify_manifest(path: str | os.PathLike[str]) -> list[str]:
    """Problems found re-hashing every artifact a manifest lists (empty when all match)."""
    path = Path(path)
    data = json.loads(path.read_text())
    problems = []
    for entry in data.get("artifacts", []):
        file = path.parent / entry["file"]
        if not file.is_file():
            problems.append(f"{entry['file']}: missing")
        elif file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
            problems.append(f"{entry['file']}: size or sha256 differs from the manifest")
    return problems
