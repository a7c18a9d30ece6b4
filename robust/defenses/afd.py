"""AFD: Bashivan et al., "Adversarial Feature Desensitization", NeurIPS 2021, arXiv 2006.04621;
official code github.com/BashivanLab/afd (``afd_train.py``, ``losses.py``, ``models/*_models.py``).

The model is split into the embedding E (``model.embed``) and the linear decoder Dc
(``model.head``); see ``rep_matching.embedding_and_head``. The defense owns the adversarial
discriminator Da(h, y) on representations and two optimizers. Per batch (Algorithm 1):

1. x' = attack(x) on the current model in eval mode with frozen parameters;
2. Da step (own SGD, ``lr_disc``): L_Da = mean S(−Da(E(x), y)) + mean S(Da(E(x'), y)), S = softplus;
3. E step (own SGD over E's parameters only, ``lr_embed``): L_E = mean S(−Da(E(x'), y));
4. the returned loss, clean CE(Dc(E(x)), y), is the trainer's step: its optimizer (lr = the
   profile's ``lr``, official 0.1 with weight decay 1e-4 through ``l2`` and the model's
   ``l2_weights``) is the paper's E+Dc optimizer (learning rate α).

Steps 2–3 take their gradients with ``torch.autograd.grad`` (E's are handed to the E optimizer
and removed again), so the model's ``.grad`` holds only what the returned loss puts there. Every
epoch the trainer's ``lr_factor`` (its milestones) multiplies ``lr_disc`` and ``lr_embed``: the
official code steps all three schedulers with the same milestones. Momentum 0.9 on both (official
SGD; no weight decay on them, as there).

Order: the official loop runs attack → E+Dc → Da → E; here the E+Dc step has to come last (the
trainer takes it after ``training_step``), so a batch runs attack → Da → E → E+Dc. The sequence
of updates is the same up to where the classification step of each batch sits.

Discriminator (``discriminator``), hidden width ``disc_width`` (default: the feature dimension,
as in the official code: 64 on the MNIST ResNet-18, 512 on CIFAR), LeakyReLU(0.2), spectral
normalisation (``torch.nn.utils.parametrizations.spectral_norm``, one power iteration per
training-mode forward) on every layer including the label embedding, Xavier-uniform output
layer and embedding (official ``SNPDFC3``):
- ``fc3-pd`` (paper and official): h → SN-Linear(d,d) → LReLU → SN-Linear(d,d) → LReLU = φ;
  Da = SN-Linear(d,1)(φ) + ⟨SN-Embedding(y), φ⟩ (projection discriminator, Miyato & Koyama 2018);
- ``fc1-pd``: φ = h (official ``SNPDFC1NoBN``); ``fc3``: ``fc3-pd`` without the projection term.
Table A6 (MNIST, PGD-L∞ ε = 0.3): FC1-PD 85.96%, FC3 90.73%, FC3-PD 97.03%.

Losses (``gan_loss``): ``softplus`` is Algorithm 1 (official ``dcgan``); ``wgan`` is the official
default (``wgan_gp`` with penalty weight 0): L_Da = mean Da(E(x'),y) − mean Da(E(x),y),
L_E = −mean Da(E(x'),y). Logged: ``ce``, ``disc_loss``, ``embed_loss``, ``disc_acc`` (Fig. A5:
clean features called clean when Da > t, perturbed ones perturbed when Da ≤ t; t = 0 for softplus,
the midpoint of the two batch means for wgan, whose critic has no fixed zero), ``disc_clean`` and
``disc_adv`` (mean outputs), ``adv_acc`` (the model's accuracy on x' before the updates).

Attack (``attack: {name, <settings>}``): any registered attack (the paper's text: PGD-L∞, ε 0.3
MNIST / 0.031 CIFAR), or ``apgd``: APGD-CE L∞ (torchattacks.APGD, one restart, settings ``eps``,
``steps``), the official training attack (AutoAttack's APGD-CE, 40 iterations MNIST, 20 CIFAR).
Like the official AutoAttack wrapper, it returns x itself where it finds no adversarial point.

``normalize_features``: L2-normalise E(x) before Da only. The official models normalise inside
E (so Dc sees unit features too): use the ``-norm`` architectures for that and leave this off.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from robust.attacks import run_attack
from robust.attacks.external import _into_budget, _library_call, _seed_from
from robust.defenses.base import KEY, Defense, attack_mode, is_number, register_defense
from robust.defenses.rep_matching import embedding_and_head, parse_attack
from robust.errors import ConfigError


class Discriminator(nn.Module):
    """Da(h, y): ``hidden_layers`` SN-Linear+LeakyReLU layers, an SN-Linear output, optional projection."""

    def __init__(self, num_features: int, num_classes: int, width: int, hidden_layers: int, projection: bool):
        super().__init__()
        layers, size = [], num_features
        for _ in range(hidden_layers):
            layers += [spectral_norm(nn.Linear(size, width)), nn.LeakyReLU(0.2)]
            size = width
        self.body = nn.Sequential(*layers)
        out = nn.Linear(size, 1)
        nn.init.xavier_uniform_(out.weight)
        self.out = spectral_norm(out)
        self.embedding = None
        if projection:
            embedding = nn.Embedding(num_classes, size)
            nn.init.xavier_uniform_(embedding.weight)
            self.embedding = spectral_norm(embedding)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        phi = self.body(h)
        score = self.out(phi).squeeze(1)
        if self.embedding is not None:
            # one-hot product instead of an embedding lookup: the lookup's CUDA backward is not deterministic
            rows = F.one_hot(y, self.embedding.num_embeddings).to(phi.dtype) @ self.embedding.weight
            score = score + (rows * phi).sum(dim=1)
        return score


# name → (hidden layers, projection)
DISCRIMINATORS = {"fc3-pd": (2, True), "fc3": (2, False), "fc1-pd": (0, True)}
GAN_LOSSES = {"softplus", "wgan"}


def discriminator_loss(kind: str, clean: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    if kind == "softplus":
        return F.softplus(-clean).mean() + F.softplus(adv).mean()
    return adv.mean() - clean.mean()


def embedding_loss(kind: str, adv: torch.Tensor) -> torch.Tensor:
    return F.softplus(-adv).mean() if kind == "softplus" else -adv.mean()


def apgd_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int,
            generator: torch.Generator | None) -> torch.Tensor:
    """APGD-CE (Croce & Hein 2020), L∞, one restart, torchattacks' implementation, seeded by ``generator``."""
    import torchattacks as ta  # heavy import, only when this attack runs

    seed = _seed_from(generator, "apgd")
    with _library_call(model, x, seed) as facade:
        x_adv = ta.APGD(facade, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed, loss="ce")(x, y)
    return _into_budget(x, x_adv, eps, "linf")


def _check_apgd(settings: dict[str, Any], key: str) -> None:
    for name in settings:
        if name not in ("eps", "steps"):
            raise ConfigError(f"{key}.{name}", "not a setting of attack 'apgd'", ["eps", "steps"])
    for name in ("eps", "steps"):
        if name not in settings:
            raise ConfigError(f"{key}.{name}", "required by attack 'apgd' and missing")
    steps = settings["steps"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"{key}.steps", f"must be a positive integer, got {steps!r}")


def _check_positive(value: object, key: str) -> float:
    if not is_number(value) or value <= 0:
        raise ConfigError(f"{KEY}.{key}", f"must be a number > 0, got {value!r}")
    return float(value)


@register_defense("afd")
class AdversarialFeatureDesensitization(Defense):
    """Params: ``attack``, ``lr_embed``, ``lr_disc`` (required); ``discriminator``, ``disc_width``,
    ``gan_loss``, ``momentum``, ``normalize_features``."""

    example_params: ClassVar[dict[str, Any]] = {"attack": {"name": "fgsm", "eps": 0.1}, "lr_embed": 0.05, "lr_disc": 0.05}
    # softplus losses stay near log 2; WGAN scores are Lipschitz in unit-scale features
    divergence_limits: ClassVar[dict[str, float]] = {"disc_loss": 1e4, "embed_loss": 1e4}
    supports_amp = True  # first-order: an attack, and first-order steps of Da, E and E+Dc

    def __init__(self, *, attack: dict, lr_embed: float, lr_disc: float, discriminator: str = "fc3-pd",
                 disc_width: int | None = None, gan_loss: str = "softplus", momentum: float = 0.9,
                 normalize_features: bool = False):
        super().__init__()
        self.attack, self.attack_settings = parse_attack(attack, f"{KEY}.attack", local={"apgd": apgd_ce})
        if self.attack == "apgd":
            _check_apgd(self.attack_settings, f"{KEY}.attack")
        self.lr_embed = _check_positive(lr_embed, "lr_embed")
        self.lr_disc = _check_positive(lr_disc, "lr_disc")
        if discriminator not in DISCRIMINATORS:
            raise ConfigError(f"{KEY}.discriminator", f"got {discriminator!r}", DISCRIMINATORS)
        if disc_width is not None and (not isinstance(disc_width, int) or disc_width < 1):
            raise ConfigError(f"{KEY}.disc_width", f"must be a positive integer or null, got {disc_width!r}")
        if gan_loss not in GAN_LOSSES:
            raise ConfigError(f"{KEY}.gan_loss", f"got {gan_loss!r}", GAN_LOSSES)
        if not is_number(momentum) or not 0 <= momentum < 1:
            raise ConfigError(f"{KEY}.momentum", f"must be a number in [0, 1), got {momentum!r}")
        self.discriminator, self.disc_width, self.gan_loss = discriminator, disc_width, gan_loss
        self.momentum, self.normalize_features = float(momentum), normalize_features
        self.lr_factor = 1.0
        self.disc: Discriminator | None = None
        self.disc_optimizer: torch.optim.Optimizer | None = None
        self.embed_optimizer: torch.optim.Optimizer | None = None
        self._pending_state: dict[str, Any] | None = None

    # ---- networks and optimizers, built at the first batch -----------------------------------

    def _build(self, model: nn.Module, head: nn.Linear, features: torch.Tensor) -> None:
        hidden_layers, projection = DISCRIMINATORS[self.discriminator]
        width = self.disc_width or features.shape[1]
        # seeded by the epoch's generator without drawing from it, and outside the global RNG stream
        # (dropout): building Da, or skipping its init on resume, leaves every other random draw as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.generator.initial_seed())
            disc = Discriminator(features.shape[1], head.out_features, width, hidden_layers, projection)
        self.disc = disc.to(device=features.device, dtype=features.dtype)
        self.disc_optimizer = torch.optim.SGD(self.disc.parameters(), lr=self.lr_disc, momentum=self.momentum)
        self.embed_optimizer = torch.optim.SGD(self._embed_parameters(model, head), lr=self.lr_embed,
                                               momentum=self.momentum)
        if self._pending_state is not None:
            self._load(self._pending_state)
            self._pending_state = None
        self._apply_lr()

    @staticmethod
    def _embed_parameters(model: nn.Module, head: nn.Linear) -> list[nn.Parameter]:
        in_head = {id(p) for p in head.parameters()}
        return [p for p in model.parameters() if id(p) not in in_head and p.requires_grad]

    def _apply_lr(self) -> None:
        if self.disc_optimizer is not None:
            for group in self.disc_optimizer.param_groups:
                group["lr"] = self.lr_disc * self.lr_factor
            for group in self.embed_optimizer.param_groups:
                group["lr"] = self.lr_embed * self.lr_factor

    def start_epoch(self, epoch: int, epochs: int, *, lr_factor: float) -> None:
        super().start_epoch(epoch, epochs, lr_factor=lr_factor)
        self.lr_factor = float(lr_factor)
        self._apply_lr()

    # ---- one batch ----------------------------------------------------------------------------

    def _features(self, embed, x: torch.Tensor) -> torch.Tensor:
        h = embed(x)
        return F.normalize(h, dim=1) if self.normalize_features else h

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with attack_mode(model):
            if self.attack == "apgd":
                return apgd_ce(model, x, y, generator=self.generator, **self.attack_settings)
            return run_attack(self.attack, model, x, y, generator=self.generator, **self.attack_settings)

    def training_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        embed, head = embedding_and_head(model)
        x_adv = self._perturb(model, x, y)
        with torch.no_grad():
            h_clean = self._features(embed, x)
        h_adv = self._features(embed, x_adv)  # graph kept for the E step; E does not change before it
        if self.disc is None:
            self._build(model, head, h_adv)
        logs = {"adv_acc": (head(h_adv.detach()).argmax(1) == y).float().mean().item()}
        logs |= self._discriminator_step(h_clean, h_adv.detach(), y)
        logs["embed_loss"] = self._embedding_step(model, head, h_adv, y)
        ce = F.cross_entropy(model(x), y)
        return ce, {"ce": ce.item(), **logs, "loss": ce.item()}

    def _discriminator_step(self, h_clean: torch.Tensor, h_adv: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        clean, adv = self.disc(h_clean, y), self.disc(h_adv, y)
        loss = discriminator_loss(self.gan_loss, clean, adv)
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.reduce_gradients(self.disc.parameters())
        self.disc_optimizer.step()
        self.disc_optimizer.zero_grad(set_to_none=True)
        clean, adv = clean.detach(), adv.detach()
        threshold = 0.0 if self.gan_loss == "softplus" else float(clean.mean() + adv.mean()) / 2
        accuracy = torch.cat([clean > threshold, adv <= threshold]).float().mean()
        return {"disc_loss": loss.item(), "disc_acc": accuracy.item(),
                "disc_clean": clean.mean().item(), "disc_adv": adv.mean().item()}

    def _embedding_step(self, model: nn.Module, head: nn.Linear, h_adv: torch.Tensor, y: torch.Tensor) -> float:
        loss = embedding_loss(self.gan_loss, self.disc(h_adv, y))
        params = self._embed_parameters(model, head)
        # autograd.grad leaves Da's .grad alone; E's gradients are lent to the optimizer and taken back
        grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
        saved = [p.grad for p in params]  # whatever the trainer holds stays untouched
        for p, g in zip(params, grads):
            p.grad = g
        self.reduce_gradients(params)
        self.embed_optimizer.step()
        for p, g in zip(params, saved):
            p.grad = g
        return loss.item()

    # ---- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        if self.disc is None:
            return {} if self._pending_state is None else dict(self._pending_state)
        return {"disc": self.disc.state_dict(), "disc_optimizer": self.disc_optimizer.state_dict(),
                "embed_optimizer": self.embed_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        expected = {"disc", "disc_optimizer", "embed_optimizer"}
        if set(state) != expected:
            raise ValueError(f"defense 'afd': state needs keys {sorted(expected)}, got {sorted(state)}")
        if self.disc is None:
            self._pending_state = dict(state)  # applied once the first batch gives shapes and device
        else:
            self._load(state)

    def _load(self, state: dict[str, Any]) -> None:
        self.disc.load_state_dict(state["disc"])
        self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.embed_optimizer.load_state_dict(state["embed_optimizer"])
        self._apply_lr()
