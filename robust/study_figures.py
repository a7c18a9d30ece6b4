"""Figures of a study drawn from its runs: Jakubovitz Figs. 1–3, JARN Figs. 3 and 4, AFD Fig. 4, SGR Fig. 2,
adversary critic Fig. 2.

Each figure is an entry of ``study_figures`` in a study file (dvc.yaml's ``study-figures``
stage iterates over them), with a ``kind``, the ``runs`` it compares (run → the label drawn)
and the kind's settings; ``draw_study_figure`` validates the entry, computes and draws it.

- ``loss_surface`` (JARN, Chan et al. 2020, Fig. 3): per model and test image, the CE over a
  grid of α·(FGSM direction) + β·(random orthogonal direction), α, β ∈ [−ε, ε]
  (``robust.loss_surface``), as a 3-D surface; each panel on its own loss scale, as the paper's
  (its Fig. 3c is "1 order of magnitude" lower).
- ``input_jacobians`` (JARN Fig. 4): test images and, per model, ∇ₓ log p_y of each
  (``robust.input_gradients``), each scaled by its largest |value| on a symmetric colour scale.
- ``sensitivity_and_class_gradients`` (AFD, Bashivan et al. 2021, Fig. 4): left, the normalised
  representation sensitivity ‖E(x) − E(x′)‖/‖E(x)‖ against ε, median ± std over the evaluated
  test points, read from the rows the attack stage wrote (``robust.representation``, attack
  ``representation``); right, per model, log₁₀ of the mean ‖∂l_i/∂x‖₂ per true class t (rows)
  and class i (columns), one colour scale shared by the models, the diagonal (i = t) written in
  grey outside that scale (``robust.input_gradients``).
- ``perturbation_covariance`` (SGR, Roth et al. 2018, Fig. 2): for one model, the covariance
  function f(r)/f(0) of the pixel displacement r of each attack's perturbations x_adv − x
  (uncentred, the paper's Σ) and of the data (images minus their mean image), with the 1/e level
  and each decay length (``robust.perturbation_structure``). ``attacks`` is a list of attack specs
  (as a suite's); ``data_split`` the images of the data curve (default ``train``: §4.3 names the
  training set's covariance as the one of Fig. 2); ``max_displacement`` the r drawn (default: all).
- ``targeted_grid`` (adversary critic, Matyasko & Chau 2018, Fig. 2): per model (one or two), a
  K × K grid: one correctly classified test image per class (rows: its class) attacked towards every
  class (columns) with the paper's high-confidence attack (Algorithm 1, eq. 7;
  ``robust.attacks.high_confidence.high_confidence_targeted``), the clean image on the diagonal;
  each cell titled with the model's class and confidence. ``step_clip`` (required), ``steps``
  (default 500) and ``confidence`` (the target probability C: a number or ``"clean"``, each source
  image's own clean confidence; default ``"clean"``) are the attack's settings. The K(K − 1)
  targeted pairs go to the attack in batches of ``batch_size``. The paper's Fig. 2 is drawn with
  C&W-L2 at a confidence of at least 95% (its caption); the attack here is the paper's own, as in
  the study's Fig. 4 and Table 1.
- ``accuracy_curves`` (Jakubovitz & Giryes 2018, Figs. 1–3: accuracy against ε under FGSM and
  JSMA): per attack in ``panels`` (``robust.accuracy_curves``: the attack, and the norm, steps or
  label that pick one of its settings), the white-box accuracy of each run at every ε of its suite,
  read from the attack stage's rows, the clean accuracy at ε = 0. No model is loaded.

The papers draw Figs. 3–4 of JARN on CIFAR-10 and AFD's on MNIST, CIFAR-10 and CIFAR-100; here
they are drawn for the models the studies train (MNIST scale: MNIST, or the digits at the smoke
profile), and each figure's title names the profile and dataset. Models missing from a study
are named in the entry's ``note``, printed under the title.

Test points: the evaluation subset of the attack stage (``profiles.<profile>.eval_examples``,
the same seeded subset), so the AFD gradients and the sensitivity rows cover the same points;
the JARN figures show ``examples`` of them, one per class (``robust.figures.choose_examples``);
the SGR figure attacks all of them, each attack with its own generator seeded by ``seed``; the
targeted grid shows one per class among those every model drawn classifies correctly (the same
images in each model's block).
The models run in eval mode on the params' ``device`` (the AFD matrices take K backward passes
over every evaluated point: measured 80 s for the four smoke-width ResNets over 359 digits on two
busy CPU cores; the paper profile's 10k MNIST points at full width are GPU work). The PNG is
written as ``robust.figures`` writes its own, so the same models and settings give the same
bytes on a CPU (a GPU's rounding may shift a colour).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from robust import data
from robust.accuracy_curves import NORM_NAMES, accuracy_curves, parse_panels
from robust.attacks.high_confidence import CLEAN, high_confidence_targeted
from robust.errors import ConfigError
from robust.evaluate import AttackSpec, fixed_subset, parse_suite
from robust.figures import choose_examples
from robust.input_gradients import (class_gradient_matrix, class_gradient_norms, display_normalized,
                                    true_class_gradient)
from robust.loss_surface import LossSurface, loss_surface
from robust.params import check_keys, lookup, profile_settings, require_mapping, require_number, seed_of
from robust.perturbation_structure import data_profile, perturbation_profile
from robust.pipeline import device, load_model
from robust.study_figure_drawing import (TargetedGrid, accuracy_curves_figure, covariance_functions, jacobian_grid, loss_surface_grid,
                                         sensitivity_and_gradients, targeted_grids)

log = logging.getLogger(__name__)

COMMON = {"params_file", "kind", "dataset", "runs", "title", "note"}
KINDS = {
    "loss_surface": ({"eps", "grid", "examples", "batch_size"}, {"eps", "grid", "examples"}),
    "input_jacobians": ({"examples"}, {"examples"}),
    "sensitivity_and_class_gradients": ({"batch_size"}, set()),
    "perturbation_covariance": ({"attacks", "data_split", "max_displacement", "batch_size"}, {"attacks"}),
    "targeted_grid": ({"step_clip", "steps", "confidence", "batch_size"}, {"step_clip"}),
    "accuracy_curves": ({"panels"}, {"panels"}),
}
SINGLE_MODEL = {"perturbation_covariance"}
MAX_RUNS = {"targeted_grid": 2}  # a K × K grid per model: more would not fit one page
DATA_SPLITS = ("train", "test")
SENSITIVITY = ("sensitivity", "sensitivity_std")


@dataclass(frozen=True)
class StudyFigure:
    kind: str
    runs: dict[str, str]  # run → label drawn
    title: str
    note: str
    settings: dict


def parse_study_figure(config: object, key: str) -> StudyFigure:
    """Validate one ``study_figures`` entry; a ConfigError names the key at fault."""
    config = require_mapping(config, key)
    kind = config.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{key}.kind", f"unknown figure kind {kind!r}", KINDS)
    allowed, required = KINDS[kind]
    check_keys(config, key, COMMON | allowed, {"kind", "dataset", "runs", "title"} | required)
    runs = require_mapping(config["runs"], f"{key}.runs")
    labels = list(runs.values())
    if not runs or any(not isinstance(label, str) or not label for label in labels) or len(set(labels)) < len(labels):
        raise ConfigError(f"{key}.runs", f"must map each run to its own label drawn for it, got {runs!r}")
    if kind in SINGLE_MODEL and len(runs) != 1:
        raise ConfigError(f"{key}.runs", f"a {kind} figure is of one model, got {len(runs)} runs")
    if len(runs) > MAX_RUNS.get(kind, len(runs)):
        raise ConfigError(f"{key}.runs", f"a {kind} figure draws at most {MAX_RUNS[kind]} models, got {len(runs)}")
    for name in ("title", "note"):
        if not isinstance(config.get(name, ""), str):
            raise ConfigError(f"{key}.{name}", f"must be text, got {config[name]!r}")
    settings = {}
    if "eps" in config:
        settings["eps"] = float(require_number(config["eps"], f"{key}.eps", low=0, high=1))
        if settings["eps"] == 0:
            raise ConfigError(f"{key}.eps", "must be > 0: the grid spans [−eps, eps]")
    if "grid" in config:
        settings["grid"] = int(require_number(config["grid"], f"{key}.grid", low=2, high=201, integer=True))
    if "examples" in config:
        settings["examples"] = int(require_number(config["examples"], f"{key}.examples", low=1, high=20,
                                                  integer=True))
    settings["batch_size"] = int(require_number(config.get("batch_size", 256), f"{key}.batch_size", low=1,
                                                integer=True))
    if "attacks" in config:
        settings["attacks"] = parse_suite(config["attacks"], f"{key}.attacks", subsets=False)
    if kind == "perturbation_covariance":
        settings["data_split"] = config.get("data_split", "train")
        if settings["data_split"] not in DATA_SPLITS:
            raise ConfigError(f"{key}.data_split", f"unknown split {settings['data_split']!r}", DATA_SPLITS)
        if config.get("max_displacement") is not None:
            settings["max_displacement"] = int(require_number(config["max_displacement"], f"{key}.max_displacement",
                                                              low=1, integer=True))
    if kind == "targeted_grid":
        settings.update(_targeted_attack_settings(config, key))
    if kind == "accuracy_curves":
        settings["panels"] = parse_panels(config["panels"], f"{key}.panels")
    return StudyFigure(kind, dict(runs), config["title"], config.get("note", ""), settings)


def _targeted_attack_settings(config: Mapping, key: str) -> dict:
    step_clip = float(require_number(config["step_clip"], f"{key}.step_clip", low=0))
    if step_clip == 0:
        raise ConfigError(f"{key}.step_clip", "must be > 0: the L2 bound of every step")
    steps = int(require_number(config.get("steps", 500), f"{key}.steps", low=1, integer=True))
    confidence = config.get("confidence", CLEAN)
    if confidence != CLEAN:
        confidence = float(require_number(confidence, f"{key}.confidence", low=0, high=1))
        if confidence == 0:
            raise ConfigError(f"{key}.confidence", f"must be a probability in (0, 1] or {CLEAN!r}, got 0")
    return {"step_clip": step_clip, "steps": steps, "confidence": confidence}


def _model(runs_dir: Path, run: str, key: str, on: torch.device) -> torch.nn.Module:
    path = runs_dir / run / "model.pt"
    if not path.is_file():
        raise ConfigError(f"{key}.runs.{run}", f"no trained model at {path}: not a run of the pipeline?")
    return load_model(path, on)[0]


def _sensitivity(results_dir: Path, run: str, key: str) -> pd.DataFrame:
    path = results_dir / f"{run}.parquet"
    if not path.is_file():
        raise ConfigError(f"{key}.runs.{run}", f"no attack results at {path}")
    frame = pd.read_parquet(path)
    rows = frame[(frame.attack == "representation") & frame.metric.isin(SENSITIVITY) & (frame.source == "")]
    if rows.empty:
        raise ConfigError(f"{key}.runs.{run}", f"{path} has no representation sensitivity rows: the run's "
                          "attack config needs a `representation:` block")
    table = rows.pivot_table(index="eps", columns="metric", values="value", aggfunc="first").sort_index()
    table["n"] = rows.groupby("eps").n.first()
    return table


def draw_study_figure(params: Mapping, figure_key: str, runs_dir: Path, results_dir: Path, data_dir: Path,
                      out: Path) -> Path:
    """Compute and draw the ``study_figures`` entry at ``figure_key`` to the PNG ``out``."""
    figure = parse_study_figure(lookup(params, figure_key), figure_key)
    profile, settings = profile_settings(params)
    seed = seed_of(params)
    n = settings.get("eval_examples")
    if n is not None:
        require_number(n, f"profiles.{profile}.eval_examples", low=1, integer=True)
    x, y = data.load_split(data_dir, "test")
    subset = fixed_subset(len(y), n, seed)
    x, y = x[subset], y[subset]
    manifest = data.load_manifest(data_dir)
    scale = f"{profile} profile, {manifest.get('name', 'dataset')} ({len(y)} test points)"
    title = "\n".join([figure.title, scale] + ([figure.note] if figure.note else []))
    options = figure.settings
    if figure.kind == "accuracy_curves":
        curves = accuracy_curves(Path(results_dir), figure.runs, options["panels"], figure_key)
        return accuracy_curves_figure(curves, out, title=title + "\nwhite-box accuracy; ε = 0: clean accuracy")
    on = device(params)
    models = {label: _model(Path(runs_dir), run, figure_key, on) for run, label in figure.runs.items()}
    if figure.kind in ("loss_surface", "input_jacobians"):
        picked = choose_examples(y, torch.ones(len(y), dtype=torch.bool), options["examples"], seed)
        images, labels = x[picked], y[picked]
        if figure.kind == "loss_surface":
            # one random draw per image (on the CPU, so the same on any device), shared by every model
            # (each orthogonalises it against its own adversarial direction): the panels of a column
            # cut along the same random vector
            raw = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
            surfaces = {label: _on_cpu(loss_surface(model, images.to(on), labels.to(on), raw, eps=options["eps"],
                                                    points=options["grid"], batch_size=options["batch_size"]))
                        for label, model in models.items()}
            return loss_surface_grid(images, labels, surfaces, out, title=title, eps=options["eps"])
        gradients = {label: display_normalized(true_class_gradient(model, images.to(on), labels.to(on)).cpu())
                     for label, model in models.items()}
        return jacobian_grid(images, labels, gradients, out, title=title)
    if figure.kind == "perturbation_covariance":
        return _perturbation_covariance(models, x, y, options, seed, Path(data_dir), out, title=title)
    num_classes = int(manifest.get("num_classes", int(y.max()) + 1))
    if figure.kind == "targeted_grid":
        return _targeted_grids(models, x, y, options, seed, num_classes, on, out, title=title,
                               classes=_classes(manifest, num_classes))

    sensitivity = {label: _sensitivity(Path(results_dir), run, figure_key) for run, label in figure.runs.items()}
    for label, table in sensitivity.items():
        if (table["n"] != len(y)).any():
            log.warning("%s: sensitivity rows over %s points, the gradients over %d", label,
                        sorted(set(table["n"].astype(int))), len(y))
    matrices = {}
    for label, model in models.items():
        norms = class_gradient_norms(model, x.to(on), batch_size=options["batch_size"]).cpu()
        matrices[label] = class_gradient_matrix(norms, y, num_classes)
    return sensitivity_and_gradients(sensitivity, matrices, out, title=title, classes=_classes(manifest, num_classes))


def _perturbation_covariance(models: Mapping[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor, options: dict,
                             seed: int, data_dir: Path, out: Path, *, title: str) -> Path:
    (label, model), = models.items()
    curves = {_attack_label(spec): perturbation_profile(model, x, y, spec.name, spec.settings,
                                                        batch_size=options["batch_size"], seed=seed)
              for spec in options["attacks"]}
    images = x if options["data_split"] == "test" else data.load_split(data_dir, "train")[0]
    data_curve = data_profile(images, batch_size=options["batch_size"])
    return covariance_functions(curves, data_curve, out, title=title, model=label, data_split=options["data_split"],
                                max_displacement=options.get("max_displacement"))


def _targeted_grids(models: Mapping[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor, options: dict, seed: int,
                    num_classes: int, on: torch.device, out: Path, *, title: str, classes: Sequence[str]) -> Path:
    """One correctly classified image per class (of every model), each attacked towards every class."""
    correct = torch.ones(len(y), dtype=torch.bool)
    for model in models.values():
        correct &= _logits(model, x.to(on), options["batch_size"]).argmax(dim=1).cpu() == y
    present = y[correct].unique()
    if len(present) == 0:
        raise ValueError("no test point of the evaluation subset is classified correctly by every model drawn")
    # as many examples as classes present: choose_examples then takes exactly one per class
    picked = choose_examples(y, correct, len(present), seed)
    images, sources = x[picked], y[picked]
    grids = {label: _on_cpu_grid(targeted_grid(model, images.to(on), sources.to(on), num_classes, **options))
             for label, model in models.items()}
    confidence = options["confidence"]
    target = "each source image's clean confidence" if confidence == CLEAN else f"{confidence:g}"
    title += (f"\nhigh-confidence attack (Algorithm 1) towards each class: {options['steps']} steps, every step "
              f"clipped to {options['step_clip']:g} in L2, target confidence C = {target}")
    missing = [classes[k] for k in range(num_classes) if k not in set(present.tolist())]
    if missing:
        title += f"\nno test image classified correctly by every model drawn: class {', '.join(missing)}"
    return targeted_grids(grids, out, title=title, classes=classes)


@torch.no_grad()
def _logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, max(len(x), 1), batch_size)])


def targeted_grid(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                  step_clip: float, steps: int, confidence: float | str, batch_size: int) -> TargetedGrid:
    """Each of ``images`` (correctly classified) attacked towards each of the ``num_classes`` classes.

    Cell [r, k] holds image r's example targeted at class k, and the clean image where k is its
    label. Only the off-diagonal pairs are attacked, all in batches of ``batch_size`` (the attack
    treats the examples of a batch independently). A cell has reached its target when the model
    predicts k with p_k ≥ C, the attack's own success test; C is image r's clean confidence for
    ``confidence`` ``"clean"``.
    """
    rows = len(images)
    source = torch.arange(rows, device=images.device).repeat_interleave(num_classes)
    target = torch.arange(num_classes, device=images.device).repeat(rows)
    attacked = target != labels[source]
    pairs, towards = source[attacked], target[attacked]
    cells = images[source].clone()
    if len(pairs):
        cells[attacked] = torch.cat([
            high_confidence_targeted(model, images[pairs[i:i + batch_size]], labels[pairs[i:i + batch_size]],
                                     towards[i:i + batch_size], step_clip=step_clip, confidence=confidence,
                                     steps=steps)
            for i in range(0, len(pairs), batch_size)])
    log_p = _logits(model, cells, batch_size).log_softmax(dim=1)
    if confidence == CLEAN:  # as the attack sets C
        clean = _logits(model, images, batch_size).softmax(dim=1).amax(dim=1)
    else:
        clean = torch.full((rows,), float(confidence), device=images.device, dtype=images.dtype)
    p_target = log_p.gather(1, target.unsqueeze(1)).squeeze(1).exp()  # as the attack's test computes it
    reached = attacked & (log_p.argmax(dim=1) == target) & (p_target >= clean[source])
    shape = (rows, num_classes)
    return TargetedGrid(images=cells.view(*shape, *images.shape[1:]), sources=labels,
                        predicted=log_p.argmax(dim=1).view(shape), confidence=log_p.amax(dim=1).exp().view(shape),
                        reached=reached.view(shape), target_confidence=clean)


def _on_cpu_grid(grid: TargetedGrid) -> TargetedGrid:
    return TargetedGrid(*(tensor.cpu() for tensor in (grid.images, grid.sources, grid.predicted, grid.confidence,
                                                       grid.reached, grid.target_confidence)))


def _attack_label(spec: AttackSpec) -> str:
    """Every part of the spec's identity, so two attacks of one figure never share a line's name."""
    details = [NORM_NAMES.get(spec.norm, spec.norm)]
    details += [f"ε = {spec.eps:g}"] if spec.eps is not None else []
    details += [f"{spec.steps} steps"] if spec.steps is not None else []
    name = spec.name.upper() + (f" {spec.label}" if spec.label else "")
    return f"{name} ({', '.join(details)})"


def _on_cpu(surface: LossSurface) -> LossSurface:
    return LossSurface(surface.alphas.cpu(), surface.betas.cpu(), surface.loss.cpu(), surface.adversarial.cpu(),
                       surface.random.cpu())


def _classes(manifest: Mapping, num_classes: int) -> Sequence[str]:
    classes = manifest.get("classes")
    return [str(c) for c in classes] if classes else [str(k) for k in range(num_classes)]

