"""Dataset readers on tiny fake trees: ids, relabelling, camids, junk/distractors, malformed names, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from han_deploy.data import DATASETS, MalformedNameWarning, Record, build_dataset, market1501_gt_bbox

REAL_PAIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cuhk03-pair1"


def _touch(folder: Path, names: list[str], jpeg: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tiny = np.full((8, 4, 3), 127, np.uint8)
    for name in names:
        if jpeg:
            assert cv2.imwrite(str(folder / name), tiny)
        else:
            (folder / name).write_bytes(b"")  # readers never open images: an empty file is enough


def _by_path(records: list[Record]) -> dict[str, tuple[int, int]]:
    return {r.path.name: (r.pid, r.camid) for r in records}


# ---------------------------------------------------------------------------------------------- Market / Duke / generic


@pytest.fixture
def market_tree(tmp_path: Path) -> Path:
    _touch(
        tmp_path / "bounding_box_train",
        ["0002_c1s1_000451_03.jpg", "0002_c3s1_000551_01.jpg", "0007_c2s3_070952_01.jpg"],
        jpeg=True,
    )
    _touch(tmp_path / "bounding_box_train", ["0010_c6s4_002202_02.jpg"])
    (tmp_path / "bounding_box_train" / "Thumbs.db").write_bytes(b"x")  # non-image files are ignored
    _touch(tmp_path / "query", ["0001_c1s1_001051_00.jpg", "0003_c4s2_000123_00.jpg"])
    _touch(
        tmp_path / "bounding_box_test",
        ["0001_c2s1_000301_01.jpg", "0003_c1s1_000100_02.jpg", "-1_c1s1_000401_03.jpg", "0000_c5s1_000101_04.jpg"],
    )
    return tmp_path


def test_market1501_reads_ids_cameras_and_relabels_train(market_tree: Path):
    ds = build_dataset("market1501", market_tree)
    # train pids 2, 7, 10 -> 0, 1, 2 (sorted order); cameras c1..c6 -> 0..5
    assert _by_path(ds.train) == {
        "0002_c1s1_000451_03.jpg": (0, 0),
        "0002_c3s1_000551_01.jpg": (0, 2),
        "0007_c2s3_070952_01.jpg": (1, 1),
        "0010_c6s4_002202_02.jpg": (2, 5),
    }
    assert ds.num_train_pids == 3
    assert _by_path(ds.query) == {"0001_c1s1_001051_00.jpg": (1, 0), "0003_c4s2_000123_00.jpg": (3, 3)}
    # the gallery keeps junk (-1) and distractors (0): the evaluation handles them
    assert sorted(r.pid for r in ds.gallery) == [-1, 0, 1, 3]
    assert all(r.path.exists() for r in ds.train + ds.query + ds.gallery)
    table = ds.statistics()
    assert "market1501" in table and "train" in table and "gallery" in table


def test_market1501_gt_bbox_pool(market_tree: Path):
    _touch(market_tree / "gt_bbox", ["0001_c1s1_001051_00.jpg", "0001_c1s1_009376_00.jpg", "0002_c2s1_000001_00.jpg"])
    records = market1501_gt_bbox(market_tree)
    assert [(r.pid, r.camid) for r in records] == [(1, 0), (1, 0), (2, 1)]
    (market_tree / "gt_bbox").rename(market_tree / "other")
    with pytest.raises(FileNotFoundError, match="gt_bbox"):
        market1501_gt_bbox(market_tree)


def test_market_layout_accepts_market_and_duke_names(tmp_path: Path):
    _touch(tmp_path / "bounding_box_train", ["0005_c2s1_000001_00.jpg", "0009_c8_f0046182.jpg", "0004_c1s1_000002_00.png"])
    _touch(tmp_path / "query", ["0011_c1s1_000003_00.jpg"])
    _touch(tmp_path / "bounding_box_test", ["0011_c3s1_000004_00.jpg", "-1_c2s1_000005_00.jpg"])
    ds = build_dataset("market_layout", tmp_path)
    assert _by_path(ds.train) == {
        "0004_c1s1_000002_00.png": (0, 0),
        "0005_c2s1_000001_00.jpg": (1, 1),
        "0009_c8_f0046182.jpg": (2, 7),
    }


def test_train_drops_junk_and_distractors_and_query_drops_non_identities(tmp_path: Path):
    _touch(tmp_path / "bounding_box_train", ["0003_c1s1_000001_00.jpg", "-1_c1s1_000002_00.jpg", "0000_c2s1_000003_00.jpg"])
    _touch(tmp_path / "query", ["0001_c1s1_000001_00.jpg", "0000_c1s1_000009_00.jpg"])
    _touch(tmp_path / "bounding_box_test", ["0001_c2s1_000001_00.jpg"])
    with pytest.warns(MalformedNameWarning, match="0000_c1s1_000009_00.jpg"):
        ds = build_dataset("market_layout", tmp_path)
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 0)]
    assert [r.pid for r in ds.query] == [1]


def test_duke_names(tmp_path: Path):
    _touch(tmp_path / "DukeMTMC-reID" / "bounding_box_train", ["0001_c2_f0046182.jpg", "0005_c8_f0000001.jpg"])
    _touch(tmp_path / "DukeMTMC-reID" / "query", ["0012_c3_f0000002.jpg"])
    _touch(tmp_path / "DukeMTMC-reID" / "bounding_box_test", ["0012_c5_f0000003.jpg", "0013_c1_f0000004.jpg"])
    ds = build_dataset("dukemtmcreid", tmp_path)  # the nested DukeMTMC-reID/ folder is found
    assert _by_path(ds.train) == {"0001_c2_f0046182.jpg": (0, 1), "0005_c8_f0000001.jpg": (1, 7)}
    assert _by_path(ds.gallery) == {"0012_c5_f0000003.jpg": (12, 4), "0013_c1_f0000004.jpg": (13, 0)}


def test_malformed_names_are_skipped_with_their_path_or_refused_when_strict(market_tree: Path):
    _touch(market_tree / "bounding_box_train", ["holiday_photo.jpg", "0004_c0s1_000001_00.jpg"])  # no pid; camera 0
    with pytest.warns(MalformedNameWarning) as caught:
        ds = build_dataset("market1501", market_tree)
    msg = str(caught[0].message)
    assert str(market_tree / "bounding_box_train" / "holiday_photo.jpg") in msg and "0004_c0s1_000001_00.jpg" in msg
    assert ds.num_train_pids == 3
    with pytest.raises(ValueError, match="holiday_photo.jpg"):
        build_dataset("market1501", market_tree, strict=True)


def test_duke_reader_rejects_market_names(market_tree: Path):
    with pytest.warns(MalformedNameWarning):
        ds = build_dataset("dukemtmcreid", market_tree)
    assert ds.train == []


def test_wrong_root_names_what_is_missing(tmp_path: Path, market_tree: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="bounding_box_train"):
        build_dataset("market1501", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        build_dataset("market_layout", tmp_path / "nowhere")
    (market_tree / "query").rename(market_tree / "queries")
    with pytest.raises(FileNotFoundError, match=r"query"):
        build_dataset("market1501", market_tree)


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(ValueError) as err:
        build_dataset("viper", "/tmp")
    for name in ("market1501", "dukemtmcreid", "market_layout", "cuhk03", "msmt17", "cuhk03_pair"):
        assert name in str(err.value)
    assert set(DATASETS) == {"market1501", "dukemtmcreid", "market_layout", "cuhk03", "msmt17", "cuhk03_pair"}


def test_verbose_prints_the_statistics_table(market_tree: Path, capsys):
    build_dataset("market1501", market_tree, verbose=True)
    out = capsys.readouterr().out
    assert "# ids" in out and "query" in out


# ---------------------------------------------------------------------------------------------- CUHK03 camera pair


@pytest.fixture
def pair_tree(tmp_path: Path) -> Path:
    _touch(tmp_path / "train", ["0000_00.jpg", "0000_06.jpg", "0001_01.jpg", "0001_09.jpg", "0003_04.jpg"])
    _touch(tmp_path / "test", ["0000_00.jpg", "0000_05.jpg", "0001_02.jpg", "0001_07.jpg", "0001_08.jpg"])
    return tmp_path


def test_cuhk03_pair_cameras_and_directions(pair_tree: Path):
    ds = build_dataset("cuhk03_pair", pair_tree)
    # indices 00-04 -> camera A (0), 05-09 -> camera B (1); train pids 0, 1, 3 -> 0, 1, 2
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    assert sorted((r.pid, r.camid) for r in ds.query) == [(0, 0), (1, 0)]
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(0, 1), (1, 1), (1, 1)]
    rev = build_dataset("cuhk03_pair", pair_tree, direction="b2a")
    assert {r.camid for r in rev.query} == {1} and {r.camid for r in rev.gallery} == {0}
    assert len(rev.query) == 3 and len(rev.gallery) == 2
    with pytest.raises(ValueError, match="direction"):
        build_dataset("cuhk03_pair", pair_tree, direction="sideways")


def test_cuhk03_pair_bad_names_and_missing_test(pair_tree: Path):
    _touch(pair_tree / "train", ["0002_12.jpg", "0002.jpg"])  # index past 09; no index
    with pytest.warns(MalformedNameWarning, match="0002_12.jpg"):
        ds = build_dataset("cuhk03_pair", pair_tree)
    assert len(ds.train) == 5
    (pair_tree / "test").rename(pair_tree / "val")
    with pytest.raises(FileNotFoundError, match="test"):
        build_dataset("cuhk03_pair", pair_tree)


@pytest.mark.skipif(not REAL_PAIR.is_dir(), reason="real CUHK03 pair-1 crops not available")
def test_real_cuhk03_pair1_matches_its_readme():
    ds = build_dataset("cuhk03_pair", REAL_PAIR)
    assert len(ds.train) == 7239 and ds.num_train_pids == 743
    assert len(ds.query) + len(ds.gallery) == 938
    assert len({r.pid for r in ds.query + ds.gallery}) == 100
    assert {r.camid for r in ds.query} == {0} and {r.camid for r in ds.gallery} == {1}
    assert sorted({r.pid for r in ds.train}) == list(range(743))


# ---------------------------------------------------------------------------------------------- CUHK03 767/700 (.mat)


def _write_cuhk03(root: Path, split: str = "labeled") -> None:
    scipy_io = pytest.importorskip("scipy.io")
    # 6 images: pids 5 and 9 train (cameras 1/2), pid 20 test (query on camera 1, gallery on camera 2) + pid 21 gallery
    names = ["1_005_1_01.png", "1_005_2_06.png", "1_009_1_02.png", "2_020_1_01.png", "2_020_2_07.png", "2_021_2_06.png"]
    _touch(root / f"images_{split}", names)
    scipy_io.savemat(
        root / f"cuhk03_new_protocol_config_{split}.mat",
        {
            "filelist": np.array(names, dtype=object).reshape(-1, 1),  # object array -> MATLAB cell array
            "labels": np.array([[5], [5], [9], [20], [20], [21]]),
            "camId": np.array([[1], [2], [1], [1], [2], [2]]),
            "train_idx": np.array([[1], [2], [3]]),  # 1-based, as in the real files
            "query_idx": np.array([[4]]),
            "gallery_idx": np.array([[5], [6]]),
        },
    )


@pytest.mark.parametrize("split", ["labeled", "detected"])
def test_cuhk03_new_protocol_from_mat(tmp_path: Path, split: str):
    _write_cuhk03(tmp_path, split)
    ds = build_dataset("cuhk03", tmp_path, split=split)
    images = tmp_path / f"images_{split}"
    assert ds.train == [
        Record(images / "1_005_1_01.png", 0, 0),
        Record(images / "1_005_2_06.png", 0, 1),
        Record(images / "1_009_1_02.png", 1, 0),
    ]
    assert ds.query == [Record(images / "2_020_1_01.png", 20, 0)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(20, 1), (21, 1)]
    assert split in ds.name


def test_cuhk03_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="cuhk03_new_protocol_config_labeled.mat"):
        build_dataset("cuhk03", tmp_path)
    _write_cuhk03(tmp_path, "labeled")
    with pytest.raises(FileNotFoundError, match="cuhk03_new_protocol_config_detected.mat"):
        build_dataset("cuhk03", tmp_path, split="detected")
    with pytest.raises(ValueError, match="split"):
        build_dataset("cuhk03", tmp_path, split="both")
    (tmp_path / "images_labeled").rename(tmp_path / "imgs")
    with pytest.raises(FileNotFoundError, match="images_labeled"):
        build_dataset("cuhk03", tmp_path)
    (tmp_path / "imgs").rename(tmp_path / "images_labeled")
    import scipy.io

    scipy.io.savemat(tmp_path / "cuhk03_new_protocol_config_labeled.mat", {"labels": np.array([[1]])})
    with pytest.raises(ValueError, match="filelist"):
        build_dataset("cuhk03", tmp_path)
    fields = dict.fromkeys(("train_idx", "query_idx", "gallery_idx"), np.array([[1]]))
    bad_cam = {"filelist": np.array(["a.png"], dtype=object), "labels": np.array([[1]]), "camId": np.array([[0]]), **fields}
    scipy.io.savemat(tmp_path / "cuhk03_new_protocol_config_labeled.mat", bad_cam)
    with pytest.raises(ValueError, match="camId"):
        build_dataset("cuhk03", tmp_path)
    bad_idx = {**bad_cam, "camId": np.array([[1]]), "gallery_idx": np.array([[2]])}
    scipy.io.savemat(tmp_path / "cuhk03_new_protocol_config_labeled.mat", bad_idx)
    with pytest.raises(ValueError, match="gallery_idx"):
        build_dataset("cuhk03", tmp_path)


# ---------------------------------------------------------------------------------------------- MSMT17


def _write_msmt(root: Path) -> None:
    _touch(root / "train" / "0000", ["0000_000_01_0303morning_0015_0.jpg", "0000_001_05_0303noon_0020_1.jpg"])
    _touch(root / "train" / "0002", ["0002_000_15_0303morning_0099_0.jpg"])
    _touch(root / "test" / "0000", ["0000_000_03_0113morning_0001_0.jpg", "0000_001_07_0113noon_0002_0.jpg"])
    (root / "list_train.txt").write_text("0000/0000_000_01_0303morning_0015_0.jpg 0\n0002/0002_000_15_0303morning_0099_0.jpg 2\n")
    (root / "list_val.txt").write_text("0000/0000_001_05_0303noon_0020_1.jpg 0\n")
    (root / "list_query.txt").write_text("0000/0000_000_03_0113morning_0001_0.jpg 0\n")
    (root / "list_gallery.txt").write_text("0000/0000_001_07_0113noon_0002_0.jpg 0\n\n")


def test_msmt17_lists_cameras_and_val_merge(tmp_path: Path):
    _write_msmt(tmp_path / "MSMT17_V1")
    ds = build_dataset("msmt17", tmp_path)
    assert sorted((r.pid, r.camid) for r in ds.train) == [(0, 0), (0, 4), (1, 14)]  # pids 0, 2 -> 0, 1; c01/05/15
    assert ds.train[0].path == tmp_path / "MSMT17_V1" / "train" / "0000" / "0000_000_01_0303morning_0015_0.jpg"
    assert [(r.pid, r.camid) for r in ds.query] == [(0, 2)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(0, 6)]
    assert ds.gallery[0].path.parent.parent.name == "test"
    no_val = build_dataset("msmt17", tmp_path, merge_val=False)
    assert len(no_val.train) == 2


def test_msmt17_bad_lines_and_missing_lists(tmp_path: Path):
    _write_msmt(tmp_path)
    with open(tmp_path / "list_train.txt", "a") as f:
        f.write("0003/badname.jpg 3\n0004/0004_000_02_0303morning_0001_0.jpg\n")
    with pytest.warns(MalformedNameWarning, match=r"list_train.txt:3"):
        ds = build_dataset("msmt17", tmp_path)
    assert len(ds.train) == 3
    (tmp_path / "list_val.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_val.txt"):
        build_dataset("msmt17", tmp_path)
    with pytest.warns(MalformedNameWarning):
        assert len(build_dataset("msmt17", tmp_path, merge_val=False).train) == 2
