"""The last fully connected layers of a classifier: where hidden-layer Jacobians are taken
and which weights may be fixed to orthonormal columns.

Jakubovitz & Giryes 2018 (Appendix C/D) regularize the Jacobian of layer L − 1 (the input of the
last fully connected layer, M neurons) or L − 2 (the input of the one before it), and study
networks whose last weight matrices W^(L) (M × K), W^(L−1) are fixed to orthonormal columns and
not trained (after Hoffer et al. 2018, "Fix your classifier"). In PyTorch's ``nn.Linear`` the
weight is stored transposed (K × M), so orthonormal columns of W are orthonormal rows of the
stored weight.

"The last layers" are the model's last ``nn.Linear`` modules in registration order, which is
the order of the forward pass for every architecture here whose head is a stack of linear
layers (e.g. ``jakubovitz-mnist``: fc1 → fc2).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from robust.errors import ConfigError

FIXED_KEY = "fixed_orthonormal"


def last_linear_layers(model: nn.Module, n: int, key: str) -> list[nn.Linear]:
    """The model's last ``n`` linear layers, first to last; ``key`` names the setting that asked."""
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if len(linears) < n:
        raise ConfigError(key, f"needs {n} fully connected layers at the end of the network, "
                               f"{type(model).__name__} has {len(linears)}")
    return linears[len(linears) - n:]


def fix_orthonormal(model: nn.Module, n_layers: int, *, initialise: bool, key: str = FIXED_KEY) -> None:
    """Freeze the weights of the last ``n_layers`` linear layers (biases stay trainable).

    ``initialise`` first sets each weight to orthonormal rows (a base trained from scratch);
    a model loaded from such a base keeps its saved weights and is only frozen again.
    The paper fixes the weight matrices only; it does not say what happens to the biases.
    """
    if n_layers == 0:
        return
    for layer in last_linear_layers(model, n_layers, key):
        out_features, in_features = layer.weight.shape
        if out_features > in_features:
            raise ConfigError(key, f"a {in_features} → {out_features} layer cannot have orthonormal columns "
                                   f"(more outputs than inputs)")
        if initialise:
            with torch.no_grad():
                nn.init.orthogonal_(layer.weight)
        layer.weight.requires_grad_(False)


@contextmanager
def layer_input(model: nn.Module, depth: int, key: str) -> Iterator[list[torch.Tensor]]:
    """Capture, flattened per example, the input of the ``depth``-th linear layer from the end
    (1: the last, the input of the logits layer, z^(L−1); 2: z^(L−2)) during forward passes
    inside the block."""
    layer = last_linear_layers(model, depth, key)[0]
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _module, args: captured.append(args[0].flatten(1)))
    try:
        yield captured
    finally:
        handle.remove()
