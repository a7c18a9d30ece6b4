"""Transfer attacks: adversarial examples crafted on one run, classified by another.

The attack stage of every run saves the adversarial examples of its ``transfer`` attacks
(crafted white-box on that run's model, on the study's fixed evaluation subset) to
``data/adversarial/<study>/<run>.pt``. The transfer stage of a run then classifies every
file of its study: row ``source = s`` of target ``t`` is the accuracy of ``t`` on the examples
crafted on ``s`` — a cell of a source × target matrix as in SGR's appendix tables and AFD
Table A4. The diagonal (``s = t``) is the white-box number on the same points, which gives
the check ``transfer_ge_whitebox``: examples transferred from another model should not beat
the target's own white-box attack by more than one example; if they do, the white-box
gradients are likely masked.

A point counts as correct only if the target classifies it correctly both clean and
attacked, the protocol of the white-box evaluation.

Besides accuracy, ``target_agreement`` is the fraction of the examples that fooled their
source for which the target predicts what the source was fooled into (the adversarial
target), over those examples only (``n``). Read by a separately trained robust target, it is
the software proxy of the adversary critic's human study (Matyasko & Chau 2018, Table 2: how
often annotators gave an adversarial example its adversarial label).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from robust.evaluate import Outcome, predictions
from robust.io import load_torch, save_torch
from robust.sanity import check_row


def save_adversarial(outcomes: Sequence[Outcome], indices: torch.Tensor, path: Path,
                     predict: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Write the kept adversarial examples of ``outcomes`` with the subset they were crafted on.

    ``predict`` is the source model: its predictions at the examples (the adversarial targets
    it was fooled into) are saved with the mask of examples it flipped.
    """
    attacks = [{"name": o.spec.name, "label": o.spec.label, "norm": o.spec.norm, "eps": o.spec.eps,
                "steps": o.spec.steps, "x_adv": o.x_adv, "pred": predict(o.x_adv), "flipped": o.flipped}
               for o in outcomes if o.x_adv is not None]
    save_torch({"indices": indices, "attacks": attacks}, path)


def load_sources(directory: Path) -> dict[str, dict]:
    """Every source run's saved examples in a study's folder, by run name, in name order."""
    return {path.stem: load_torch(path) for path in sorted(Path(directory).glob("*.pt"))}


def transfer_rows(model: nn.Module, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor,
                  sources: Mapping[str, dict], *, target: str, batch_size: int) -> list[dict]:
    """Accuracy of ``model`` (run ``target``) on every source's examples, plus the transfer checks.

    ``x, y`` are the evaluation subset with dataset ``indices``; every source must have crafted
    on the same subset (same dataset, seed and ``eval_examples``).
    """
    correct = predictions(model, x, batch_size) == y
    rows = []
    for source, payload in sources.items():
        if not torch.equal(payload["indices"], indices):
            raise ValueError(f"run {source!r} crafted its transfer examples on other test points than {target!r}; "
                             "runs of one study must share dataset, seed and profiles.<profile>.eval_examples")
        for attack in payload["attacks"]:
            predicted = predictions(model, attack["x_adv"], batch_size)
            robust = correct & (predicted == y)
            rows.append(_row(attack, source, "accuracy", robust.float().mean().item(), len(y)))
            fooled = attack["flipped"]
            if fooled.any():
                agree = (predicted == attack["pred"]) & fooled
                rows.append(_row(attack, source, "target_agreement", (agree.sum() / fooled.sum()).item(),
                                 int(fooled.sum())))
    return rows + _checks(rows, target)


def _checks(rows: Sequence[dict], target: str) -> list[dict]:
    rows = [r for r in rows if r["metric"] == "accuracy"]
    whitebox = {_cell(r): r["value"] for r in rows if r["source"] == target}
    checks = []
    for row in rows:
        own = whitebox.get(_cell(row))
        if row["source"] != target and own is not None:
            check = check_row(row["attack"], row["norm"], row["eps"], row["steps"], "transfer_ge_whitebox",
                              row["value"] >= own - 1.0 / row["n"], row["n"], row["label"])
            checks.append({**check, "source": row["source"]})
    return checks


def _cell(row: dict) -> tuple:
    return row["attack"], row["label"], row["norm"], row["eps"], row["steps"]


def _row(attack: dict, source: str, metric: str, value: float, n: int) -> dict:
    return {"attack": attack["name"], "label": attack["label"], "norm": attack["norm"],
            "eps": float("nan") if attack["eps"] is None else float(attack["eps"]),
            "steps": -1 if attack["steps"] is None else int(attack["steps"]),
            "metric": metric, "value": value, "n": n, "source": source}
