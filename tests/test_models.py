"""Every registered architecture: [0,1] input → finite logits of the right shape."""

import pytest
import torch

from robust.errors import ConfigError
from robust.models import ARCHS, build_model


@pytest.mark.parametrize("arch", ARCHS.names())
@pytest.mark.parametrize("in_shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_shape_and_finite(arch, in_shape):
    torch.manual_seed(0)
    model = build_model(arch, in_shape=in_shape, num_classes=7, width=0.25).eval()
    logits = model(torch.rand(3, *in_shape))
    assert logits.shape == (3, 7)
    assert torch.isfinite(logits).all()


def test_width_scales_parameters():
    small = build_model("jakubovitz-mnist", in_shape=(1, 28, 28), num_classes=10, width=0.25)
    full = build_model("jakubovitz-mnist", in_shape=(1, 28, 28), num_classes=10, width=1.0)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(full) > 10 * count(small)
    # The paper's net: conv 5×5×32, conv 5×5×64, FC 1024 on 7×7×64, FC 10.
    assert count(full) == (25 * 32 + 32) + (25 * 32 * 64 + 64) + (7 * 7 * 64 * 1024 + 1024) + (1024 * 10 + 10)


def test_unknown_arch_names_the_key_and_choices():
    with pytest.raises(ConfigError, match=r"pretrain\.arch.*jakubovitz-mnist"):
        build_model("resnet-9000", in_shape=(1, 28, 28), num_classes=10)


def test_bad_width_rejected():
    with pytest.raises(ConfigError, match="width"):
        build_model("jakubovitz-mnist", in_shape=(1, 28, 28), num_classes=10, width=0)


def test_the_jakubovitz_net_exposes_its_head_without_renaming_checkpoint_keys():
    model = build_model("jakubovitz-mnist", in_shape=(1, 28, 28), num_classes=10, width=0.25)
    assert model.head is model.fc2
    layers = [f"{layer}.{kind}" for layer in ("conv1", "conv2", "fc1", "fc2") for kind in ("bias", "weight")]
    assert sorted(model.state_dict()) == layers + ["normalize.mean", "normalize.std"]
