"""Wall-clock training cost of every run: the per-run keys of ``metrics/costs.json`` for ``dvc metrics diff``.

The pretrain and defense-finetune stages time their epochs into ``data/costs/{bases,runs}/<name>.json``.
These are the only metrics that measure the machine rather than the method, so they live in a metrics
file of their own: ``summary.json`` stays byte-identical across identical reruns (an identical rerun of a
base reruns nothing after it, and ``dvc metrics diff`` shows no timing noise beside the robustness keys).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from robust.io import save_json


def seconds_per_epoch(cost_file: Path) -> float | None:
    """The mean seconds per training epoch a cost file records; None where it is missing or timed no epoch."""
    if not cost_file.exists():
        return None
    cost = json.loads(cost_file.read_text())
    return cost["seconds_per_epoch"] if cost.get("epochs_timed", 1) > 0 else None


def run_costs(costs_dir: Path, run_bases: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Per run: its base's seconds per pretraining epoch and, where it fine-tunes, its own per fine-tune epoch.

    ``costs_dir`` holds the stages' ``bases/`` and ``runs/`` folders; ``run_bases`` maps each run to its
    base. A run with neither measured (its stages have not run here) is left out.
    """
    # many runs fine-tune one base: read each base's file once
    pretrain = {base: seconds_per_epoch(costs_dir / "bases" / f"{base}.json") for base in set(run_bases.values())}
    costs = {}
    for run, base in sorted(run_bases.items()):
        measured = {"pretrain_seconds_per_epoch": pretrain[base],
                    "finetune_seconds_per_epoch": seconds_per_epoch(costs_dir / "runs" / f"{run}.json")}
        # milliseconds: finer digits are timer noise that would only clutter `dvc metrics diff`
        kept = {key: round(value, 3) for key, value in measured.items() if value is not None}
        if kept:
            costs[run] = kept
    return costs


def write_run_costs(costs_dir: Path, run_bases: Mapping[str, str], out: Path) -> dict[str, dict[str, float]]:
    costs = run_costs(costs_dir, run_bases)
    save_json(costs, out)
    return costs
