"""han-extract (inputs, accounting, atomic output, resume) and Gallery / han-search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from _artifacts import tampered_copy, write_manifest  # noqa: E402

from han_deploy.export import export_onnx  # noqa: E402
from han_deploy.model import create_model  # noqa: E402
from han_deploy.runtime.backends import sha256_file  # noqa: E402
from han_deploy.runtime.cli import extract, extract_main, search_main  # noqa: E402
from han_deploy.runtime.extractor import Extractor  # noqa: E402
from han_deploy.runtime.gallery import Gallery, faiss_available  # noqa: E402
from han_deploy.runtime.writers import ResumeError, parts_dir, pyarrow_available  # noqa: E402

EXTRACT = "import sys; from han_deploy.runtime.cli import extract_main; sys.exit(extract_main())"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return export_onnx(create_model("han_small").eval(), tmp_path_factory.mktemp("m") / "han_small.onnx")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of 20 crops (one 0-byte), a list file, and a video with a MOT detection file."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    folder = root / "crops" / "cam1"
    folder.mkdir(parents=True)
    for i in range(20):
        im = np.full((96, 40, 3), rng.integers(0, 255, 3), np.uint8)
        cv2.circle(im, (20, 30), 10, rng.integers(0, 255, 3).tolist(), -1)
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), im)
    (folder / "019.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    listing = root / "list.txt"
    listing.write_text("# query crops\ncrops/cam1/003.jpg\n\ncrops/cam1/missing.jpg\n")
    video = root / "cam2.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for f in range(8):
        frame = np.full((120, 160, 3), 30 * f % 255, np.uint8)
        cv2.rectangle(frame, (20 + 5 * f, 10), (60 + 5 * f, 110), (0, 0, 200), -1)
        writer.write(frame)
    writer.release()
    det = root / "cam2.det.txt"
    rows = [f"{f},1,{20 + 5 * f},10,40,100,0.9,-1,-1,-1" for f in range(1, 9)] + [
        "2,2,100,20,30,80,0.8",
        "9,1,10,10,20,20,0.5",
        "oops",
    ]
    det.write_text("\n".join(rows) + "\n")
    return {"folder": root / "crops", "list": listing, "video": video, "det": det, "root": root}


def inputs(dataset: dict[str, Path]) -> list[str]:
    return [str(dataset["folder"]), str(dataset["list"]), str(dataset["video"])]


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def errors_of(out: Path) -> list[dict]:
    p = out.with_name(out.name + ".errors.jsonl")
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def test_extract_accounts_for_every_input(onnx_model: Path, dataset: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "emb.npz"
    summary = extract(onnx_model, inputs(dataset), out, detections=[str(dataset["det"])], batch_size=4, progress=False)
    z = load(out)
    errs = errors_of(out)
    total = 20 + 2 + 11  # folder (notes.txt is not an image), list file, detection rows
    assert summary["rows"] == total and len(z["embeddings"]) + len(errs) == total
    assert sorted(z["rows"].tolist() + [e["row"] for e in errs]) == list(range(total))
    assert z["embeddings"].shape[1] == 1024 and z["embeddings"].dtype == np.float32 and np.isfinite(z["embeddings"]).all()
    reasons = {
        Path(e["source"].split(":")[0]).name + ("" if ":" not in e["source"] else ":" + e["source"].split(":", 1)[1]): e["reason"]
        for e in errs
    }
    assert any("0-byte" in r for k, r in reasons.items() if k.startswith("019.jpg"))
    assert any("no such file" in r for k, r in reasons.items() if k.startswith("missing.jpg"))
    assert any("beyond the end of the video" in r for r in reasons.values())
    assert any("malformed MOT row" in r for r in reasons.values())
    # file rows embed exactly like Extractor.embed; video rows carry frame, box and track id
    files = sorted((dataset["folder"] / "cam1").glob("0[0-1]*.jpg"))[:5]
    with Extractor(onnx_model) as ex:
        ref = ex.embed(files)
    src = z["sources"].tolist()
    got = z["embeddings"][[src.index(str(f)) for f in files]]
    assert np.abs(got - ref).max() < 1e-5
    vid = [i for i, s in enumerate(src) if s.startswith(str(dataset["video"]))]
    assert len(vid) == 9 and z["frames"][vid].min() == 1 and z["frames"][vid].max() == 8
    first = vid[0]
    assert src[first] == f"{dataset['video']}:1:25,10,65,110" and z["track_ids"][first] == 1
    assert np.allclose(z["boxes"][first], [25, 10, 65, 110])
    assert not parts_dir(out).exists() and not list(tmp_path.glob("*.tmp"))


def test_mot_sequence_folder(onnx_model: Path, tmp_path: Path) -> None:
    seq = tmp_path / "MOT-01"
    (seq / "img1").mkdir(parents=True)
    (seq / "det").mkdir()
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (120, 100, 3), dtype=np.uint8) for _ in range(2)]
    for i, f in enumerate(frames, 1):
        cv2.imwrite(str(seq / "img1" / f"{i:06d}.png"), f)
    (seq / "det" / "det.txt").write_text("1,-1,10,10,30,60,0.9\n2,-1,5,5,40,80,0.8\n1,-1,50,20,30,70,0.7\n3,-1,5,5,10,10,0.5\n")
    out = tmp_path / "seq.npz"
    summary = extract(onnx_model, [str(seq)], out, progress=False)
    z = load(out)
    assert summary["rows"] == 4 and z["sources"].tolist() == [
        f"{seq}:1:10,10,40,70",
        f"{seq}:1:50,20,80,90",
        f"{seq}:2:5,5,45,85",
    ]
    with Extractor(onnx_model) as ex:
        ref = np.concatenate(
            [ex.embed_crops(frames[0], [[10, 10, 40, 70], [50, 20, 80, 90]]), ex.embed_crops(frames[1], [[5, 5, 45, 85]])]
        )
    assert np.abs(z["embeddings"] - ref).max() < 1e-5
    assert [e["row"] for e in errors_of(out)] == [3] and "no such file" in errors_of(out)[0]["reason"]


def test_interrupted_run_resumes_without_loss_or_duplicates(onnx_model: Path, dataset: dict[str, Path], tmp_path: Path) -> None:
    args = dict(detections=[str(dataset["det"])], batch_size=3, shard_rows=5, progress=False)
    full = tmp_path / "full.npz"
    extract(onnx_model, inputs(dataset), full, **args)
    out = tmp_path / "part.npz"
    seen = []

    def crash(batch) -> None:  # noqa: ANN001
        seen.append(batch.stop)
        shards = (parts_dir(out) / "journal.jsonl").read_text().splitlines()[1:]
        if len(shards) >= 2 and json.loads(shards[-1])["stop"] < batch.stop:
            raise KeyboardInterrupt  # like Ctrl-C with 2+ shards journaled and this batch only buffered

    with pytest.raises(KeyboardInterrupt):
        extract(onnx_model, inputs(dataset), out, on_batch=crash, **args)
    assert not out.exists() and parts_dir(out).is_dir()
    with pytest.raises(FileExistsError, match="--resume"):
        extract(onnx_model, inputs(dataset), out, **args)
    with pytest.raises(ResumeError, match="inputs"):
        extract(onnx_model, inputs(dataset)[:2], out, resume=True, **{**args, "detections": None})
    summary = extract(onnx_model, inputs(dataset), out, resume=True, **args)
    assert 0 < summary["resumed_from"] < seen[-1]
    a, b = load(full), load(out)
    assert a["sources"].tolist() == b["sources"].tolist() and a["rows"].tolist() == b["rows"].tolist()
    assert len(set(b["rows"].tolist())) == len(b["rows"])
    assert np.abs(a["embeddings"] - b["embeddings"]).max() < 1e-5
    assert errors_of(full) == errors_of(out)


# han-extract that stalls for good once its third shard is journaled, so the kill always lands mid-run
EXTRACT_STALLING = (
    "import sys, time\n"
    "from han_deploy.runtime import writers\n"
    "from han_deploy.runtime.cli import extract_main\n"
    "flush = writers.ShardedRun.flush\n"
    "def stall_after_three(self):\n"
    "    flush(self)\n"
    "    if len(self.shards) == 3:\n"
    "        time.sleep(3600)\n"
    "writers.ShardedRun.flush = stall_after_three\n"
    "sys.exit(extract_main())\n"
)


def test_killed_process_resumes(onnx_model: Path, dataset: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "k.npz"
    many = tmp_path / "many.txt"  # 200 rows in shards of 8
    files = sorted(str(p) for p in (dataset["folder"] / "cam1").glob("*.jpg"))
    many.write_text("\n".join(files * 10) + "\n")
    args = [str(onnx_model), str(many), "--out", str(out), "--batch-size", "4", "--shard-rows", "8", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", EXTRACT_STALLING, *args, "--threads", "1"], env=env, stderr=subprocess.DEVNULL)
    journal = parts_dir(out) / "journal.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 4:  # header + 3 shards: it now stalls
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"han-extract exited ({proc.returncode}) before its third shard"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and len(journal.read_text().splitlines()) == 4  # killed mid-run, 24 of 200 rows done
    assert subprocess.run([sys.executable, "-c", EXTRACT, *args, "--resume"], env=env, timeout=300).returncode == 0
    z = load(out)
    errs = errors_of(out)
    assert sorted(z["rows"].tolist() + [e["row"] for e in errs]) == list(range(200))
    assert len(errs) == 10 and all("0-byte" in e["reason"] for e in errs)
    assert z["sources"].tolist() == [f for f in files * 10 if not f.endswith("019.jpg")]


def test_cli_refuses_bad_arguments(onnx_model: Path, dataset: dict[str, Path], tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert extract_main([str(onnx_model), str(dataset["folder"]), "--out", str(tmp_path / "x.csv")]) == 2
    assert "unknown format '.csv'" in capsys.readouterr().err
    assert extract_main([str(onnx_model), str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "input not found" in capsys.readouterr().err
    assert extract_main([str(onnx_model), str(dataset["video"]).replace(".avi", "-x.avi"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "needs a MOT detection file" in capsys.readouterr().err
    assert extract_main([str(dataset["list"]), str(dataset["folder"]), "--out", str(tmp_path / "x.npz")]) == 2
    assert "unsupported model file suffix '.txt'" in capsys.readouterr().err
    if not pyarrow_available():
        assert extract_main([str(onnx_model), str(dataset["folder"]), "--out", str(tmp_path / "x.parquet")]) == 2
        assert "needs pyarrow" in capsys.readouterr().err


def test_cli_refuses_a_model_changed_after_export(onnx_model: Path, dataset: dict[str, Path], tmp_path: Path, capsys) -> None:  # noqa: ANN001
    bad = tampered_copy(onnx_model, tmp_path / "export")
    write_manifest(tmp_path / "export", onnx_model)
    argv = [str(bad), str(dataset["list"]), "--out", str(tmp_path / "x.npz"), "--no-progress"]
    assert extract_main(argv) == 2
    err = capsys.readouterr().err
    assert "does not match its manifest" in err and sha256_file(onnx_model) in err and sha256_file(bad) in err
    assert not (tmp_path / "x.npz").exists()
    assert extract_main([*argv, "--no-verify"]) == 0
    assert extract_main([str(onnx_model), str(dataset["list"]), "--out", str(tmp_path / "y.npz"), "--no-progress",
                         "--manifest", str(tmp_path / "export" / "manifest.json")]) == 0  # fmt: skip


@pytest.mark.skipif(not pyarrow_available(), reason="pyarrow not installed")
def test_parquet_output(onnx_model: Path, dataset: dict[str, Path], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "emb.parquet"
    assert extract_main([str(onnx_model), str(dataset["folder"]), "--out", str(out), "--no-progress"]) == 0
    table = pq.read_table(out)
    emb = np.asarray(table.column("embeddings").to_pylist(), dtype=np.float32)
    assert emb.shape == (19, 1024) and table.column("sources").to_pylist()[0].endswith("000.jpg")
    assert b"contract" in table.schema.metadata


def test_gallery_search_matches_brute_force_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((300, 32)).astype(np.float32)
    g = Gallery(engine="numpy")
    g.add(emb[:200], ids=[f"a{i}" for i in range(200)], metadata=[{"cam": i % 3} for i in range(200)])
    g.add(emb[200:])
    q = emb[:5] + 0.01 * rng.standard_normal((5, 32)).astype(np.float32)
    res = g.search(q, k=7)
    brute = np.linalg.norm(q[:, None] - emb[None], axis=2)
    assert np.array_equal(res.indices, np.argsort(brute, axis=1)[:, :7])
    assert np.allclose(res.distances, np.sort(brute, axis=1)[:, :7], atol=1e-4)
    assert res.ids[:, 0].tolist() == [f"a{i}" for i in range(5)] and g.ids[250] == "250"
    path = g.save(tmp_path / "gal.npz")
    h = Gallery.load(path, engine="numpy")
    assert len(h) == 300 and h.metadata[4] == {"cam": 1} and np.array_equal(h.search(q, k=7).indices, res.indices)
    with np.load(path, allow_pickle=False) as z:  # no pickled objects
        assert set(z.files) == {"embeddings", "ids"}
    reranked = g.search(q, k=7, rerank=True)
    assert reranked.indices.shape == (5, 7) and (reranked.indices[:, 0] == np.arange(5)).all()
    with pytest.raises(ValueError, match="NaN"):
        g.add(np.full((1, 32), np.nan, np.float32))
    with pytest.raises(ValueError, match="dimension 16"):
        g.search(np.zeros((1, 16), np.float32))


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_faiss_and_numpy_agree() -> None:
    emb = np.random.default_rng(1).standard_normal((500, 64)).astype(np.float32)
    a, b = Gallery(engine="faiss"), Gallery(engine="numpy")
    a.add(emb)
    b.add(emb)
    ra, rb = a.search(emb[:20], k=10), b.search(emb[:20], k=10)
    assert np.array_equal(ra.indices, rb.indices) and np.allclose(
        ra.distances**2, rb.distances**2, atol=1e-2
    )  # sqrt magnifies rounding near 0


def test_han_search_on_extract_output(onnx_model: Path, dataset: dict[str, Path], tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "gallery.npz"
    assert extract_main([str(onnx_model), str(dataset["folder"]), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    query = str(dataset["folder"] / "cam1" / "004.jpg")
    assert search_main([str(out), query, "--model", str(onnx_model), "--top", "3", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out.splitlines()[0])
    assert hit["query"] == query and len(hit["hits"]) == 3
    assert hit["hits"][0]["id"] == query and hit["hits"][0]["distance"] < 1e-3
    assert search_main([str(out), str(out), "--top", "2"]) == 0  # embeddings as queries: each finds itself
    text = capsys.readouterr().out
    assert text.count("query ") == 19 and f"query {query}\n    1    0.0000  {query}" in text
    assert search_main([str(out), query, "--top", "2"]) == 2
    assert "need --model" in capsys.readouterr().err
