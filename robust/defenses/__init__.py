"""Training defenses: one registry (``DEFENSES``), one API (``Defense.training_step``).

``build_defense(params)`` builds a defense from its params mapping, e.g.
``{"name": "jacobian", "lambda": 0.1, "reduction": "eq4", "projections": None}``; the params key
``lambda`` is the constructor argument ``lam``. See ``robust.defenses.base`` for the contract
and for the ``adversarial`` mixing every defense accepts.
"""

from __future__ import annotations

from robust.defenses.base import DEFENSES, AdversarialMix, Defense, build_defense, register_defense

# imported for their @register_defense side effect; after DEFENSES exists
from robust.defenses import (  # noqa: E402,F401
    afd,
    at,
    critic,
    cross_lipschitz,
    input_gradient,
    jacobian,
    jarn,
    margin,
    none,
    rep_matching,
    sgr,
    trades,
    vat,
)

__all__ = ["DEFENSES", "AdversarialMix", "Defense", "build_defense", "register_defense"]
