"""Adversarial attacks: one registry, one calling convention.

Every attack is a function ``attack(model, x, y, *, <settings>, generator=None) -> x_adv``
registered in ``ATTACKS`` under the name used in params (``attack.suite[].name``). ``x`` is
NCHW float in [0, 1]; ``x_adv`` is detached, same shape/dtype/device, in [0, 1]. Attacks use
the model in the mode the caller chose and never leave gradients in its parameters.

``MINIMAL_PERTURBATION`` names the attacks whose output is a minimal perturbation (no ε
budget): their result is read as a distance ‖x_adv − x‖, not as accuracy at an ε.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from robust.errors import ConfigError
from robust.registry import Registry

ATTACKS: Registry = Registry("attack", "attack.suite[].name")
MINIMAL_PERTURBATION: set[str] = {"cw", "ddn", "deepfool", "high_confidence"}
# The norm each attack bounds (or minimises) when its settings have no ``norm`` key.
DEFAULT_NORM: dict[str, str] = {
    "fgsm": "linf", "fgm": "l2", "pgd": "linf", "mim": "linf", "deepfool": "l2", "cw": "l2", "ddn": "l2",
    "high_confidence": "l2",
    "jsma": "linf", "uniform_noise": "linf", "lrc": "linf",
    "autoattack": "linf", "square": "linf", "boundary": "l2", "brendel_bethge": "linf",
}

# imported for their @ATTACKS.register side effect; after ATTACKS exists
from robust.attacks import (  # noqa: E402,F401
    cw,
    ddn,
    deepfool,
    external,
    fgm,
    fgsm,
    high_confidence,
    jsma,
    mim,
    noise,
    pgd,
)

_FIXED = {"model", "x", "y", "generator"}


def run_attack(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    **settings,
) -> torch.Tensor:
    """Run the attack registered as ``name`` with ``settings`` (its keyword arguments).

    Unknown or missing settings raise ``ConfigError`` naming the key, so a typo in
    params.yaml fails before any computation.
    """
    check_settings(name, settings)
    return ATTACKS.get(name)(model, x, y, generator=generator, **settings).detach()


def check_settings(name: str, settings: dict, key: str = "attack") -> None:
    """Reject an unknown attack, unknown settings and missing required ones, naming ``key``."""
    attack = ATTACKS.get(name, key=f"{key}.name")
    params = inspect.signature(attack).parameters
    allowed = set(params) - _FIXED
    for setting in settings:
        if setting not in allowed:
            raise ConfigError(f"{key}.{setting}", f"not a setting of attack {name!r}", allowed)
    for setting, param in params.items():
        if setting not in _FIXED and param.default is inspect.Parameter.empty and setting not in settings:
            raise ConfigError(f"{key}.{setting}", f"required by attack {name!r} and missing")


def norm_of(name: str, settings: dict) -> str:
    """The norm an attack with these settings bounds or minimises ("linf", "l2", "l1", …)."""
    return settings.get("norm", DEFAULT_NORM.get(name, "linf"))
