"""Accuracy against ε, a curve per run and a panel per attack, read from the attack stage's rows.

The papers' accuracy-vs-ε figures (Jakubovitz & Giryes 2018 Figs. 1–3, FGSM and JSMA; JARN
Fig. 2, PGD-5/10/20; AFD Fig. 2) are drawn by the ``study-figures`` stage (kind
``accuracy_curves``) from ``data/results/<run>.parquet``: the white-box accuracy of the panel's
attack at each ε of the run's suite. Each curve starts at ε = 0 with the run's clean accuracy —
what any attack of budget 0 leaves — so that a model's drop from its clean accuracy shows.

A panel names the attack (``attack``) and, where the suite sweeps several settings of it, the
``norm``, ``steps`` and ``label`` that pick one; a setting evaluated at a single ε (the large-ε
sanity check's PGD) is not a curve and is left out. ``title`` is drawn above the panel (default:
the attack's name and what was picked). A minimal-perturbation attack's ``budgets`` rows are a
curve too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from robust.errors import ConfigError
from robust.params import check_keys, require_mapping, require_number

PANEL_KEYS = {"attack", "norm", "steps", "label", "title"}
NORM_NAMES = {"linf": "L∞", "l2": "L2", "l1": "L1", "l0": "L0"}


@dataclass(frozen=True)
class Panel:
    attack: str
    norm: str | None = None
    steps: int | None = None
    label: str | None = None
    title: str = ""

    @property
    def heading(self) -> str:
        """The panel's title, or the attack with every setting that picked it."""
        if self.title:
            return self.title
        details = [NORM_NAMES.get(self.norm, self.norm)] if self.norm else []
        details += [f"{self.steps} steps"] if self.steps is not None else []
        details += [self.label] if self.label else []
        return self.attack.upper() + (f" ({', '.join(details)})" if details else "")


def parse_panels(config: object, key: str) -> list[Panel]:
    """The ``panels`` list of an ``accuracy_curves`` figure; a ConfigError names the key at fault."""
    if not isinstance(config, Sequence) or isinstance(config, str) or not config:
        raise ConfigError(key, f"must be a non-empty list of panels ({{attack: ..., ...}}), got {config!r}")
    panels = []
    for i, entry in enumerate(config):
        entry_key = f"{key}[{i}]"
        entry = require_mapping(entry, entry_key)
        check_keys(entry, entry_key, PANEL_KEYS, {"attack"})
        for name in ("attack", "norm", "label", "title"):
            if name in entry and (not isinstance(entry[name], str) or not entry[name]):
                raise ConfigError(f"{entry_key}.{name}", f"must be non-empty text, got {entry[name]!r}")
        steps = entry.get("steps")
        if steps is not None:
            steps = int(require_number(steps, f"{entry_key}.steps", low=1, integer=True))
        panels.append(Panel(entry["attack"], entry.get("norm"), steps, entry.get("label"), entry.get("title", "")))
    headings = [panel.heading for panel in panels]
    if len(set(headings)) < len(headings):
        raise ConfigError(key, f"two panels would share a title ({headings}): give each its own `title`")
    return panels


def _rows(results_dir: Path, run: str, key: str) -> pd.DataFrame:
    path = Path(results_dir) / f"{run}.parquet"
    if not path.is_file():
        raise ConfigError(f"{key}.runs.{run}", f"no attack results at {path}: not a run of the pipeline?")
    frame = pd.read_parquet(path)
    return frame[(frame.source == "") & (frame.metric == "accuracy")]


def panel_curve(rows: pd.DataFrame, panel: Panel, *, run: str, key: str) -> pd.Series:
    """Accuracy by ε (ε = 0: clean) of one run's white-box ``rows`` for ``panel``'s attack."""
    picked = rows[rows.attack == panel.attack]
    if panel.norm is not None:
        picked = picked[picked.norm == panel.norm]
    if panel.steps is not None:
        picked = picked[picked.steps == panel.steps]
    if panel.label is not None:
        picked = picked[picked.label == panel.label]
    # a curve is a setting swept over ≥ 2 ε; a setting at one ε (the large-ε sanity PGD) is not one
    picked = picked[picked.eps.notna()]
    sizes = picked.groupby(["norm", "steps", "label"]).eps.nunique()
    sweeps = sizes[sizes >= 2]
    if sweeps.empty:
        raise ConfigError(f"{key}.runs.{run}", f"its results have no accuracy of {panel.heading} over two or more "
                          "ε: the run's attack suite needs the attack with an ε list (or budgets)")
    if len(sweeps) > 1:
        choices = ", ".join(f"norm {norm}, steps {steps}, label {label!r}" for norm, steps, label in sweeps.index)
        raise ConfigError(key, f"{panel.heading} of run {run} is swept in several settings ({choices}): "
                          "name the panel's norm, steps or label")
    norm, steps, label = sweeps.index[0]
    picked = picked[(picked.norm == norm) & (picked.steps == steps) & (picked.label == label)]
    clean = rows[rows.attack == "clean"]
    if clean.empty:
        raise ConfigError(f"{key}.runs.{run}", "its results have no clean accuracy")
    swept = picked.set_index("eps").value.sort_index()
    # the clean accuracy stands at ε = 0 unless the grid has its own point there
    curve = swept if (swept.index == 0).any() else pd.concat([pd.Series([clean.value.iloc[0]], index=[0.0]), swept])
    curve.index.name = "eps"
    return curve


def accuracy_curves(results_dir: Path, runs: Mapping[str, str], panels: Sequence[Panel],
                    key: str) -> dict[str, dict[str, pd.Series]]:
    """Panel heading → run label → accuracy by ε, for every run and panel of a figure."""
    rows = {run: _rows(results_dir, run, key) for run in runs}
    return {panel.heading: {label: panel_curve(rows[run], panel, run=run, key=key) for run, label in runs.items()}
            for panel in panels}
