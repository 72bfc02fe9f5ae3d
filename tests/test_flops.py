"""Every variant and block type within +-2% of the paper's FLOPs budget (FLOPs = 2 x MACs)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fvcore")

from han_deploy.bench.cli import main  # noqa: E402
from han_deploy.bench.flops import BUDGETS, ROWS, flops_report  # noqa: E402


@pytest.mark.parametrize("row", list(ROWS))
def test_within_budget_and_cross_checked(row: str) -> None:
    r = flops_report(row)
    assert r.flops == 2 * r.macs
    assert abs(r.flops - BUDGETS[row]) / BUDGETS[row] <= 0.02, r
    # torch's own counter agrees with fvcore's conv+linear count
    assert abs(r.torch_flops - r.flops) / r.flops < 1e-3


def test_depthwise_params_about_two_million() -> None:
    for row in ("small", "medium", "large"):
        assert 1.9e6 < flops_report(row).params < 2.1e6


def test_cli_json_has_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--flops", "--json", "--rows", "small,residual"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"small", "residual"}
    for entry in data.values():
        assert set(entry) == {"macs", "flops", "params", "budget", "deviation", "within_budget"}
        assert entry["within_budget"] is True


def test_cli_rejects_unknown_row() -> None:
    with pytest.raises(SystemExit):
        main(["--flops", "--rows", "tiny"])
