"""JARN's architectures: the Madry WRN-34-10 and the §4.1 MNIST CNN (shapes, sizes, parameter counts)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robust.models import build_model
from robust.models.jarn import SameConv2d, same_padding
from robust.models.layers import PerImageStandardize


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def madry_wrn_parameters(num_classes: int = 10) -> int:
    """Closed form of Madry's WRN-34-10: no biases in convolutions, BN γ/β, zero-padding shortcuts."""
    widths = [16, 160, 320, 640]
    total = 3 * 16 * 9
    for stage in range(3):
        for unit in range(5):
            c_in = widths[stage] if unit == 0 else widths[stage + 1]
            c_out = widths[stage + 1]
            total += 2 * c_in + 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out
    return total + 2 * 640 + 640 * num_classes + num_classes


def test_wrn_34_10_has_the_closed_form_count_and_about_46_million_parameters():
    with torch.device("meta"):  # no memory, no initialisation cost
        model = build_model("wrn-34-10", in_shape=(3, 32, 32), num_classes=10, width=1.0)
    assert count(model) == madry_wrn_parameters() == 45_901_914
    # the usual figure for WRN-34-10 (46.16 M) includes 1×1 shortcut convolutions Madry's code lacks
    assert count(model) == pytest.approx(46.16e6, rel=0.01)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 3 * 5 * 2 and all(c.bias is None for c in convs)
    assert len(model.l2_weights()) == len(convs) + 1


def test_wrn_output_embed_head_and_train_mode_batch_norm():
    torch.manual_seed(0)
    model = build_model("wrn-34-10", in_shape=(3, 32, 32), num_classes=10, width=0.1)
    x = torch.rand(4, 3, 32, 32)
    model.train()
    logits = model(x)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    assert model.final_bn.num_batches_tracked.item() == 1
    model.eval()
    torch.testing.assert_close(model(x), model.head(model.embed(x)))
    assert model.embed(x).shape == (4, 64)


def test_per_image_standardisation_matches_tensorflow():
    x = torch.rand(3, 3, 8, 8)
    out = PerImageStandardize()(x)
    flat = out.flatten(1)
    assert flat.mean(1).abs().max() < 1e-6
    torch.testing.assert_close(flat.std(1, unbiased=False), torch.ones(3))
    # a constant image: std floored at 1/√N, so the output is zeros rather than NaN
    assert torch.equal(PerImageStandardize()(torch.full((1, 3, 8, 8), 0.3)), torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize(("size", "kernel", "stride", "expected"),
                         [(28, 5, 5, (1, 1)), (6, 5, 5, (2, 2)), (2, 5, 5, (1, 2)), (32, 4, 2, (1, 1)),
                          (7, 4, 2, (1, 2)), (1, 4, 2, (1, 2)), (28, 5, 2, (1, 2))])
def test_same_padding_gives_tensorflow_output_sizes(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


@pytest.mark.parametrize(("size", "kernel", "stride"), [(14, 4, 2), (28, 5, 5), (7, 4, 2), (2, 5, 5)])
def test_same_conv_equals_a_convolution_of_the_explicitly_padded_input(size, kernel, stride):
    # symmetric padding takes the convolution's own, asymmetric pads first: the same output and gradients
    conv = SameConv2d(3, 4, kernel, stride=stride).double()
    x = torch.rand(2, 3, size, size, dtype=torch.float64, requires_grad=True)
    (top, bottom), (left, right) = same_padding(size, kernel, stride), same_padding(size, kernel, stride)
    want = nn.functional.conv2d(nn.functional.pad(x, (left, right, top, bottom)), conv.weight, conv.bias, stride)
    got = conv(x)
    torch.testing.assert_close(got, want)
    grads = [torch.autograd.grad(out.square().sum(), (x, conv.weight)) for out in (got, want)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("arch", "side"), [("jarn-mnist", 1), ("jarn-mnist-stride2", 4)])
def test_jarn_mnist_cnn_layers(arch, side):
    torch.manual_seed(0)
    model = build_model(arch, in_shape=(1, 28, 28), num_classes=10, width=1.0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert model.head.in_features == 256 * side * side
    x = torch.rand(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    torch.testing.assert_close(model(x), model.head(model.embed(x)))
    expected = 1 * 64 * 25 + 64 + 64 * 128 * 25 + 128 + 128 * 256 * 25 + 256 + 256 * side * side * 10 + 10
    assert count(model) == expected
