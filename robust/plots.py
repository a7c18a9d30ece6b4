"""Plot data for `dvc plots`: accuracy-vs-ε curves of every study, one file per attack setting.

The papers draw their ε sweeps as figures (Jakubovitz Fig. 1, AFD Table A2 and Fig. 3, JARN's
and SGR's curves); here every white-box suite entry with at least two ε values becomes one CSV,
``<study>-<attack>.csv`` with a row per (run, ε), so that one plot compares a study's runs under
one attack. The template ``.dvc/plots/runs.json`` draws a line per run.
"""

from __future__ import annotations

import pandas as pd

CURVE_KEYS = ["study", "attack", "label", "norm", "steps"]  # one curve family per attack setting


def _name(study: str, attack: str, label: str, norm: str, steps: int) -> str:
    steps_part = "" if steps < 0 else f"_steps{steps}"
    return f"{study}-{label or attack}_{norm}{steps_part}.csv"


def sweep_curves(results: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{file name: frame(run, eps, accuracy)}`` for every white-box attack setting swept over ε."""
    accuracy = results[(results.source == "") & (results.metric == "accuracy") & results.eps.notna()]
    curves = {}
    for key, rows in accuracy.groupby(CURVE_KEYS, sort=True):
        if rows.eps.nunique() < 2:
            continue
        frame = rows[["run", "eps", "value"]].rename(columns={"value": "accuracy"})
        curves[_name(*key)] = frame.sort_values(["run", "eps"], kind="stable").reset_index(drop=True)
    return curves
