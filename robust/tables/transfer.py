"""Transfer matrices: one per study and transfer attack, rendered from the transfer rows.

Rows are the models evaluated (targets), columns the models the adversarial examples were
crafted on (sources), as in SGR's Table 1 and appendix tables; the diagonal is each model's
white-box accuracy on the same points. A cell whose ``transfer_ge_whitebox`` check failed
(transfer stronger than white-box: a sign of gradient masking in the target) is marked, and so is
a target whose clean accuracy is at chance (``robust.chance_level``): its whole row means nothing.
"""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from robust.chance_level import runs_at_chance
from robust.sanity import violations

ATTACK_KEYS = ["attack", "label", "norm", "eps", "steps"]


def transfer_matrices(results: pd.DataFrame) -> dict[str, str]:
    """``{study: markdown}`` for every study whose runs classified other runs' examples."""
    transfer = results[(results.source != "") & (results.metric == "accuracy")]
    at_chance = runs_at_chance(results)
    pages = {}
    for study, rows in transfer.groupby("study", sort=True):
        if (rows.source == rows.run).all():
            continue  # only white-box diagonals: nothing transferred
        failed = violations(results[(results.study == study) & (results.source != "")])
        sections = [_matrix(attack, cells, failed, at_chance)
                    for attack, cells in rows.groupby(ATTACK_KEYS, sort=True)]
        profiles = ", ".join(sorted(set(rows.profile)))
        pages[study] = (f"# Transfer accuracy: {study}\n\nProfile: {profiles}. Rows: the model evaluated; "
                        "columns: the model the adversarial examples were crafted on (diagonal = white-box). "
                        "Accuracy in %; ⚠ = transfer beat the target's own white-box attack; ⚠ after a target: "
                        "its clean accuracy is at chance, so its row means nothing.\n\n"
                        + "\n".join(sections))
    return pages


def _matrix(attack: tuple, cells: pd.DataFrame, failed: pd.DataFrame, at_chance: set[str]) -> str:
    name, label, norm, eps, steps = attack
    title = f"{label or name} ({norm}" + ("" if pd.isna(eps) else f", ε = {eps:g}") + \
        ("" if steps < 0 else f", {steps} steps") + ")"
    sources = sorted(cells.source.unique())
    body = []
    for target, row in cells.groupby("run", sort=True):
        values = dict(zip(row.source, row.value))
        flagged = set(failed[(failed.run == target) & (failed.attack == name) & (failed.label == label)
                             & (failed.eps.fillna(-1) == (-1 if pd.isna(eps) else eps))].source)
        cells_of_row = ["—" if s not in values else f"{100 * values[s]:.1f}" + (" ⚠" if s in flagged else "")
                        for s in sources]
        body.append([target + (" ⚠" if target in at_chance else ""), *cells_of_row])
    return f"## {title}\n\n" + tabulate(body, headers=["target \\ source", *sources], tablefmt="github",
                                        disable_numparse=True) + "\n"
