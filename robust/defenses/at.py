"""Adversarial training: mean cross-entropy on a batch whose first examples are adversarial.

Goodfellow, Shlens & Szegedy, arXiv 1412.6572, in the form used by Jakubovitz & Giryes 2018
(arXiv 1803.08680, Appendix F): a fixed fraction of each training mini-batch is replaced by
adversarial examples of the current model (DeepFool there; any registered attack here) with
their true labels. The 50/50 weighting of clean and adversarial loss in Goodfellow et al. is
replaced by the batch fraction, as in Jakubovitz & Giryes. The attack and its settings
(ε, steps, …) have no defaults: the params file states them.
"""

from __future__ import annotations

from robust.defenses.base import KEY, register_defense
from robust.defenses.none import NoDefense
from robust.errors import ConfigError


@register_defense("at")
class AdversarialTraining(NoDefense):
    """Params: ``adversarial: {fraction, attack: {name, <settings>}}`` (required)."""

    example_params = {"adversarial": {"fraction": 0.5, "attack": {"name": "fgsm", "eps": 0.1}}}

    def __init__(self, *, adversarial: dict):
        if adversarial is None:
            raise ConfigError(f"{KEY}.adversarial", "required by defense 'at': {fraction, attack: {name, ...}}")
        super().__init__(adversarial=adversarial)
