"""Representation matching: the L2 baseline of AFD (Bashivan et al. 2021, arXiv 2006.04621), §4
"Adversarial vs. L2 optimization" and Figure A3.

Loss = CE(Dc(E(x)), y) + λ·(1/m) Σ_i ‖E(x_i) − E(x'_i)‖₂ on a batch of m examples, with x' =
attack(x) generated on the current model in eval mode with frozen parameters. The text calls it
"a regularization term added to the classification loss to directly minimize the representation
sensitivity S_e = 1/n Σ‖E(x) − E(x')‖"; AFD's classification loss is the clean cross-entropy,
so the clean one is used here. Faithful: the unsquared L2 distance of the features (the
activations before the last linear layer), gradients through both E(x) and E(x') (x' fixed).
Lost in the text: the weight λ and the attack's settings (the AFD training attack, PGD-L∞ at
ε = 0.3 on MNIST, is the natural choice); both are required params here.

``embedding_and_head(model)`` (also used by AFD) finds E and Dc: a model's ``embed`` and
``head`` (``robust.models.resnet``), or, for an ``nn.Sequential`` ending in ``nn.Linear``, all
layers but the last and the last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robust.attacks import check_settings, run_attack
from robust.defenses.base import KEY, Defense, attack_mode, is_number, register_defense
from robust.errors import ConfigError


def embedding_and_head(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Linear]:
    """E and Dc of a model with ``model(x) == head(embed(x))``."""
    if hasattr(model, "embed") and isinstance(getattr(model, "head", None), nn.Linear):
        return model.embed, model.head
    if isinstance(model, nn.Sequential) and isinstance(model[-1], nn.Linear):
        return model[:-1], model[-1]
    raise TypeError(f"{type(model).__name__}: representation defenses need embed(x) and a linear head "
                    "(see robust.models.resnet), or an nn.Sequential ending in nn.Linear")


def parse_attack(attack: object, key: str, local: Mapping[str, Callable] | None = None) -> tuple[str, dict[str, Any]]:
    """(name, settings) of an ``{name, <settings>}`` params mapping; names are checked now.

    ``local`` names attacks a defense runs itself (AFD's ``apgd``); they check their own settings.
    """
    if not isinstance(attack, Mapping) or "name" not in attack:
        raise ConfigError(key, f"must be a mapping with a name and its settings, got {attack!r}")
    name, settings = attack["name"], {k: v for k, v in attack.items() if k != "name"}
    if name not in (local or {}):
        check_settings(name, settings, key=key)
    if "eps" in settings and not (is_number(settings["eps"]) and settings["eps"] > 0):
        raise ConfigError(f"{key}.eps", f"must be a number > 0 (image units), got {settings['eps']!r}")
    return name, settings


@register_defense("rep_matching")
class RepresentationMatching(Defense):
    """Params: ``lambda`` (→ ``lam``, ≥ 0), ``attack: {name, <settings>}``, ``adversarial`` (optional)."""

    example_params: ClassVar[dict[str, Any]] = {"lambda": 1.0, "attack": {"name": "fgsm", "eps": 0.1}}
    supports_amp = True  # first-order: an attack and two forward passes

    def __init__(self, *, lam: float, attack: dict, adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        if not is_number(lam) or lam < 0:
            raise ConfigError(f"{KEY}.lambda", f"must be a number >= 0, got {lam!r}")
        self.lam = float(lam)
        self.attack, self.attack_settings = parse_attack(attack, f"{KEY}.attack")

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        embed, head = embedding_and_head(model)
        with attack_mode(model):
            x_adv = run_attack(self.attack, model, x, y, generator=self.generator, **self.attack_settings)
        # separate forward passes: in train mode one mixed batch would change the clean BatchNorm statistics
        clean, perturbed = embed(x), embed(x_adv)
        ce = F.cross_entropy(head(clean), y)
        distance = (clean - perturbed).flatten(1).norm(dim=1).mean()
        loss = ce + self.lam * distance
        return loss, {"ce": ce.item(), "rep_distance": distance.item(), "loss": loss.item()}
