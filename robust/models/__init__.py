"""Architecture registry: every network takes NCHW input in [0, 1] and returns logits.

Normalisation lives inside each model (a ``Normalize`` buffer module), so attacks and
ε are always expressed in pixel units.
"""

from __future__ import annotations

from torch import nn

from robust.errors import ConfigError
from robust.registry import Registry

ARCHS: Registry = Registry("arch", "pretrain.arch")


def build_model(arch: str, *, in_shape: tuple[int, int, int], num_classes: int, width: float = 1.0) -> nn.Module:
    """Build a registered architecture; ``width`` scales every layer (profile setting)."""
    if not isinstance(width, (int, float)) or isinstance(width, bool) or width <= 0:
        raise ConfigError("profiles.<profile>.width", f"must be a positive number, got {width!r}")
    return ARCHS.get(arch)(in_shape=tuple(in_shape), num_classes=num_classes, width=float(width))


from robust.models import critic, jakubovitz, jarn, resnet, sgr, wrn  # noqa: E402,F401  (registers its architectures)
