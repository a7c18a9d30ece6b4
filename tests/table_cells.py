"""Tidy result rows for the table tests, and reading a rendered markdown table (robust.tables.render_table) back."""

import math


def clean_and_deepfool_rows(run: str, *, accuracy: float = 0.9, rho: float = 0.25, profile: str = "smoke",
                            n: int = 10) -> list[dict]:
    """A run's clean accuracy row and its DeepFool ρ_adv row, in the results schema."""
    meta = {"run": run, "study": "s", "dataset": "digits", "arch": "a", "defense": "none", "profile": profile,
            "seed": 0, "source": "", "label": "", "norm": "", "eps": math.nan, "steps": -1, "n": n}
    return [{**meta, "attack": "clean", "metric": "accuracy", "value": accuracy},
            {**meta, "attack": "deepfool", "norm": "l2", "steps": 50, "metric": "rho_adv", "value": rho}]


def row_cells(text: str, label: str) -> list[str]:
    """The stripped cells of the first table line whose row label starts with ``label``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
    return [cell.strip() for cell in line.strip("|").split("|")]
