"""The tidy results schema shared by the attack, transfer and aggregate stages.

One row per (run, attack setting, metric); ``label`` is the suite entry's optional label,
which names the attack in summary keys when set. ``source`` is empty for white-box rows and names
the run that crafted the adversarial examples for transfer rows. Check rows (metric
``check_<name>``, value 1 = holds, 0 = violated) sit beside the numbers they question.
"""

from __future__ import annotations

import math

RESULT_COLUMNS = ["run", "study", "dataset", "arch", "defense", "profile", "seed", "source",
                  "attack", "label", "norm", "eps", "steps", "metric", "value", "n"]
SORT_KEYS = ["run", "source", "attack", "label", "norm", "eps", "steps", "metric"]


def metric_key(row) -> str:
    """A stable, flat name for one metric of one run, e.g. ``pgd_linf_eps0.1_steps10_accuracy``.

    Transfer rows are prefixed with their source: ``from_<source>_pgd_linf_eps0.1_steps10_accuracy``.
    """
    if row.attack == "clean":
        return row.metric
    eps = "" if math.isnan(row.eps) else f"_eps{row.eps:g}"
    steps = "" if row.steps < 0 else f"_steps{row.steps}"
    prefix = f"from_{row.source}_" if row.source else ""
    return f"{prefix}{row.label or row.attack}_{row.norm}{eps}{steps}_{row.metric}"
