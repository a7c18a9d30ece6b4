"""Tests for the adversarial-example figures (Matyasko & Chau 2018, Figure 4).

A tiny fully-connected model, a prepared test split and a saved adversarial file written in a
temporary folder in the attack stage's formats: the PNG is written with the expected size, is
byte-identical across calls and carries no version text; grey and RGB images keep their
colours; the example choice is one per class, seeded and restricted to points both attacks
flipped; a file without a needed attack names it.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from robust import figures
from robust.figures import Panel, adversarial_grid, choose_examples, run_figures
from robust.io import save_torch
from robust.models import build_model

N, SHAPE, CLASSES = 40, (1, 8, 8), 10
CONFIG = {"arch": "critic-fc", "in_shape": list(SHAPE), "num_classes": CLASSES, "width": 0.02}


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Run folder with model.pt, prepared data folder, and the model's clean predictions as labels."""
    root = tmp_path_factory.mktemp("figures")
    torch.manual_seed(0)
    model = build_model(CONFIG["arch"], in_shape=SHAPE, num_classes=CLASSES, width=CONFIG["width"]).eval()
    run_dir = root / "runs" / "tiny-run"
    save_torch({"model": model.state_dict(), "config": CONFIG}, run_dir / "model.pt")
    x = torch.randint(0, 256, (N, *SHAPE), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        y = model(x.float() / 255).argmax(1)  # every clean point correct: flips depend on x_adv only
    data_dir = root / "prepared"
    data_dir.mkdir()
    torch.save({"x": x, "y": y}, data_dir / "test.pt")
    manifest = {"sha256": {"test": {"x": _sha256(x), "y": _sha256(y)}}, "classes": [f"c{k}" for k in range(CLASSES)]}
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    return {"root": root, "model": model, "run_dir": run_dir, "data_dir": data_dir, "x": x.float() / 255, "y": y}


def _entry(model, name: str, x_adv: torch.Tensor, y: torch.Tensor, flipped: torch.Tensor | None = None) -> dict:
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    return {"name": name, "label": "", "norm": "l2", "eps": None, "steps": 500, "x_adv": x_adv, "pred": pred,
            "flipped": pred != y if flipped is None else flipped}


def _saved(setup, names=("deepfool", "high_confidence"), path_name="tiny-run.pt", **overrides):
    """An attack-stage file on every other test point; x_adv: other subset points (other predictions)."""
    indices = torch.arange(0, N, 2)
    x, y = setup["x"][indices], setup["y"][indices]
    attacks = []
    for shift, name in enumerate(names, start=1):
        x_adv = overrides.get(name, torch.roll(x, shift, dims=0))
        attacks.append(_entry(setup["model"], name, x_adv, y, overrides.get(f"{name}_flipped")))
    path = setup["root"] / "adversarial" / path_name
    save_torch({"indices": indices, "attacks": attacks}, path)
    return path


def test_run_figures_writes_the_same_png_every_time(setup, tmp_path):
    saved = _saved(setup)
    first = run_figures(setup["run_dir"], saved, setup["data_dir"], tmp_path / "a", examples=4, seed=0)
    second = run_figures(setup["run_dir"], saved, setup["data_dir"], tmp_path / "b", examples=4, seed=0)
    assert first == tmp_path / "a" / "tiny-run-adversarial.png"
    png = first.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png == second.read_bytes()
    assert b"Software" not in png and b"tIME" not in png and b"matplotlib" not in png.lower()
    with Image.open(first) as image:
        image.verify()
    with Image.open(first) as image:
        # three rows (clean, DeepFool, high confidence) of four examples, plus the title
        width = 4 * figures.CELL[0] * figures.DPI
        height = (3 * (figures.CELL[1] + figures.CAPTION) + figures.TITLE) * figures.DPI
        assert image.size == pytest.approx((width, height), abs=1)


def test_run_figures_shows_other_points_for_another_seed(setup, tmp_path):
    saved = _saved(setup)
    pngs = {run_figures(setup["run_dir"], saved, setup["data_dir"], tmp_path / str(seed), examples=2,
                        seed=seed).read_bytes() for seed in range(3)}
    assert len(pngs) > 1


@pytest.mark.parametrize("missing", ["deepfool", "high_confidence"])
def test_a_file_without_a_needed_attack_names_it(setup, tmp_path, missing):
    present = [name for name in ("deepfool", "high_confidence") if name != missing]
    saved = _saved(setup, names=present, path_name=f"without-{missing}.pt")
    needs = rf"has no {missing} examples: .*`attack\.transfer:` list must include {missing}"
    with pytest.raises(ValueError, match=needs):
        run_figures(setup["run_dir"], saved, setup["data_dir"], tmp_path)
    assert not list(tmp_path.iterdir())


def test_points_not_adversarial_on_reevaluation_are_left_out(setup, tmp_path):
    # the saved mask claims every point flipped, but the DeepFool "examples" are the clean images
    indices = torch.arange(0, N, 2)
    x = setup["x"][indices]
    saved = _saved(setup, path_name="stale.pt", deepfool=x.clone(),
                   deepfool_flipped=torch.ones(len(indices), dtype=torch.bool))
    with pytest.raises(ValueError, match="no test point was flipped by both"):
        run_figures(setup["run_dir"], saved, setup["data_dir"], tmp_path)


def test_choose_examples_takes_one_per_class_from_the_candidates():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3, 0, 1])
    candidates = torch.tensor([True, True, True, True, True, True, False, False, True, True])
    picked = choose_examples(labels, candidates, 3, seed=0)
    assert labels[picked].tolist() == [0, 1, 2]
    assert candidates[picked].all()
    assert torch.equal(picked, choose_examples(labels, candidates, 3, seed=0))
    # fewer examples than classes: distinct classes still
    assert len(set(labels[choose_examples(labels, candidates, 2, seed=0)].tolist())) == 2
    # more examples than candidate classes: the rest in seeded order, still only candidates
    many = choose_examples(labels, candidates, 5, seed=0)
    assert len(many) == 5 and len(set(many.tolist())) == 5 and candidates[many].all()
    assert set(labels[many].tolist()) == {0, 1, 2}
    assert labels[many].tolist() == sorted(labels[many].tolist())
    # fewer candidates than asked: all of them
    assert sorted(choose_examples(labels, candidates, 50, seed=1).tolist()) == candidates.nonzero().flatten().tolist()
    # the seed changes which point of a class is shown
    seen = {tuple(choose_examples(labels, candidates, 3, seed=s).tolist()) for s in range(20)}
    assert len(seen) > 1


def _panel(caption: str, images: torch.Tensor, confidence: float) -> Panel:
    n = len(images)
    return Panel(caption, images, torch.arange(n) % CLASSES, torch.full((n,), confidence))


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_grey_images_stay_grey_and_rgb_images_keep_their_colour(tmp_path):
    grey = _panel("test images", torch.full((3, 1, 8, 8), 0.5), 0.9)
    red = torch.zeros(3, 3, 8, 8)
    red[:, 0] = 1.0
    path = adversarial_grid(grey, [_panel("adv", torch.full((3, 1, 8, 8), 0.5), 0.4)], tmp_path / "grey.png",
                            title="grey")
    pixels = _pixels(path)
    # the fixed [0, 1] scale: 0.5 is mid grey (a colour map, or per-image scaling, would not give it)
    assert ((np.abs(pixels - 127.5) <= 1.5).all(axis=2)).sum() > 1000
    assert (np.ptp(pixels, axis=2) > 10).sum() == 0  # no coloured pixel anywhere
    rgb = adversarial_grid(_panel("test images", red, 0.9), [_panel("adv", red, 0.4)], tmp_path / "rgb.png",
                           title="rgb")
    pixels = _pixels(rgb)
    assert ((pixels[..., 0] >= 250) & (pixels[..., 1] <= 5) & (pixels[..., 2] <= 5)).sum() > 1000


def test_adversarial_grid_rejects_mismatched_panels(tmp_path):
    clean = _panel("test images", torch.rand(3, 1, 8, 8), 0.9)
    with pytest.raises(ValueError, match="adv.*shape"):
        adversarial_grid(clean, [_panel("adv", torch.rand(2, 1, 8, 8), 0.4)], tmp_path / "x.png", title="t")
    assert not (tmp_path / "x.png").exists()
