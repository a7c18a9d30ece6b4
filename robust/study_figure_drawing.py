"""Drawing of the study figures (``robust.study_figures``): tensors in, a deterministic PNG out.

Every figure is built without pyplot under matplotlib's default style and saved without the
``Software`` chunk (``robust.figures.default_style_figure`` and ``save_png``), so the same
inputs give the same bytes. A header band holds the title (with the profile and any note);
one band per row below it.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

from robust.figures import default_style_figure, save_png, show_image
from robust.input_gradients import off_diagonal
from robust.loss_surface import LossSurface
from robust.perturbation_structure import ONE_OVER_E, CovarianceProfile

TITLE_SIZE = 10
LINE = 0.22           # inches per line of the title band
IMAGE_CELL = (1.1, 1.35)
SURFACE_CELL = (2.8, 2.7)
MATRIX_CELL = 2.6
# a K × K class matrix names every class and prints its diagonal up to this K (10 classes, not CIFAR-100's 100)
MAX_LABELLED_CLASSES = 20
JACOBIAN_COLOURS = "RdBu_r"  # red: raises p_y, blue: lowers it; white: no effect
MATRIX_COLOURS = "viridis"
COVARIANCE_PANEL = (7.0, 4.6)
CURVE_PANEL = (4.6, 3.8)    # inches per accuracy-vs-ε panel
CURVE_MARKERS = "osD^v<>ph*"
GRID_CELL = (0.95, 1.1)  # inches per cell of the targeted grid: the image and its one-line title
GRID_MARGINS = (0.45, 0.35, 0.75)  # inches: row labels (left), column labels (bottom), block caption (top)
DIAGONAL_FRAME = "tab:blue"
BELOW_TARGET_CONFIDENCE = "tab:orange"  # the target class, p < C
OTHER_CLASS = "tab:red"                 # not the target class


@dataclass(frozen=True)
class TargetedGrid:
    """One model's targeted grid: R source images (one per class) × K target classes.

    ``images[r, k]`` is source r attacked towards class k (the clean image where k is its class);
    ``predicted``, ``confidence`` (max-softmax) and ``reached`` (predicted k with p_k ≥ C, False
    on the diagonal) are R × K; ``target_confidence`` the C of each source.
    """

    images: torch.Tensor
    sources: torch.Tensor
    predicted: torch.Tensor
    confidence: torch.Tensor
    reached: torch.Tensor
    target_confidence: torch.Tensor

    def __post_init__(self):
        rows, columns = self.images.shape[:2] if self.images.dim() == 5 else (0, 0)
        if not rows or self.sources.shape != (rows,) or self.target_confidence.shape != (rows,) or any(
                tensor.shape != (rows, columns) for tensor in (self.predicted, self.confidence, self.reached)):
            raise ValueError(f"a targeted grid needs R×K×C×H×W images with R sources and R×K predictions, got "
                             f"{tuple(self.images.shape)}, {tuple(self.sources.shape)}, {tuple(self.predicted.shape)}")

    @property
    def off_diagonal(self) -> torch.Tensor:
        """R × K mask of the attacked cells (target ≠ the source's class)."""
        return torch.arange(self.images.shape[1]).unsqueeze(0) != self.sources.unsqueeze(1)


def _wrapped(title: str, width: float) -> str:
    """Each line of ``title`` wrapped to the figure's ``width`` (inches) at the header's font size."""
    chars = max(int(width * 72 / (0.55 * TITLE_SIZE)), 20)  # a character averages ~0.55 em
    return "\n".join(textwrap.fill(line, chars) for line in title.split("\n"))


def _header_height(title: str) -> float:
    return 0.25 + LINE * (title.count("\n") + 1)


def _header(band, title: str) -> None:
    band.suptitle(title, fontsize=TITLE_SIZE, y=0.5, va="center")


def _signed(ax, grad: torch.Tensor) -> None:
    """A gradient in [−1, 1]: one channel on the diverging scale, three as RGB around grey 0.5."""
    values = grad.detach().float().clamp(-1, 1).permute(1, 2, 0).numpy()
    if values.shape[2] == 1:
        ax.imshow(values[:, :, 0], cmap=JACOBIAN_COLOURS, vmin=-1.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow((values + 1) / 2, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _check_examples(images: torch.Tensor, labels: torch.Tensor, per_model: Mapping[str, object]) -> None:
    if images.dim() != 4 or len(images) == 0 or len(labels) != len(images):
        raise ValueError(f"need N×C×H×W images with N labels, got {tuple(images.shape)} and {len(labels)}")
    if not per_model:
        raise ValueError("no model to draw")


def loss_surface_grid(images: torch.Tensor, labels: torch.Tensor, surfaces: Mapping[str, LossSurface],
                      path: str | Path, *, title: str, eps: float) -> Path:
    """JARN Fig. 3: the test images on top, then one row of 3-D CE surfaces per model."""
    _check_examples(images, labels, surfaces)
    columns = len(images)
    width = max(columns * SURFACE_CELL[0], 6.0)
    title = _wrapped(title, width)
    heights = [_header_height(title), IMAGE_CELL[1]] + [SURFACE_CELL[1]] * len(surfaces)
    with default_style_figure((width, sum(heights))) as figure:
        bands = figure.subfigures(len(heights), 1, height_ratios=heights)
        _header(bands[0], title)
        top = bands[1].subplots(1, columns, squeeze=False)[0]
        bands[1].subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.82)
        for ax, image, label in zip(top, images, labels):
            show_image(ax, image)
            ax.set_title(f"test image, class {int(label)}", fontsize=8, pad=2)
        for band, (name, surface) in zip(bands[2:], surfaces.items()):
            if surface.loss.shape[0] != columns:
                raise ValueError(f"{name}: {surface.loss.shape[0]} surfaces for {columns} images")
            band.suptitle(f"{name}: cross-entropy at x + α·sign(∇ₓCE) + β·(random ⊥)", fontsize=9, y=0.99)
            alpha, beta = np.meshgrid(surface.alphas.numpy(), surface.betas.numpy(), indexing="ij")
            for k in range(columns):
                ax = band.add_subplot(1, columns, k + 1, projection="3d")
                ax.plot_surface(alpha, beta, surface.loss[k].numpy(), cmap="viridis", rstride=1, cstride=1,
                                linewidth=0, antialiased=False)
                ticks = [-eps, 0.0, eps]
                ax.set_xticks(ticks)
                ax.set_yticks(ticks)
                ax.tick_params(labelsize=6, pad=0)
                ax.set_xlabel("α (adversarial)", fontsize=7, labelpad=-4)
                ax.set_ylabel("β (random)", fontsize=7, labelpad=-4)
                ax.set_zlabel("loss", fontsize=7, labelpad=-2)
                ax.set_box_aspect(None, zoom=0.85)  # room for the z label inside the panel
            band.subplots_adjust(left=0.0, right=0.97, bottom=0.0, top=0.93, wspace=0.02)
        return save_png(figure, path)


def jacobian_grid(images: torch.Tensor, labels: torch.Tensor, gradients: Mapping[str, torch.Tensor],
                  path: str | Path, *, title: str) -> Path:
    """JARN Fig. 4: the test images, then one row per model of its display-normalised input gradients."""
    _check_examples(images, labels, gradients)
    columns = len(images)
    width = max(columns * IMAGE_CELL[0], 6.0)
    title = _wrapped(title + "\nred: raises the true class's probability, blue: lowers it; each image scaled by its "
                     "largest |value|", width)
    row = IMAGE_CELL[1] + 0.3
    heights = [_header_height(title)] + [row] * (1 + len(gradients))
    with default_style_figure((width, sum(heights))) as figure:
        bands = figure.subfigures(len(heights), 1, height_ratios=heights)
        _header(bands[0], title)
        rows = [("test images", images, show_image)] + [(name, grad, _signed) for name, grad in gradients.items()]
        for band, (name, tensors, show) in zip(bands[1:], rows):
            if tensors.shape != images.shape:
                raise ValueError(f"{name}: gradients of shape {tuple(tensors.shape)}, images {tuple(images.shape)}")
            band.suptitle(name if show is show_image else f"{name}: ∇ₓ log p_y", fontsize=9)
            axes = band.subplots(1, columns, squeeze=False)[0]
            band.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=(row - 0.45) / row, wspace=0.1)
            for ax, tensor, label in zip(axes, tensors, labels):
                show(ax, tensor)
                ax.set_title(f"class {int(label)}", fontsize=7, pad=2)
        return save_png(figure, path)


def class_ticks(k: int) -> list[int]:
    """The classes an axis of a K × K class matrix names: all of them, or every tenth where K = 100 (CIFAR-100)
    leaves no room for a label per cell."""
    return list(range(0, k, 1 if k <= MAX_LABELLED_CLASSES else 10))


def matrix_colour_range(matrices: Mapping[str, torch.Tensor]) -> tuple[float, float]:
    """(min, max) of the finite off-diagonal entries of all ``matrices``: the one colour scale they share."""
    values = np.concatenate([off_diagonal(m).flatten().numpy() for m in matrices.values()])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def sensitivity_and_gradients(sensitivity: Mapping[str, pd.DataFrame], matrices: Mapping[str, torch.Tensor],
                              path: str | Path, *, title: str, classes: Sequence[str]) -> Path:
    """AFD Fig. 4: sensitivity vs ε (median ± std, a line per model) beside the class-gradient matrices.

    ``sensitivity`` holds per model a frame indexed by ε with columns ``sensitivity`` (median)
    and ``sensitivity_std``; ``matrices`` the K × K log₁₀ gradient matrices (rows: true class).
    """
    if not sensitivity or not matrices:
        raise ValueError("no model to draw")
    k = len(classes)
    for name, matrix in matrices.items():
        if matrix.shape != (k, k):
            raise ValueError(f"{name}: matrix of shape {tuple(matrix.shape)}, expected {k}×{k} for the classes")
    grid_columns = 2 if len(matrices) > 1 else 1
    grid_rows = -(-len(matrices) // grid_columns)
    right_width = grid_columns * MATRIX_CELL + 1.0
    body = grid_rows * MATRIX_CELL + 0.4
    title = _wrapped(title, 4.6 + right_width)
    with default_style_figure((4.6 + right_width, _header_height(title) + body)) as figure:
        header, main = figure.subfigures(2, 1, height_ratios=[_header_height(title), body])
        _header(header, title)
        left, right = main.subfigures(1, 2, width_ratios=[4.6, right_width])

        ax = left.subplots()
        for name, table in sensitivity.items():
            ax.errorbar(table.index.to_numpy(), table["sensitivity"].to_numpy(),
                        yerr=table["sensitivity_std"].to_numpy(), marker="o", capsize=3, label=name)
        ax.set_xlabel("ε (PGD-L∞)")
        ax.set_ylabel("‖E(x) − E(x′)‖₂ / ‖E(x)‖₂  (median ± std)")
        ax.set_title("representation sensitivity", fontsize=10)
        ax.legend(fontsize=8)
        left.subplots_adjust(left=0.17, right=0.97, bottom=0.12, top=0.9)

        low, high = matrix_colour_range(matrices)
        colours = matplotlib.colormaps[MATRIX_COLOURS].with_extremes(bad="lightgrey")
        axes = right.subplots(grid_rows, grid_columns, squeeze=False).flatten()
        image = None
        ticks = class_ticks(k)
        tick_labels = [classes[i] for i in ticks]
        # the true class's own gradient, outside the colour scale, as a number where the cells have room
        numbered = range(k) if k <= MAX_LABELLED_CLASSES else ()
        for ax, (name, matrix) in zip(axes, matrices.items()):
            image = ax.imshow(off_diagonal(matrix).numpy(), cmap=colours, vmin=low, vmax=high,
                              interpolation="nearest")
            for t in numbered:
                value = float(matrix[t, t])
                ax.text(t, t, "—" if not np.isfinite(value) else f"{value:.1f}", ha="center", va="center",
                        fontsize=4.5, color="dimgrey")
            ax.set_title(name, fontsize=9)
            ax.set_xticks(ticks, tick_labels, fontsize=6)
            ax.set_yticks(ticks, tick_labels, fontsize=6)
            ax.set_xlabel("class i", fontsize=7, labelpad=1)
            ax.set_ylabel("true class t", fontsize=7, labelpad=1)
        for ax in axes[len(matrices):]:
            ax.set_axis_off()
        right.subplots_adjust(left=0.08, right=0.8, bottom=0.08, top=0.9, wspace=0.35, hspace=0.45)
        bar = right.colorbar(image, ax=list(axes), fraction=0.05, pad=0.04)
        bar.set_label("log₁₀ mean ‖∂l_i/∂x‖₂ (i ≠ t; diagonal in grey)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
        right.suptitle("input gradients of the class likelihoods", fontsize=10)
        return save_png(figure, path)


def _with_decay(name: str, curve: CovarianceProfile) -> str:
    length = curve.decay_length
    return f"{name}: decay length " + ("never 1/e" if length is None else f"{length:.2f} px")


def covariance_functions(perturbations: Mapping[str, CovarianceProfile], data: CovarianceProfile, path: str | Path, *,
                         title: str, model: str, data_split: str, max_displacement: int | None = None) -> Path:
    """SGR Fig. 2: f(r)/f(0) against the pixel displacement r, a line per attack and one for the data.

    Inter-channel functions (multi-channel inputs only) are drawn dotted in their curve's colour.
    ``max_displacement`` cuts the r axis; the decay lengths are read from the whole function.
    """
    if not perturbations:
        raise ValueError("no attack to draw")
    curves = {f"{name} on {model}": curve for name, curve in perturbations.items()}
    curves[f"data: {data.examples} {data_split} images minus their mean image"] = data
    last = min(len(curve.intra) for curve in curves.values()) - 1
    last = last if max_displacement is None else min(last, max_displacement)
    title = _wrapped(title + "\nperturbations x_adv − x: raw second moments; f(r): mean product of two pixels "
                     "r = round(‖Δ‖₂) apart", COVARIANCE_PANEL[0])
    header = _header_height(title)
    with default_style_figure((COVARIANCE_PANEL[0], header + COVARIANCE_PANEL[1])) as figure:
        top, body = figure.subfigures(2, 1, height_ratios=[header, COVARIANCE_PANEL[1]])
        _header(top, title)
        ax = body.subplots()
        r = np.arange(last + 1)
        colours = [f"C{k}" for k in range(len(curves) - 1)] + ["black"]
        for colour, (name, curve) in zip(colours, curves.items()):
            ax.plot(r, curve.intra[:last + 1].numpy(), marker="o", markersize=3, color=colour,
                    label=_with_decay(name, curve))
            if curve.inter.abs().max() > 0:
                ax.plot(r, curve.inter[:last + 1].numpy(), linestyle=":", color=colour,
                        label=f"{name}: inter-channel")
        ax.axhline(ONE_OVER_E, color="grey", linestyle="--", linewidth=1, label="1/e")
        ax.axhline(0.0, color="lightgrey", linewidth=0.8)
        ax.set_xlim(0, last)
        ax.set_xlabel("pixel displacement r")
        ax.set_ylabel("f(r) / f(0)")
        ax.legend(fontsize=7)
        body.subplots_adjust(left=0.11, right=0.97, bottom=0.12, top=0.97)
        return save_png(figure, path)


def targeted_grids(grids: Mapping[str, TargetedGrid], path: str | Path, *, title: str, classes: Sequence[str]) -> Path:
    """Adversary critic Fig. 2: per model a block of rows (source class) × columns (target class).

    Each cell is titled with the model's class and confidence (floored to 0.1%, so that a cell
    short of a C near 1 never reads 100%): black where it reached its target (class and p ≥ C),
    orange where it is the target class below C, red another class; the diagonal (the clean
    images) is framed. Each
    block's caption gives the mean confidence of its attacked cells, how many reached their
    target and the clean images' mean confidence.
    """
    if not grids:
        raise ValueError("no model to draw")
    shapes = {tuple(grid.images.shape) for grid in grids.values()}
    if len(shapes) != 1 or next(iter(shapes))[1] != len(classes):
        raise ValueError(f"every grid must have the same R×K images with K = {len(classes)} classes, got {shapes}")
    rows, columns = next(iter(shapes))[:2]
    left, bottom, top = GRID_MARGINS
    width = left + columns * GRID_CELL[0] + 0.1
    block = top + rows * GRID_CELL[1] + bottom
    title = _wrapped(title + "\nrows: the test image's class, columns: the attack's target class; diagonal (framed): "
                     "the clean images; each cell: the model's class (its confidence), black: the target class "
                     "with p ≥ C, orange: the target class below C, red: another class", width)
    heights = [_header_height(title)] + [block] * len(grids)
    with default_style_figure((width, sum(heights))) as figure:
        bands = figure.subfigures(len(heights), 1, height_ratios=heights)
        _header(bands[0], title)
        for band, (name, grid) in zip(bands[1:], grids.items()):
            attacked = grid.off_diagonal
            mean = 100 * grid.confidence[attacked].mean().item() if attacked.any() else float("nan")
            clean = 100 * grid.confidence[~attacked].mean().item()
            reached, total = int(grid.reached.sum()), int(attacked.sum())
            band.suptitle(f"{name}\nattacked cells: mean confidence {mean:.1f}%, {reached}/{total} "
                          f"({100 * reached / max(total, 1):.0f}%) reach their target class with p ≥ C; "
                          f"clean images (diagonal): {clean:.1f}%", fontsize=9, y=1 - 0.15 / block, va="top")
            axes = band.subplots(rows, columns, squeeze=False)
            band.subplots_adjust(left=left / width, right=1 - 0.1 / width, bottom=bottom / block,
                                 top=1 - top / block, wspace=0.08, hspace=0.3)
            for r in range(rows):
                for k in range(columns):
                    ax = axes[r, k]
                    show_image(ax, grid.images[r, k])
                    predicted = int(grid.predicted[r, k])
                    colour = ("black" if not attacked[r, k] or grid.reached[r, k]
                              else BELOW_TARGET_CONFIDENCE if predicted == k else OTHER_CLASS)
                    floored = math.floor(1000 * float(grid.confidence[r, k])) / 10
                    ax.set_title(f"{classes[predicted]} ({floored:.1f}%)", fontsize=7, pad=2, color=colour)
                    if not attacked[r, k]:
                        for spine in ax.spines.values():
                            spine.set_color(DIAGONAL_FRAME)
                            spine.set_linewidth(2.0)
                    if k == 0:
                        ax.set_ylabel(classes[int(grid.sources[r])], fontsize=8, rotation=0, labelpad=10,
                                      va="center")
                    if r == rows - 1:
                        ax.set_xlabel(f"→ {classes[k]}", fontsize=8, labelpad=2)
        return save_png(figure, path)


def accuracy_curves_figure(curves: Mapping[str, Mapping[str, pd.Series]], path: str | Path, *, title: str) -> Path:
    """Accuracy (%) against ε: one panel per attack (heading → curves), a line per model in each.

    The models keep one colour and marker across the panels; the legend is in the first panel.
    """
    if not curves or any(not models for models in curves.values()):
        raise ValueError("no panel or no model to draw")
    width = max(len(curves) * CURVE_PANEL[0], 6.0)
    title = _wrapped(title, width)
    header = _header_height(title)
    with default_style_figure((width, header + CURVE_PANEL[1])) as figure:
        top, body = figure.subfigures(2, 1, height_ratios=[header, CURVE_PANEL[1]])
        _header(top, title)
        axes = body.subplots(1, len(curves), squeeze=False)[0]
        for ax, (heading, models) in zip(axes, curves.items()):
            for k, (name, curve) in enumerate(models.items()):
                ax.plot(curve.index.to_numpy(), 100 * curve.to_numpy(), color=f"C{k}", marker=CURVE_MARKERS[k % len(
                    CURVE_MARKERS)], markersize=4, label=name)
            ax.set_title(heading, fontsize=9)
            ax.set_xlabel("ε")
            ax.set_ylabel("accuracy (%)")
            ax.set_ylim(0, 101)
            ax.grid(color="lightgrey", linewidth=0.6)
        axes[0].legend(fontsize=7)
        body.subplots_adjust(left=0.09 / len(curves) + 0.03, right=0.98, bottom=0.13, top=0.92, wspace=0.25)
        return save_png(figure, path)
