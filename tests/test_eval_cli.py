"""han-eval: the metrics table and JSON for a checkpoint, an untrained model and the colour-histogram baseline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _train_data import tiny_dataset, tiny_splits

from han_deploy.evaluate.cli import main as eval_main
from han_deploy.model import create_model, save_checkpoint

METRICS = {"R1", "R5", "R10", "mAP", "mINP", "num_valid_queries"}


def _check_entry(entry: dict) -> None:
    assert set(entry) == METRICS
    assert all(0.0 <= entry[k] <= 1.0 for k in ("R1", "R5", "R10", "mAP", "mINP"))
    assert entry["R1"] <= entry["R5"] <= entry["R10"]


def test_checkpoint_with_rerank_writes_json_and_prints_table(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", create_model("small", num_classes=8), {"epoch": 3})
    out = tmp_path / "res.json"
    argv = ["--checkpoint", str(ckpt), "--data", str(tiny_dataset(tmp_path_factory)), "--dataset", "market_layout"]
    assert eval_main([*argv, "--rerank", "--json", str(out), "--batch-size", "16"]) == 0
    res = json.loads(out.read_text())
    assert res["features"] == "checkpoint" and res["checkpoint_meta"] == {"epoch": 3}
    assert res["dataset"] == "market_layout" and res["rerank"] is True and res["num_query"] == 20
    assert set(res["results"]) == {"q2g", "q2g+rerank", "skipped_images"}
    _check_entry(res["results"]["q2g"])
    _check_entry(res["results"]["q2g+rerank"])
    assert res["results"]["q2g"]["num_valid_queries"] == 20
    printed = capsys.readouterr().out
    assert "q2g+rerank" in printed and "mINP" in printed
    assert f"{100 * res['results']['q2g']['mAP']:.1f}" in printed


def test_two_camera_protocol_reports_both_directions_and_their_mean(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # a cuhk03_pair-layout copy of the synthetic images: PPPP_NN.jpg, NN 00-04 camera A, 05-09 camera B
    splits = tiny_splits(tmp_path_factory)
    root = tmp_path / "pair"
    for split, records in (("train", splits.train), ("test", splits.query + splits.gallery)):
        (root / split).mkdir(parents=True)
        counts: dict[tuple[int, int], int] = {}
        for r in records:
            if r.pid <= 0 or r.camid > 1:
                continue
            n = counts.get((r.pid, r.camid), 0)
            if n < 5:
                shutil.copy(r.path, root / split / f"{r.pid:04d}_{5 * r.camid + n:02d}.jpg")
                counts[(r.pid, r.camid)] = n + 1
    out = tmp_path / "pair.json"
    assert eval_main(["--color-histogram", "--data", str(root), "--dataset", "cuhk03_pair", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"a2b", "b2a", "mean", "skipped_images"}
    for key in ("a2b", "b2a", "mean"):
        _check_entry(res[key])
    for k in ("R1", "mAP", "mINP"):
        assert res["mean"][k] == pytest.approx((res["a2b"][k] + res["b2a"][k]) / 2)


def test_untrained_reference_and_bad_root(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys) -> None:
    out = tmp_path / "u.json"
    root = str(tiny_dataset(tmp_path_factory))
    assert eval_main(["--untrained", "small", "--data", root, "--dataset", "market_layout", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["features"] == "untrained" and res["model"]["variant"] == "small"
    _check_entry(res["results"]["q2g"])
    assert eval_main(["--untrained", "small", "--data", str(tmp_path / "nowhere"), "--dataset", "market_layout"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_color_histogram_path_runs_without_torch(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # torch made unimportable in a fresh interpreter: the whole --color-histogram run (re-ranking included) works
    root, out = str(tiny_dataset(tmp_path_factory)), str(tmp_path / "hist.json")
    argv = ["--color-histogram", "--data", root, "--dataset", "market_layout", "--rerank", "--json", out]
    code = f"import sys; sys.modules['torch'] = None; from han_deploy.evaluate.cli import main; sys.exit(main({argv!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    res = json.loads(Path(out).read_text())
    assert res["features"] == "color_histogram" and res["num_query"] == 20
    _check_entry(res["results"]["q2g"])
    _check_entry(res["results"]["q2g+rerank"])
