"""Shared fixtures: small deterministic inputs and models."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 160, 64, generator=g)
