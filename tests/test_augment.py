"""Training-data augmentation (robust.augment): crops and flips as drawn, seeded, and wired into the trainer."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from robust.augment import Augment, Draws
from robust.defenses import build_defense
from robust.errors import ConfigError
from robust.models import build_model
from robust.train import TrainConfig, _epoch_seed, seed_everything, train


def _images(n=6, channels=3, size=8):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))


def test_each_image_is_the_window_of_its_padded_copy_at_its_offset_then_mirrored_if_drawn():
    augment = Augment(crop=3, flip=True, fill=0.5)
    x = _images()
    draws = augment.draw(len(x), seed=11)
    out = augment.apply(x, draws)
    assert out.shape == x.shape
    for image, result, (row, col), flip in zip(x, out, draws.offsets.tolist(), draws.flips.tolist(), strict=True):
        window = F.pad(image, (3,) * 4, value=0.5)[:, row:row + 8, col:col + 8]
        assert torch.equal(result, window.flip(2) if flip else window)


def test_centred_offsets_without_flips_give_the_images_back():
    x = _images()
    centred = Draws(torch.full((len(x), 2), 4), torch.zeros(len(x), dtype=torch.bool))
    assert torch.equal(Augment(crop=4).apply(x, centred), x)


def test_padding_enters_with_the_fill_value_and_flips_happen_about_half_the_time():
    x = torch.ones(1, 1, 5, 5)
    corner = Draws(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, dtype=torch.bool))
    out = Augment(crop=2, fill=0.25).apply(x, corner)
    assert torch.all(out[0, 0, :2] == 0.25) and torch.all(out[0, 0, :, :2] == 0.25)
    assert torch.all(out[0, 0, 2:, 2:] == 1.0)
    draws = Augment(crop=2, flip=True).draw(4000, seed=0)
    assert 0.45 < draws.flips.float().mean() < 0.55
    assert set(draws.offsets.unique().tolist()) == {0, 1, 2, 3, 4}
    assert not Augment(crop=2).draw(100, seed=0).flips.any()  # no flip unless asked


def test_draws_are_a_function_of_the_seed():
    a, b, c = (Augment(crop=4, flip=True).draw(50, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.offsets, b.offsets) and torch.equal(a.flips, b.flips)
    assert not torch.equal(a.offsets, c.offsets)


@pytest.mark.parametrize("value, key", [
    ({"crop": -1}, "base.augment.crop"), ({"crop": 1.5}, "base.augment.crop"),
    ({"flip": "yes"}, "base.augment.flip"), ({"fill": 2}, "base.augment.fill"),
    ({"rotate": 10}, "base.augment"), (4, "base.augment"),
])
def test_bad_augment_params_are_refused_naming_the_key(value, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        Augment.from_params(value, "base.augment")


def test_nothing_to_do_is_no_augmentation():
    assert Augment.from_params(None, "k") is None
    assert Augment.from_params({"crop": 0, "flip": False}, "k") is None
    assert Augment.from_params({"crop": 4, "flip": True}, "k") == Augment(crop=4, flip=True)


def _train(config):
    seed_everything(0)
    model = build_model("jakubovitz-mnist", in_shape=(1, 12, 12), num_classes=2, width=0.25)
    x = torch.rand(64, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0, :, :6].mean((1, 2)) > x[:, 0, :, 6:].mean((1, 2))).long()
    seen = []
    defense = build_defense({"name": "none"})
    step = defense.training_step
    defense.training_step = lambda model, xb, yb: (seen.append(xb.clone()), step(model, xb, yb))[1]
    train(model, defense, x, y, config)
    return model.state_dict(), torch.cat(seen), x


def test_the_trainer_feeds_augmented_batches_and_stays_deterministic():
    plain = TrainConfig(epochs=2, batch_size=16, lr=1e-3, seed=2)
    augmented = dataclasses.replace(plain, augment=Augment(crop=2, flip=True))
    weights, batches, x = _train(plain)
    weights_aug, batches_aug, _ = _train(augmented)
    weights_again, batches_again, _ = _train(augmented)
    # the plain run sees the training images themselves; the augmented one sees other pixels, and
    # both see the same examples in the same order (the draws take their own random stream)
    assert all(any(torch.equal(b, image) for image in x) for b in batches[:5])
    assert not torch.equal(batches, batches_aug)
    order = [next(i for i, image in enumerate(x) if torch.equal(b, image)) for b in batches[:16]]
    draws = augmented.augment.draw(len(x), seed=_epoch_seed(augmented.seed, 0))
    assert torch.equal(batches_aug[:16], augmented.augment.apply(x[order], draws[torch.tensor(order)]))
    assert torch.equal(batches_aug, batches_again)
    for name in weights_aug:
        assert torch.equal(weights_aug[name], weights_again[name]), name


def test_augment_is_read_from_a_train_config_s_params():
    config = TrainConfig.from_params(key="roth2018.bases.clean", seed=0, epochs=1, batch_size=8, lr=0.1,
                                     augment={"crop": 4, "flip": True, "fill": 0.5})
    assert config.augment == Augment(crop=4, flip=True, fill=0.5)
    with pytest.raises(ConfigError, match=r"roth2018\.bases\.clean\.augment\.crop"):
        TrainConfig.from_params(key="roth2018.bases.clean", seed=0, epochs=1, batch_size=8, lr=0.1,
                                augment={"crop": -4})
