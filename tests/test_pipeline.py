"""han-demo: the stage driver (unavailable/failed/skipped stages, report, exit code), CLI checks, the quick run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from han_deploy.pipeline import QUICK, Demo, Settings, Stage, StageUnavailable, main, require


def test_require_names_the_missing_api() -> None:
    with pytest.raises(StageUnavailable, match="han_deploy.model.no_such_thing"):
        require("han_deploy.model", "create_model", "no_such_thing")
    with pytest.raises(StageUnavailable, match="han_deploy.no_such_module"):
        require("han_deploy.no_such_module", "x")
    assert callable(require("han_deploy.model", "create_model"))


class ScriptedDemo(Demo):
    """The real driver and report writer, with stages that exercise each outcome."""

    def stages(self) -> list[Stage]:
        def produce() -> list[str]:
            self.results["thing"] = 1
            self.metrics["made up for the driver test"] = {"R1": 0.5, "R5": 0.6, "R10": 0.7, "mAP": 0.4, "mINP": 0.3}
            return ["made a thing"]

        def unavailable() -> list[str]:
            require("han_deploy.model", "no_such_api")
            return []

        def crash() -> list[str]:
            raise RuntimeError("boom")

        return [
            Stage("first", "produces", (), produce),
            Stage("second", "missing API", (), unavailable),
            Stage("third", "needs second", ("from_second",), lambda: ["never"]),
            Stage("fourth", "needs first", ("thing",), lambda: [f"got {self.results['thing']}"]),
            Stage("fifth", "crashes", (), crash),
        ]


def test_driver_reports_every_outcome_and_keeps_going(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo = ScriptedDemo(Settings(out=tmp_path, sizes=QUICK))
    assert demo.run() == 1
    status = {o.name: o.status for o in demo.outcomes}
    assert status == {"first": "ok", "second": "unavailable", "third": "skipped", "fourth": "ok", "fifth": "failed"}
    printed = capsys.readouterr().out
    assert "stage second not available yet: needs han_deploy.model.no_such_api" in printed
    assert "got 1" in printed and "RuntimeError: boom" in printed
    assert "boom" in (tmp_path / "error-fifth.txt").read_text()
    report = tmp_path / "report.md"
    assert f"report: {report}" in printed
    text = report.read_text()
    assert "| second | unavailable |" in text and "made up for the driver test | 50.0 |" in text
    assert cv2.imread(str(tmp_path / "plots" / "accuracy.png")) is not None
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["ok", "unavailable", "skipped", "ok", "failed"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "{tmp}"], "--data and --dataset go together"),
        (["--data", "{tmp}/absent", "--dataset", "market1501"], "absent"),
        (["--epochs", "0"], "--epochs"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main([a.format(tmp=tmp_path) for a in argv] + ["--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--quick", "--out", str(tmp_path), "--threads", "2"])
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {s["name"]: s["status"] for s in summary["stages"]} == dict.fromkeys(
        ["data", "baseline", "untrained", "train", "evaluate", "export", "runtime", "bench", "pictures"], "ok"
    ), printed
    assert rc == 0
    assert f"report: {tmp_path / 'report.md'}" in printed
    labels = set(summary["metrics"])
    assert {"colour histogram (no learning)", "han_small trained (PyTorch)", "han_small fp32 ONNX (runtime)"} <= labels
    report = (tmp_path / "report.md").read_text()
    pictures = sorted((tmp_path / "pictures").rglob("*.png"))
    assert len([p for p in pictures if p.parent.name == "attention"]) == QUICK.attention_images
    assert any(p.parent.name == "rank" for p in pictures)
    for p in pictures:
        assert cv2.imread(str(p)) is not None
        assert str(p.relative_to(tmp_path)) in report
