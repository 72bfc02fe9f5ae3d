"""Shared fixtures: small deterministic inputs. Torch is imported lazily so torch-free tests run without it."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def images() -> Any:
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 160, 64, generator=g)
