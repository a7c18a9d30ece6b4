"""The training-cost benchmark trains each entry at the budgets of the input it is given."""

import pytest
import torch

from benchmarks import bench_training as bench
from robust.train import TrainConfig


@pytest.mark.parametrize("inputs, eps, discriminator, every", [
    ("mnist", 0.3, "mnist", 10),
    ("cifar10", 8 / 255, "cifar10", 20),
])
def test_variants_follow_the_input(inputs, eps, discriminator, every):
    pgd = bench.defense_params("pgd-at7", inputs)["adversarial"]["attack"]
    assert (pgd["name"], pgd["steps"], pgd["eps"]) == ("pgd", 7, eps)
    for entry in ("jarn-d10", "jarn-at1"):
        jarn = bench.defense_params(entry, inputs)
        assert (jarn["discriminator"], jarn["disc_every"], jarn["start_fraction"]) == (discriminator, every, 0.0)
    # JARN-AT1 is JARN on FGSM-AT1's batch: every example replaced, as the CIFAR-10 study trains it
    fgsm = bench.defense_params("fgsm-at1", inputs)["adversarial"]
    assert bench.defense_params("jarn-at1", inputs)["adversarial"] == fgsm
    assert (fgsm["fraction"], fgsm["attack"]["name"], fgsm["attack"]["eps"]) == (1.0, "fgsm", eps)


def test_table4_average_weighs_jarn_by_its_share_of_training():
    seconds = {"none": 1.0, "jarn-d10": 5.0, "fgsm-at1": 2.0, "jarn-at1": 6.0, "pgd-at7": 8.0}
    assert bench.schedule_averages(seconds) == {"jarn-d10": pytest.approx(0.75 * 1.0 + 0.25 * 5.0),
                                                "jarn-at1": pytest.approx(0.75 * 2.0 + 0.25 * 6.0)}
    # an average needs what trains before JARN, measured in the same run
    assert bench.schedule_averages({"none": 1.0, "jarn-at1": 6.0}) == {}


def test_cifar_shaped_jarn_and_pgd_at7_train():
    shape = bench.INPUTS["cifar10"]["shape"]
    x, y = bench.task(8, seed=0, in_shape=shape)
    assert x.shape == (8, *shape) and 0 <= x.min() and x.max() <= 1
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-3, seed=0)
    for entry in ("jarn-d10", "pgd-at7"):
        rate = bench.images_per_second(entry, x, y, config, torch.device("cpu"), repeats=1, inputs="cifar10")
        assert rate > 0


def test_unknown_entry_names_the_allowed_ones():
    with pytest.raises(SystemExit, match="--defenses: unknown entry 'jarn-d20'.*pgd-at7"):
        bench.select_entries("jarn-d20")
