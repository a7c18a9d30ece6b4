"""The adversary-critic study (Matyasko & Chau 2018): each row's training schedule."""

from pathlib import Path

import yaml

from robust.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def test_baselines_train_on_the_authors_baseline_schedule_and_the_critic_on_the_papers():
    bases = yaml.safe_load((REPO / "studies/matyasko2018.yaml").read_text())["matyasko2018"]["bases"]
    for name, base in bases.items():
        paper = base["profiles"]["paper"]
        config = TrainConfig.from_params(key=name, seed=0, optimizer=base["optimizer"], **paper)
        assert config.epochs == 100 and config.batch_size == 100, name
        if "critic" in name or name == "judge":  # §5: 5e-4 halved every 40 epochs
            assert (config.lr, config.milestones, config.gamma, config.lr_decay) == (5e-4, (40, 80), 0.5, None), name
        else:  # mnist/train_{standard,at,vat,margin}.py: 1e-3, ×0.95 after every epoch
            assert (config.lr, config.milestones, config.lr_decay) == (1e-3, (), 0.95), name
        assert base.get("beta1") == (0.5 if "critic" in name else None), name
