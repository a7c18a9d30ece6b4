"""Figures of adversarial examples: Matyasko & Chau, "Improved Network Robustness with Adversary
Critic", NeurIPS 2018 (arXiv 1810.12576), Figure 4 (and the idea of Figure 2).

Figure 4 shows, for a model trained with the adversary critic, (a) a random subset of test images,
(b) adversarial examples at the class decision boundary and (c) high-confidence adversarial
examples, each caption giving the panel's average confidence (97%, 34% and 98% in the paper).
``adversarial_grid`` draws the same three panels as rows of one figure: every image is titled
with the class the model predicts and its softmax confidence, every row's caption with the mean
confidence of its images.

Faithful: a seeded random subset of the test points; panel captions with the mean confidence;
predictions and confidences recomputed from the run's own model (softmax of its logits).

Chosen / simplified:

- The paper crafts (b) and (c) with Carlini & Wagner's L2 attack. Here (b) is DeepFool (it stops
  just past the boundary, which is what (b) shows) and (c) is the paper's own high-confidence
  attack (Algorithm 1, target confidence the clean confidence), both as saved by the attack
  stage: the run's ``attack.transfer`` list must name them so that their examples are kept.
- Shown points are those both attacks flipped (correct on the clean image, wrong on both
  adversarial ones, also when re-evaluated here), one per true class where the subset allows,
  so that the three rows show the same points.
- Figure 2 (a 10×10 matrix of examples targeted at every class) is drawn by the ``study-figures``
  stage (``robust.study_figures``, kind ``targeted_grid``, entry ``matyasko2018-fig2``).

The figure is built without pyplot (no global backend or figure registry), under matplotlib's
default style (a user's matplotlibrc cannot change it), and saved without the ``Software``
text chunk, so identical inputs give byte-identical PNGs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib.style
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from robust import data
from robust.io import atomic_path, load_torch
from robust.pipeline import load_model

log = logging.getLogger(__name__)

# attack name in the saved file → row caption (Figure 4b, 4c)
PANELS = (("deepfool", "decision boundary (DeepFool)"), ("high_confidence", "high confidence"))

DPI = 100
CELL = (1.1, 1.35)  # inches per image (width, height): the image and its one-line title
CAPTION = 0.35      # inches above each row for its caption
TITLE = 0.45        # inches for the figure title


@dataclass(frozen=True)
class Panel:
    """One row of the figure: images (N×C×H×W in [0, 1]) with the model's class and confidence."""

    caption: str
    images: torch.Tensor
    predicted: torch.Tensor
    confidence: torch.Tensor

    def __post_init__(self):
        n = len(self.images)
        if self.images.dim() != 4 or len(self.predicted) != n or len(self.confidence) != n:
            raise ValueError(f"panel {self.caption!r}: images must be N×C×H×W with N predictions and confidences, "
                             f"got {tuple(self.images.shape)}, {len(self.predicted)}, {len(self.confidence)}")


def adversarial_grid(clean: Panel, panels: Sequence[Panel], path: str | Path, *, title: str,
                     classes: Sequence[str] | None = None) -> Path:
    """Draw ``clean`` (row 0) and each of ``panels`` (one row each, same points) to the PNG ``path``.

    Each image's title is its predicted class (its name from ``classes`` when given) and its
    confidence; each row's caption ends with the row's mean confidence, as Figure 4's captions.
    One channel is drawn in grey scale, three as RGB, both on the fixed [0, 1] scale so that the
    perturbations are not stretched by per-image contrast.
    """
    rows = [clean, *panels]
    columns = len(clean.images)
    if columns == 0:
        raise ValueError("adversarial_grid needs at least one example")
    for panel in panels:
        if panel.images.shape != clean.images.shape:
            raise ValueError(f"panel {panel.caption!r} has images of shape {tuple(panel.images.shape)}, "
                             f"the clean row {tuple(clean.images.shape)}")
    channels = clean.images.shape[1]
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {channels}")
    path = Path(path)
    row_height = CELL[1] + CAPTION
    with default_style_figure((columns * CELL[0], len(rows) * row_height + TITLE)) as figure:
        # a subfigure of its own for the title, so that it never overlaps the first row
        header, *bands = figure.subfigures(len(rows) + 1, 1, height_ratios=[TITLE] + [row_height] * len(rows))
        header.suptitle(title, fontsize=12, y=0.5, va="center")
        for i, (row, band) in enumerate(zip(rows, bands)):
            mean = 100 * row.confidence.mean().item()
            band.suptitle(f"({chr(ord('a') + i)}) {row.caption}: average confidence {mean:.0f}%", fontsize=10)
            axes = band.subplots(1, columns, squeeze=False)[0]
            band.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=(CELL[1] - 0.2) / row_height, wspace=0.15)
            for ax, image, predicted, confidence in zip(axes, row.images, row.predicted, row.confidence):
                show_image(ax, image)
                name = classes[int(predicted)] if classes is not None else str(int(predicted))
                ax.set_title(f"{name} ({100 * float(confidence):.0f}%)", fontsize=8, pad=2)
        save_png(figure, path)
    return path


@contextmanager
def default_style_figure(figsize: tuple[float, float], *, dpi: int = DPI) -> Iterator[Figure]:
    """A pyplot-free figure (no global backend or registry) drawn under matplotlib's default style.

    Draw and save (``save_png``) inside the ``with`` block: the style applies to what is drawn
    and to the saving, and a user's matplotlibrc changes neither.
    """
    with matplotlib.style.context("default"):
        figure = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(figure)
        yield figure


def save_png(figure: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write ``figure`` to the PNG ``path`` atomically; identical figures give identical bytes."""
    with atomic_path(path) as tmp:
        # the Software chunk names the matplotlib version; leaving it out keeps the bytes a
        # function of the inputs only (PNG has no date chunk unless one is asked for)
        figure.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    return Path(path)


def show_image(ax, image: torch.Tensor) -> None:
    """One C×H×W image in [0, 1] on ``ax``: grey for one channel, RGB for three, no ticks."""
    pixels = image.detach().float().clamp(0, 1).permute(1, 2, 0).numpy()
    if pixels.shape[2] == 1:
        ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def choose_examples(labels: torch.Tensor, candidates: torch.Tensor, examples: int, seed: int) -> torch.Tensor:
    """Positions of ``examples`` points among the ``candidates`` mask: one per class where possible.

    A seeded permutation orders the candidates; the first candidate of each class not yet shown
    is taken in that order (so with more classes than ``examples`` the classes are a random
    draw too), then the rest in the same order until ``examples`` are chosen. The result is
    sorted by class, then position, so the figure reads class by class.
    """
    if examples <= 0:
        raise ValueError(f"examples must be positive, got {examples}")
    pool = candidates.nonzero().flatten()
    order = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))].tolist()
    chosen: list[int] = []
    shown: set[int] = set()
    for i in order:
        if len(chosen) < examples and int(labels[i]) not in shown:
            chosen.append(i)
            shown.add(int(labels[i]))
    taken = set(chosen)
    chosen += [i for i in order if i not in taken][:examples - len(chosen)]
    picked = torch.tensor(chosen, dtype=torch.long)
    return picked[torch.argsort(labels[picked] * (len(labels) + 1) + picked)]


@torch.no_grad()
def _predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    # at least one (possibly empty) batch, so that no points give empty results, not an error
    probabilities = torch.cat([torch.softmax(model(x[i:i + batch_size]), dim=1)
                               for i in range(0, max(len(x), 1), batch_size)])
    confidence, predicted = probabilities.max(dim=1)
    return predicted, confidence


def _attack(saved: dict, name: str) -> dict:
    matches = [a for a in saved["attacks"] if a["name"] == name]
    if len(matches) > 1:
        log.info("%d %s entries saved; the figure shows the first (label %r)", len(matches), name, matches[0]["label"])
    return matches[0]


def run_figures(run_dir: str | Path, adversarial_file: str | Path, data_dir: str | Path, out_dir: str | Path, *,
                examples: int = 10, seed: int = 0) -> Path:
    """Figure 4 for one run: its test points, DeepFool and high-confidence examples → ``<run>-adversarial.png``.

    ``adversarial_file`` is the run's ``data/adversarial/<study>/<run>.pt`` (attack stage);
    ``data_dir`` the prepared dataset it was crafted on. ``examples`` points flipped by both
    attacks are shown, chosen by ``choose_examples`` from ``seed``. Returns the path written.
    Raises ValueError when the file lacks a needed attack (naming the entries the run's
    ``attack.transfer`` list must add) or when no point was flipped by both.
    """
    run_dir, adversarial_file = Path(run_dir), Path(adversarial_file)
    saved = load_torch(adversarial_file)
    names = {a["name"] for a in saved["attacks"]}
    missing = [name for name, _ in PANELS if name not in names]
    if missing:
        raise ValueError(f"{adversarial_file} has no {' or '.join(missing)} examples: the run's params "
                         f"`attack.transfer:` list must include {' and '.join(missing)} (the figure needs "
                         f"{' and '.join(name for name, _ in PANELS)}; saved: {', '.join(sorted(names)) or 'none'})")
    model, _ = load_model(run_dir / "model.pt", torch.device("cpu"))
    x, y = data.load_split(data_dir, "test")
    indices = saved["indices"]
    x, y = x[indices], y[indices]
    attacks = [_attack(saved, name) for name, _ in PANELS]
    for attack in attacks:
        if attack["x_adv"].shape != x.shape:
            raise ValueError(f"{adversarial_file}: {attack['name']} examples have shape "
                             f"{tuple(attack['x_adv'].shape)}, the test subset {tuple(x.shape)}; "
                             "was it crafted on another dataset?")

    candidates = torch.stack([a["flipped"].bool() for a in attacks]).all(dim=0)
    # re-evaluated here (CPU): a boundary example crafted on another device can land back on the
    # true side by rounding, and a figure of "adversarial" images showing the true class misleads
    positions = candidates.nonzero().flatten()
    still = torch.ones(len(positions), dtype=torch.bool)
    for attack in attacks:
        still &= _predict(model, attack["x_adv"][positions])[0] != y[positions]
    if (~still).any():
        log.warning("%d of %d points flipped by both attacks are not flipped when re-evaluated on the CPU; left out",
                    int((~still).sum()), len(positions))
    candidates[positions[~still]] = False
    if not candidates.any():
        raise ValueError(f"{adversarial_file}: no test point was flipped by both "
                         f"{' and '.join(name for name, _ in PANELS)}; nothing to show")
    picked = choose_examples(y, candidates, examples, seed)

    def panel(caption: str, images: torch.Tensor) -> Panel:
        predicted, confidence = _predict(model, images)
        return Panel(caption, images, predicted, confidence)

    run = run_dir.name
    rows = [panel(caption, attack["x_adv"][picked]) for (_, caption), attack in zip(PANELS, attacks)]
    classes = data.load_manifest(data_dir).get("classes")
    return adversarial_grid(panel("test images", x[picked]), rows, Path(out_dir) / f"{run}-adversarial.png",
                            title=f"{run}: test images and their adversarial examples", classes=classes)
