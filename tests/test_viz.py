"""Attention and ranking pictures: region geometry, valid PNGs of the expected size, protocol of the ranking, CLI errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from han_deploy.data.records import Record
from han_deploy.model import create_model, save_checkpoint
from han_deploy.model.attention import RegionCropper, region_centres
from han_deploy.viz import draw
from han_deploy.viz.attention import compute_attention, draw_regions, figure_shape, render_attention
from han_deploy.viz.cli import main as viz_main
from han_deploy.viz.ranking import figure_shape as rank_figure_shape
from han_deploy.viz.ranking import pick_queries, rank_gallery, render_rankings
from han_deploy.viz.regions import region_boxes


def person(seed: int, size: tuple[int, int] = (128, 48)) -> np.ndarray:
    """A crude person-like BGR crop: coloured head, torso and legs on a noisy background."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
    colours = rng.integers(0, 255, (3, 3))
    for (y0, y1, x0, x1), c in zip(
        ((0.05, 0.2, 0.35, 0.65), (0.2, 0.55, 0.2, 0.8), (0.55, 0.95, 0.25, 0.75)), colours, strict=True
    ):
        img[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = c
    return img


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("han_small").eval()


def write_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), person(i))
        paths.append(folder / name)
    return paths


def test_initial_theta_gives_four_equal_stripes(small_model: torch.nn.Module) -> None:
    att = compute_attention(small_model, [person(0)])[0]
    assert att.theta.shape == (3, 4, 2)
    for level_boxes in att.boxes:
        got = [tuple(round(v, 4) for v in (b.x0, b.y0, b.x1, b.y1)) for b in level_boxes]
        assert got == [(0.0, 40.0 * t, 64.0, 40.0 * (t + 1)) for t in range(4)]
        assert not any(b.extends_outside for b in level_boxes)


def test_region_box_outside_the_image_is_clipped_and_flagged() -> None:
    (box,) = region_boxes(np.array([[0.5, 0.9]]), (160, 64))  # T = 1: full height, shifted right and down
    assert (box.x0, box.x1) == pytest.approx((16.0, 80.0))
    assert (box.y0, box.y1) == pytest.approx((72.0, 232.0))
    assert box.clipped == (16, 72, 64, 160)
    assert box.outside == (False, False, True, True)
    assert box.inside_fraction == pytest.approx(48 * 88 / (64 * 160))


def test_region_boxes_agree_with_the_models_sampling_grid() -> None:
    """The boxes must cover exactly the area RegionCropper samples (its outer sample points +- half a cell)."""
    theta = torch.tensor([[[0.3, -0.6], [-0.2, 0.1], [0.0, 0.5], [0.9, -0.95]]])
    rh, rw = 12, 14
    grid = RegionCropper(4, (rh, rw)).grid(theta).reshape(4, rh, rw, 2).numpy()
    for t, box in enumerate(region_boxes(theta[0].numpy(), (160, 64))):
        gx, gy = grid[t, ..., 0], grid[t, ..., 1]
        half_x = (gx[0, 1] - gx[0, 0]) / 2
        half_y = (gy[1, 0] - gy[0, 0]) / 2
        to_px = lambda u, size: (u + 1) / 2 * size  # noqa: E731  (align_corners=False edge mapping)
        assert box.x0 == pytest.approx(to_px(gx.min() - half_x, 64), abs=1e-4)
        assert box.x1 == pytest.approx(to_px(gx.max() + half_x, 64), abs=1e-4)
        assert box.y0 == pytest.approx(to_px(gy.min() - half_y, 160), abs=1e-4)
        assert box.y1 == pytest.approx(to_px(gy.max() + half_y, 160), abs=1e-4)


def test_region_boxes_reject_bad_theta() -> None:
    with pytest.raises(ValueError, match="theta"):
        region_boxes(np.zeros((4, 3)), (160, 64))


def test_region_panel_draws_each_stripe_in_its_colour() -> None:
    stripes = np.array([[0.0, c] for c in region_centres(4)])
    panel = draw_regions(np.zeros((160, 64, 3), np.uint8), region_boxes(stripes, (160, 64)), scale=3)
    assert panel.shape == (480, 192, 3)
    for t in range(4):
        top = 120 * t
        rows = panel[top : top + 7, 96]
        assert any((row == draw.region_colour(t)).all() for row in rows), f"region {t} top edge missing"
        assert (panel[top + 60, 96] == 0).all()  # inside the stripe nothing is drawn


def test_heat_overlay_puts_the_hot_end_of_the_map_where_it_peaks() -> None:
    heat = np.zeros((10, 4), np.float32)
    heat[0, 0] = 5.0  # peak in the top-left cell
    out = draw.heat_overlay(np.full((160, 64, 3), 128, np.uint8), heat)
    assert out.shape == (160, 64, 3)
    top_left, bottom_right = out[2, 2].astype(int), out[-3, -3].astype(int)
    assert top_left[2] > top_left[0]  # JET hot = red (BGR index 2)
    assert bottom_right[0] > bottom_right[2]  # cold = blue


def test_attention_pictures_are_valid_pngs_of_the_expected_size(small_model: torch.nn.Module, tmp_path: Path) -> None:
    paths = write_images(tmp_path / "in", ["a.jpg", "b.png"])
    bad = tmp_path / "in" / "broken.jpg"
    bad.write_bytes(b"not an image")
    written, failures = render_attention(small_model, [paths[0], bad, paths[1]], tmp_path / "out", scale=2)
    assert [p.name for p in written] == ["a_attention.png", "b_attention.png"]
    assert [p for p, _ in failures] == [bad] and "not a decodable image" in failures[0][1]
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape == figure_shape((160, 64), scale=2) == (
            2 * draw.CAPTION_H + 320,
            7 * 128 + 6 * draw.GAP,
            3,
        )


def test_rank_gallery_follows_the_evaluation_protocol() -> None:
    # gallery: 0 same id same cam (excluded), 1 same id other cam, 2 junk (excluded), 3 distractor, 4 other id
    g_pids = np.array([5, 5, -1, 0, 7])
    g_cams = np.array([1, 2, 2, 3, 1])
    dist = np.array([[0.1, 0.5, 0.05, 0.3, 0.4]])
    (r,) = rank_gallery(dist, np.array([5]), g_pids, np.array([1]), g_cams, top=10)
    assert r.gallery.tolist() == [3, 4, 1]
    assert r.matches.tolist() == [False, False, True]
    assert r.distances.tolist() == [0.3, 0.4, 0.5] and r.num_relevant == 1
    (r2,) = rank_gallery(dist, np.array([5]), g_pids, np.array([1]), g_cams, top=2)
    assert r2.gallery.tolist() == [3, 4]


def test_pick_queries_skips_queries_without_a_correct_match() -> None:
    dist = np.zeros((4, 2))
    ranked = rank_gallery(dist, np.array([1, 2, 3, 1]), np.array([1, 3]), np.array([1, 1, 1, 2]), np.array([1, 2]), top=2)
    assert [r.query for r in pick_queries(ranked, 10)] == [2, 3]  # query 0: only same-cam match; query 1: id absent
    assert [r.query for r in pick_queries(ranked, 1, seed=3)] == [r.query for r in pick_queries(ranked, 1, seed=3)]
    assert len(pick_queries(ranked, 1)) == 1


def test_render_rankings_frames_correct_green_and_wrong_red(tmp_path: Path) -> None:
    q_paths = write_images(tmp_path / "q", ["q0.jpg", "q1.jpg"])
    g_paths = write_images(tmp_path / "g", [f"g{i}.jpg" for i in range(4)])
    query = [Record(q_paths[0], 1, 1), Record(q_paths[1], 2, 1)]
    gallery = [Record(g_paths[0], 1, 2), Record(g_paths[1], 2, 2), Record(g_paths[2], 3, 2), Record(g_paths[3], 1, 3)]
    g_feat = np.eye(4, dtype=np.float32)
    q_feat = np.array([[1, 0, 0, 0], [0, 0, 1, 0.5]], dtype=np.float32)  # q0 nearest g0 (correct); q1 nearest g2 (wrong)
    written = render_rankings(query, gallery, q_feat, g_feat, tmp_path / "out", top=3, num_queries=5)
    assert [p.name for p in written] == ["rank_00000_q0.png", "rank_00001_q1.png"]
    tile_w = 128 + 2 * 4
    first_gallery_x = tile_w + draw.GAP + 3 * draw.GAP + draw.GAP
    frame_y = 2 * draw.CAPTION_H + 1
    for path, colour in zip(written, (draw.GREEN, draw.RED), strict=True):
        img = cv2.imread(str(path))
        assert img.shape == rank_figure_shape(3)
        assert tuple(img[frame_y, first_gallery_x + 1]) == colour
        assert tuple(img[frame_y, 1]) == draw.BLACK  # the query's frame


def test_render_rankings_rejects_mismatched_features(tmp_path: Path) -> None:
    rec = [Record(tmp_path / "x.jpg", 1, 1)]
    with pytest.raises(ValueError, match="differ in length"):
        render_rankings(rec, rec, np.zeros((2, 4), np.float32), np.zeros((1, 4), np.float32), tmp_path)


def test_cli_attention_writes_pictures_and_reports_bad_inputs(
    small_model: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = save_checkpoint(tmp_path / "m.safetensors", small_model)
    write_images(tmp_path / "in", ["p1.jpg", "p2.jpg"])
    rc = viz_main(
        [
            "attention",
            str(tmp_path / "in"),
            str(tmp_path / "missing.jpg"),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert rc == 1  # one input missing: reported, the others still drawn
    assert "missing.jpg" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["p1_attention.png", "p2_attention.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "{tmp}/nope.safetensors"], "nope.safetensors"),
        (["--checkpoint", "{tmp}/fake.safetensors"], "fake.safetensors"),
        ([], "--checkpoint"),
        (["--variant", "han_tiny"], "han_tiny"),
    ],
)
def test_cli_attention_errors_name_the_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "fake.safetensors").write_bytes(b"\x00" * 16)
    (img,) = write_images(tmp_path, ["p.jpg"])
    with pytest.raises(SystemExit) as exc:
        viz_main(["attention", str(img), "--out", str(tmp_path / "o"), *(a.format(tmp=tmp_path) for a in args)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_attention_without_images_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        viz_main(["attention", str(tmp_path / "empty"), "--variant", "han_small", "--out", str(tmp_path / "o")])
    assert "no image files" in capsys.readouterr().err


def test_rank_gallery_agrees_with_the_evaluation_metrics() -> None:
    """Rank-1 hits of the pictures' ranking must equal engineer A's CMC@1 on the same distances."""
    from han_deploy.evaluate import evaluate_rank

    rng = np.random.default_rng(1)
    q_pids, g_pids = rng.integers(0, 6, 30), rng.integers(-1, 6, 80)
    q_cams, g_cams = rng.integers(0, 3, 30), rng.integers(0, 3, 80)
    dist = rng.random((30, 80))
    ranked = [r for r in rank_gallery(dist, q_pids, g_pids, q_cams, g_cams, top=1) if r.num_relevant > 0]
    expected = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=1)
    assert len(ranked) == expected.num_valid_queries
    assert np.mean([r.matches[0] for r in ranked]) == pytest.approx(expected.cmc[0])


def test_cli_rank_draws_queries_of_a_synthetic_dataset(small_model: torch.nn.Module, tmp_path: Path) -> None:
    from han_deploy.data.synth import generate_dataset

    root = generate_dataset(tmp_path / "synth", num_ids=6, num_cameras=2, seed=3, images_per_camera=2, workers=1)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", small_model)
    out = tmp_path / "ranks"
    args = ["rank", "--checkpoint", str(ckpt), "--data", str(root), "--dataset", "market_layout", "--out", str(out)]
    assert viz_main([*args, "--top", "4", "--num-queries", "2"]) == 0
    written = sorted(out.glob("rank_*.png"))
    assert len(written) == 2
    for p in written:
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] == rank_figure_shape(4)[0]
        assert img.shape[1] <= rank_figure_shape(4)[1]  # fewer tiles when the filtered gallery is shorter than --top


def test_cli_rank_errors_name_the_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["rank", "--variant", "han_small", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        viz_main([*base, "--data", str(tmp_path / "absent"), "--dataset", "market1501"])
    assert "absent" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        viz_main([*base, "--data", str(tmp_path), "--dataset", "no_such_set"])
    assert "no_such_set" in capsys.readouterr().err
