"""JARN: Chan, Tay, Ong & Fu, "Jacobian Adversarially Regularized Networks for Robustness",
ICLR 2020, arXiv 1912.10185, §3 (Algorithm 1) and §4; official code alvinchangw/JARN_ICLR2020
(TensorFlow, CIFAR-10 only).

The classifier's input Jacobian J = ∇ₓL(x, y), normalised per example (mean subtracted, then
L2-normalised: the official ``GradImageMixer``), goes through an adaptor (a 1×1 convolution with
tanh, §3) to image space; a discriminator learns to tell adapted Jacobians (label 0) from the
training images (label 1), and the classifier and adaptor are trained to fool it:

    classifier: mean CE + λ_adv·L_adv,  adaptor: L_adv,  discriminator: D_xent,
    L_adv = −D_xent,  D_xent = mean binary CE of the discriminator over the 2B inputs.

This is the saturating minimax form of eq. 8 as the official code writes it (``total_loss =
mean_xent − beta·disc_model.mean_xent``); D_xent averages over both halves, so L_adv is half of
eq. 8's sum of two expectations (λ_adv values are those of the official code, where they exist).
The Jacobian is differentiated again (double backpropagation), so L_adv reaches the classifier's
parameters through ∇ₓ.

Faithful: uniform input noise U(−ε, ε), clipped to [0, 1], at every training step (the official
``--img_random_pert``, also before JARN starts, where §3 speaks of noise "during JARN training");
JARN only for the last ``1 − start_fraction`` of training (§3: the last 25%; the official CIFAR-10
run: the last 20k of 160k steps, fraction 0.875); the discriminator updated once every
``disc_every`` JARN steps, starting with the first (§4: 10 MNIST, 20 SVHN/CIFAR-10); its
architecture (``JarnConvDiscriminatorModel``: per-example zero-mean + L2 input normalisation, 4×4
stride-2 "SAME" convolutions with bias, each followed by BatchNorm and leaky ReLU 0.1, channels
base·2^i, then a linear layer) with the §4 sizes: MNIST 2 layers from 64, SVHN 5 from 16, CIFAR-10 5
from 32; BatchNorm in training mode over the concatenated fake/real batch; the adaptor and
discriminator have their own optimizers (momentum 0.9 as the official ``same_optimizer``; Adam as
its alternative) whose learning rates follow the classifier's schedule (``lr_factor``); the
adaptor's loss weight is 1 (official ``gamma``).

Settings: ``jacobian: ce`` (default; eq. 6, the gradient of the cross-entropy, as the paper
states) or ``true_prob`` (the official code: the gradient of the true-class softmax probability
p_y). ∇p_y = −p_y·∇CE, so after normalisation ``true_prob`` is exactly −(the ``ce`` Jacobian):
the sign the discriminator sees is flipped.

Chosen / simplified: one discriminator logit with a sigmoid instead of two softmax logits (the
same family of classifiers); within a step the discriminator (when due) is updated first, on
the current batch, then the classifier and adaptor face the updated discriminator (the official
code updates the discriminator after the classifier, on the same batch); the adaptor is stepped
inside ``training_step`` from its own gradient (on copies of its weights, so the trainer's
backward pass leaves no gradient on it); the noise is added after the ``adversarial`` mixing
(JARN-AT1 = ``adversarial: {fraction, attack: {name: fgsm, eps}}``: the paper gives neither the
fraction nor how the two combine); ``aux_l2`` (official 2e-4, default 0) is weight decay on the
adaptor's and discriminator's kernels. The networks are built at the first JARN step, their
initialisation seeded from ``self.generator``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robust.attacks.base import uniform_noise
from robust.defenses.base import KEY, Defense, is_number, register_defense
from robust.errors import ConfigError
from robust.models.jarn import SameConv2d

# §4: (convolutional layers, channels of the first); each next layer doubles the channels
DISCRIMINATORS = {"mnist": (2, 64), "svhn": (5, 16), "cifar10": (5, 32)}
JACOBIANS = ("ce", "true_prob")
OPTIMIZERS = ("sgd", "adam")
MOMENTUM = 0.9  # official MomentumOptimizer for classifier, adaptor and discriminator
STATE_KEYS = {"in_shape", "steps", "adaptor", "discriminator", "adaptor_optimizer", "discriminator_optimizer"}


def normalize_per_example(t: torch.Tensor) -> torch.Tensor:
    """Subtract each example's mean, then divide by its L2 norm (TensorFlow's l2_normalize ε = 1e-12)."""
    t = t - t.mean(dim=tuple(range(1, t.dim())), keepdim=True)
    norm = t.flatten(1).pow(2).sum(1).clamp_min(1e-12).sqrt()
    return t / norm.view(-1, *[1] * (t.dim() - 1))


def input_jacobian(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example ∇ₓ of the CE (``ce``) or of p_y (``true_prob``), with its graph for double backprop."""
    if kind == "ce":
        summed = F.cross_entropy(logits, y, reduction="sum")
    else:
        summed = logits.softmax(1).gather(1, y[:, None]).sum()
    (grad,) = torch.autograd.grad(summed, x, create_graph=True, materialize_grads=True)
    return grad


class Discriminator(nn.Module):
    """The official convolutional discriminator; one logit, > 0 meaning "an image"."""

    def __init__(self, in_shape: tuple[int, int, int], layers: int, base_channels: int):
        super().__init__()
        channels, height, width = in_shape
        blocks = []
        for i in range(layers):
            out = base_channels * 2**i
            blocks += [SameConv2d(channels, out, 4, stride=2), nn.BatchNorm2d(out, momentum=0.1, eps=1e-3),
                       nn.LeakyReLU(0.1)]
            channels, height, width = out, math.ceil(height / 2), math.ceil(width / 2)
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(channels * height * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(normalize_per_example(x)).flatten(1)).squeeze(1)


def _kernels(module: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _check(ok: bool, key: str, problem: str, allowed=None) -> None:
    if not ok:
        raise ConfigError(f"{KEY}.{key}", problem, allowed)


@register_defense("jarn")
class Jarn(Defense):
    """Params: ``lambda`` (λ_adv ≥ 0), ``noise_eps`` ([0, 1]), ``discriminator`` (mnist | svhn |
    cifar10), ``disc_every`` (≥ 1), ``disc_lr`` and ``adaptor_lr`` (> 0, before the schedule's
    factor), ``disc_optimizer`` (sgd | adam), ``start_fraction`` ([0, 1)), ``jacobian`` (ce |
    true_prob), ``aux_l2`` (≥ 0), ``adversarial`` (optional; JARN-AT1).

    Until ``start_epoch`` reports progress the defense stands at epoch 0: with ``start_fraction``
    > 0 it is plain noisy cross-entropy and owns no networks (``state_dict() == {}``)."""

    example_params: ClassVar[dict[str, Any]] = {
        "lambda": 1.0, "noise_eps": 0.03, "discriminator": "mnist", "disc_every": 2, "disc_lr": 0.01, "adaptor_lr": 0.01,
    }
    # a discriminator cross-entropy this large means logits beyond ±100: it has diverged
    divergence_limits: ClassVar[dict[str, float]] = {"disc_loss": 100.0}

    def __init__(self, *, lam: float, noise_eps: float, discriminator: str, disc_every: int, disc_lr: float,
                 adaptor_lr: float, disc_optimizer: str = "sgd", start_fraction: float = 0.75,
                 jacobian: str = "ce", aux_l2: float = 0.0, adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        _check(is_number(lam) and lam >= 0, "lambda", f"must be a number >= 0, got {lam!r}")
        _check(is_number(noise_eps) and 0 <= noise_eps <= 1, "noise_eps", f"must be in [0, 1], got {noise_eps!r}")
        _check(discriminator in DISCRIMINATORS, "discriminator", f"got {discriminator!r}", DISCRIMINATORS)
        _check(isinstance(disc_every, int) and not isinstance(disc_every, bool) and disc_every >= 1,
               "disc_every", f"must be an integer >= 1, got {disc_every!r}")
        _check(is_number(disc_lr) and disc_lr > 0, "disc_lr", f"must be a number > 0, got {disc_lr!r}")
        _check(is_number(adaptor_lr) and adaptor_lr > 0, "adaptor_lr", f"must be a number > 0, got {adaptor_lr!r}")
        _check(disc_optimizer in OPTIMIZERS, "disc_optimizer", f"got {disc_optimizer!r}", OPTIMIZERS)
        _check(is_number(start_fraction) and 0 <= start_fraction < 1, "start_fraction",
               f"must be in [0, 1), got {start_fraction!r}")
        _check(jacobian in JACOBIANS, "jacobian", f"got {jacobian!r}", JACOBIANS)
        _check(is_number(aux_l2) and aux_l2 >= 0, "aux_l2", f"must be a number >= 0, got {aux_l2!r}")
        self.lam, self.noise_eps, self.aux_l2 = float(lam), float(noise_eps), float(aux_l2)
        self.discriminator, self.disc_every, self.disc_optimizer = discriminator, disc_every, disc_optimizer
        self.disc_lr, self.adaptor_lr = float(disc_lr), float(adaptor_lr)
        self.start_fraction, self.jacobian = float(start_fraction), jacobian
        # before the trainer reports progress the defense stands at epoch 0
        self.active = self.start_fraction == 0
        self.lr_factor = 1.0
        self.steps = 0  # JARN steps taken; the discriminator is due when steps % disc_every == 0
        self.nets: dict[str, Any] | None = None
        self.pending: Mapping[str, Any] | None = None

    # ---- schedule and state ---------------------------------------------------------------

    def start_epoch(self, epoch: int, epochs: int, *, lr_factor: float) -> None:
        super().start_epoch(epoch, epochs, lr_factor=lr_factor)
        # the first epoch of the last (1 − start_fraction) of training; the last epoch at least
        first = min(math.ceil(self.start_fraction * epochs - 1e-9), epochs - 1)
        self.active = epoch >= first
        self.lr_factor = float(lr_factor)
        if self.nets is not None:
            self._apply_lr()

    def _apply_lr(self) -> None:
        for name, base in (("adaptor_optimizer", self.adaptor_lr), ("discriminator_optimizer", self.disc_lr)):
            for group in self.nets[name].param_groups:
                group["lr"] = base * self.lr_factor

    def state_dict(self) -> dict[str, Any]:
        if self.nets is None:
            return dict(self.pending or {})
        return {"in_shape": list(self.nets["in_shape"]), "steps": self.steps,
                **{name: self.nets[name].state_dict() for name in STATE_KEYS - {"in_shape", "steps"}}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state and set(state) != STATE_KEYS:
            raise ValueError(f"defense 'jarn': state keys {sorted(state)}, expected {sorted(STATE_KEYS)}")
        # the networks are rebuilt on the batch's device at the next step
        self.nets, self.pending = None, (dict(state) if state else None)
        self.steps = int(state["steps"]) if state else 0

    def _networks(self, x: torch.Tensor) -> dict[str, Any]:
        if self.nets is not None:
            return self.nets
        in_shape = tuple(x.shape[1:])
        if self.pending is not None and tuple(self.pending["in_shape"]) != in_shape:
            raise ValueError(f"defense 'jarn': saved networks are for inputs {self.pending['in_shape']}, got {in_shape}")
        seed = 0 if self.pending is not None else int(
            torch.randint(0, 2**62, (1,), generator=self._generator(), device=self.generator.device))
        # module initialisation draws from the global RNG: fork it so the model's dropout is unaffected
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adaptor = nn.Conv2d(in_shape[0], in_shape[0], 1)
            discriminator = Discriminator(in_shape, *DISCRIMINATORS[self.discriminator])
        if self.pending is not None:
            adaptor.load_state_dict(self.pending["adaptor"])
            discriminator.load_state_dict(self.pending["discriminator"])
        adaptor.to(device=x.device, dtype=x.dtype)
        discriminator.to(device=x.device, dtype=x.dtype).train()
        optimizer = torch.optim.SGD if self.disc_optimizer == "sgd" else torch.optim.Adam
        extra = {"momentum": MOMENTUM} if self.disc_optimizer == "sgd" else {}
        self.nets = {"in_shape": in_shape, "adaptor": adaptor, "discriminator": discriminator,
                     "adaptor_optimizer": torch.optim.SGD(adaptor.parameters(), lr=self.adaptor_lr, momentum=MOMENTUM),
                     "discriminator_optimizer": optimizer(discriminator.parameters(), lr=self.disc_lr, **extra)}
        if self.pending is not None:
            for name in ("adaptor_optimizer", "discriminator_optimizer"):
                self.nets[name].load_state_dict(self.pending[name])
        self.pending = None
        self._apply_lr()
        return self.nets

    def _generator(self) -> torch.Generator:
        if self.generator is None:
            raise ValueError("defense 'jarn' draws input noise and initialisations: set defense.generator")
        return self.generator

    # ---- one training step ----------------------------------------------------------------

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if self.noise_eps > 0:
            x = (x + uniform_noise(x, -self.noise_eps, self.noise_eps, self._generator())).clamp(0, 1)
        if not self.active:
            ce = F.cross_entropy(model(x), y)
            return ce, {"ce": ce.item(), "jarn_active": 0.0, "loss": ce.item()}
        return self._jarn_loss(model, x, y)

    def _jarn_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = x.detach().requires_grad_(True)
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        grad = input_jacobian(logits, x, y, self.jacobian)
        nets = self._networks(x)
        adaptor = nets["adaptor"]
        # copies: the adaptor is stepped below while the classifier's graph still needs these values
        weight, bias = (p.detach().clone().requires_grad_(True) for p in (adaptor.weight, adaptor.bias))
        adapted = torch.tanh(F.conv2d(normalize_per_example(grad), weight, bias))
        real = x.detach()
        if self.steps % self.disc_every == 0:
            self._discriminator_step(nets, adapted.detach(), real)
        d_xent, d_acc = self._discriminator_loss(nets["discriminator"], adapted, real)
        adv = -d_xent
        # one backward pass through the discriminator serves the adaptor's step and the classifier:
        # the classifier's loss carries ∂L_adv/∂adapted through a surrogate with L_adv's value and
        # gradient, so the trainer's backward pass does not reach the discriminator (nor leave
        # gradients on it)
        *adaptor_grads, adapted_grad = torch.autograd.grad(adv, (weight, bias, adapted), retain_graph=True)
        self._step(nets["adaptor_optimizer"], [adaptor.weight, adaptor.bias], adaptor_grads, [adaptor.weight])
        self.steps += 1
        adv_surrogate = adv.detach() + ((adapted - adapted.detach()) * adapted_grad).sum()
        loss = ce + self.lam * adv_surrogate
        return loss, {"ce": ce.item(), "adv": adv.item(), "disc_loss": d_xent.item(), "disc_acc": d_acc,
                      "jacobian_norm": grad.detach().flatten(1).norm(dim=1).mean().item(), "jarn_active": 1.0,
                      "loss": loss.item()}

    @staticmethod
    def _discriminator_loss(discriminator: nn.Module, fake: torch.Tensor,
                            real: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Mean binary CE over the concatenated [fake (0), real (1)] batch, and the accuracy."""
        inputs = torch.cat([fake, real])
        target = torch.cat([torch.zeros(len(fake)), torch.ones(len(real))]).to(inputs)
        out = discriminator(inputs)
        accuracy = ((out.detach() > 0).to(target) == target).float().mean().item()
        return F.binary_cross_entropy_with_logits(out, target), accuracy

    def _discriminator_step(self, nets: dict[str, Any], fake: torch.Tensor, real: torch.Tensor) -> None:
        discriminator = nets["discriminator"]
        d_xent, _ = self._discriminator_loss(discriminator, fake, real)
        params = list(discriminator.parameters())
        self._step(nets["discriminator_optimizer"], params, torch.autograd.grad(d_xent, params),
                   _kernels(discriminator))

    def _step(self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], grads, kernels) -> None:
        """One optimizer step from explicit gradients (+ aux_l2·w on kernels); no .grad left behind."""
        decayed = {id(k) for k in kernels}
        for param, grad in zip(params, grads):
            param.grad = grad + self.aux_l2 * param.detach() if id(param) in decayed else grad
        self.reduce_gradients(params)
        optimizer.step()
        for param in params:
            param.grad = None
