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


def test_the_jakubovitz_cifar_net_is_four_conv_conv_pool_dropout_sets_then_two_dense_layers():
    model = build_model("jakubovitz-cifar", in_shape=(3, 32, 32), num_classes=10, width=1.0)
    kinds = [type(layer).__name__ for layer in model.features]
    assert kinds == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout"] * 4
    assert {layer.p for layer in model.features if isinstance(layer, torch.nn.Dropout)} == {0.25}  # keep 0.75
    convs = [layer for layer in model.features if isinstance(layer, torch.nn.Conv2d)]
    assert [conv.out_channels for conv in convs] == [32, 32, 64, 64, 128, 128, 256, 256]
    # four 2× pools leave 2×2 of a 32×32 image; the chosen 512-unit hidden layer, then the classifier
    assert (model.fc1.in_features, model.fc1.out_features, model.fc2.out_features) == (256 * 2 * 2, 512, 10)
    assert model.head is model.fc2 and all(w is not model.fc2.weight for w in model.l2_weights())
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
