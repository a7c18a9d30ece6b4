"""Adversary critic: Matyasko & Chau, "Improved Network Robustness with Adversary Critic",
NeurIPS 2018 (arXiv 1810.12576, §4–5; official code github.com/aam-at/adversary_critic,
``train_critic.py``).

Each active step, for a batch (x, y) with the classifier's predictions ŷ and confidences c:

1. per-class running mean confidence C_k (EMA of the batch mean of c over the examples
   predicted k, decay 0.5, initialised to 1; classes absent from the batch keep theirs);
2. x_adv = A_f(x, t) with t the closest-boundary class of ŷ and target confidence C_t:
   ``high_confidence_path`` (Algorithm 1, ``steps`` = 5 unrolled iterations, straight-through
   stopping mask) keeps the graph, so x_adv depends on the classifier's parameters (eq. 5's
   implicit dependency, second-order terms);
3. one critic step (Adam β1 = 0.5): BCE(D_y(x), 1) + BCE(D_{ŷ_adv}(x_adv), 0) + λ_grad·[mean
   (‖∇ₓD_y(x)‖ − 1)² + mean (‖∇D_{ŷ_adv}(x_adv)‖ − 1)²] — eq. 4 with the gradient-norm penalty
   at the real and adversarial points separately, no interpolation (§4), ŷ_adv the class
   predicted at x_adv;
4. classifier loss (eq. 5 + eq. 6): NLL + λ·BCE(D_{ŷ_adv}(x_adv), 1) + λ_rec·mean
   ‖A_f(x_adv, ŷ; c) − x‖²₂, where the fooling and cycle terms use only the attacks that
   changed the prediction (official ``X_hat_filter``); the critic is updated first and is
   read after its update, as in the official loop. The cycle attack starts from x_adv
   detached, targets the original prediction with the original confidence (official).

Faithful to the paper/official code: class-conditional critic with one binary logit per class
(``robust.models.critic.AdversaryCritic``: MLP 1200-1200, leaky ReLU 0.2, noise std 0.1 on
the input and 0.5 on hidden layers), λ_rec = 1e-2, λ_grad = 10, 5 attack iterations, critic lr
1e-3 with Adam β1 = 0.5 halved with the classifier's schedule (``start_epoch``'s lr_factor), one
critic step per classifier step, ``warmup_epochs`` (1) of plain NLL training that only feeds
the confidence means ("we pretrain the classifier f for 1 epoch without any regularization").

Chosen / simplified:
- the attack of ``robust.attacks.high_confidence`` clips to [0, 1] and has no overshoot (the
  official training attack multiplies the perturbation by 1.05 and does not clip); its
  target confidence is detached;
- attack and prediction passes run with the classifier in eval mode (no effect on the
  paper's networks, which have neither dropout nor BatchNorm); the NLL pass uses the mode
  the trainer left;
- the critic sees every attacked example of the batch, labelled by its prediction at x_adv
  (official); the official code updates the confidence EMA once per graph evaluation (twice
  per step), here once per step;
- the official pre-training adds 5e-6·L2 to the NLL (the paper says "without any
  regularization"): not added here (the trainer's ``l2`` applies to every epoch).
Randomness (critic noise, critic initialisation) comes from ``self.generator`` only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robust.attacks.base import parameters_frozen
from robust.attacks.high_confidence import closest_boundary_target, high_confidence_path
from robust.defenses.base import KEY, Defense, is_number, register_defense
from robust.errors import ConfigError
from robust.models.critic import AdversaryCritic

BETAS = (0.5, 0.999)  # official: tf.train.AdamOptimizer(beta1=0.5), default beta2


def check_number(name: str, value: object, *, low: float = 0.0, strict: bool = False,
                 high: float | None = None) -> float:
    """A finite number ≥ low (> low if ``strict``) and < high; ConfigError naming defense.<name> otherwise."""
    if not is_number(value) or value < low or (strict and value == low) or (high is not None and value >= high):
        bound = f"{'>' if strict else '>='} {low:g}" + ("" if high is None else f" and < {high:g}")
        raise ConfigError(f"{KEY}.{name}", f"must be a number {bound}, got {value!r}")
    return float(value)


def check_int(name: str, value: object, *, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{KEY}.{name}", f"must be an integer >= {low}, got {value!r}")
    return value


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode with trainable parameters (the attack must stay differentiable); modes restored."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def class_logit(critic: AdversaryCritic, x: torch.Tensor, cls: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
    """D_cls(x): each example's binary logit for its class (N,)."""
    return critic(x, generator).gather(1, cls.unsqueeze(1)).squeeze(1)


def logit_and_penalty(critic: AdversaryCritic, x: torch.Tensor, cls: torch.Tensor,
                      generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """D_cls(x) and the gradient-norm penalty mean_i (‖∇ₓD_cls(x_i)‖₂ − 1)² at exactly these points."""
    x = x.detach().requires_grad_(True)
    z = class_logit(critic, x, cls, generator)
    (grad,) = torch.autograd.grad(z.sum(), x, create_graph=True)  # examples do not interact
    return z, (torch.linalg.vector_norm(grad.flatten(1), dim=1) - 1).square().mean()


def critic_objective(critic: AdversaryCritic, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                     y_adv: torch.Tensor, *, lambda_grad: float,
                     generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 4 as binary cross-entropies plus λ_grad times the penalties at real and adversarial points."""
    z_data, penalty_data = logit_and_penalty(critic, x, y, generator)
    z_adv, penalty_adv = logit_and_penalty(critic, x_adv, y_adv, generator)
    bce_data = F.binary_cross_entropy_with_logits(z_data, torch.ones_like(z_data))
    bce_adv = F.binary_cross_entropy_with_logits(z_adv, torch.zeros_like(z_adv))
    penalty = penalty_data + penalty_adv
    loss = bce_data + bce_adv + lambda_grad * penalty
    parts = {"critic_data": bce_data, "critic_adv": bce_adv, "critic_penalty": penalty,
             "critic_acc_data": (z_data > 0).float().mean(), "critic_acc_adv": (z_adv < 0).float().mean()}
    return loss, parts


def fool_loss(critic: AdversaryCritic, x_adv: torch.Tensor, y_adv: torch.Tensor, success: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
    """BCE(D_{y_adv}(x_adv), 1) over the successful attacks; 0 when none succeeded. The critic stays fixed."""
    if not success.any():
        return x_adv.new_zeros(())
    with parameters_frozen(critic):
        z = class_logit(critic, x_adv[success], y_adv[success], generator)
    return F.binary_cross_entropy_with_logits(z, torch.ones_like(z))


def cycle_loss(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """mean_i ‖x_rec_i − x_i‖²₂ (eq. 6); 0 for an empty batch."""
    if len(x) == 0:
        return x.new_zeros(())
    return (x_rec - x).flatten(1).square().sum(1).mean()


@register_defense("critic")
class AdversaryCriticDefense(Defense):
    """Params: ``lambda`` (→ ``lam``, required: 0.5 FC, 0.1 LeNet-5), ``lambda_rec`` (1e-2),
    ``lambda_grad`` (10), ``steps`` (5), ``critic_lr`` (1e-3), ``critic_width`` (1200),
    ``input_noise`` (0.1), ``hidden_noise`` (0.5), ``confidence_decay`` (0.5), ``ste_slope`` (1),
    ``warmup_epochs`` (1), ``adversarial`` (optional)."""

    example_params: ClassVar[dict[str, Any]] = {"lambda": 0.5, "critic_width": 32}
    divergence_limits: ClassVar[dict[str, float]] = {"critic_loss": 1e4}

    def __init__(self, *, lam: float, lambda_rec: float = 1e-2, lambda_grad: float = 10.0, steps: int = 5,
                 critic_lr: float = 1e-3, critic_width: int = 1200, input_noise: float = 0.1,
                 hidden_noise: float = 0.5, confidence_decay: float = 0.5, ste_slope: float = 1.0,
                 warmup_epochs: int = 1, adversarial: dict | None = None):
        super().__init__(adversarial=adversarial)
        self.lam = check_number("lambda", lam)
        self.lambda_rec = check_number("lambda_rec", lambda_rec)
        self.lambda_grad = check_number("lambda_grad", lambda_grad)
        self.steps = check_int("steps", steps, low=1)
        self.critic_lr = check_number("critic_lr", critic_lr, strict=True)
        self.critic_width = check_int("critic_width", critic_width, low=1)
        self.input_noise = check_number("input_noise", input_noise)
        self.hidden_noise = check_number("hidden_noise", hidden_noise)
        self.confidence_decay = check_number("confidence_decay", confidence_decay, high=1.0)
        self.ste_slope = check_number("ste_slope", ste_slope)
        self.warmup_epochs = check_int("warmup_epochs", warmup_epochs, low=0)
        self.critic: AdversaryCritic | None = None
        self.critic_optimizer: torch.optim.Optimizer | None = None
        self.confidence: torch.Tensor | None = None  # C_k, the per-class running mean confidence
        self.epoch: int | None = None  # None outside the trainer: every step is a critic step
        self.lr_factor = 1.0
        self._pending: Mapping[str, Any] | None = None  # critic state loaded before the critic exists

    # ---- trainer hooks ----------------------------------------------------------------

    def start_epoch(self, epoch: int, epochs: int, *, lr_factor: float) -> None:
        super().start_epoch(epoch, epochs, lr_factor=lr_factor)
        self.epoch, self.lr_factor = epoch, lr_factor
        if self.critic_optimizer is not None:
            self._set_lr()

    def state_dict(self) -> dict[str, Any]:
        if self.confidence is None:
            return {}
        state: dict[str, Any] = {"confidence": self.confidence.detach().cpu().clone()}
        if self.critic is not None:
            state["critic"] = self.critic.state_dict()
            state["critic_optimizer"] = self.critic_optimizer.state_dict()
            state["critic_shape"] = [self.critic.hidden[0].in_features, self.critic.head.out_features]
        elif self._pending is not None:
            state.update({k: v for k, v in self._pending.items() if k != "confidence"})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = set(state) - {"confidence", "critic", "critic_optimizer", "critic_shape"}
        if unknown:
            raise ValueError(f"defense {self.name!r}: unexpected state keys {sorted(unknown)}")
        self.confidence = None if "confidence" not in state else state["confidence"].detach().clone()
        self.critic, self.critic_optimizer = None, None
        self._pending = dict(state) if "critic" in state else None

    # ---- one step -----------------------------------------------------------------------

    @property
    def warming_up(self) -> bool:
        return self.epoch is not None and self.epoch < self.warmup_epochs

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        conf, pred = logits.detach().softmax(dim=1).max(dim=1)
        self._update_confidence(conf, pred, logits.shape[1])
        if self.warming_up:
            return ce, {"ce": ce.item(), "target_confidence": self.confidence.mean().item(), "loss": ce.item()}

        self._ensure_critic(x, logits.shape[1])
        with eval_mode(model):
            target = closest_boundary_target(model, x, pred)
            target_confidence = self.confidence.to(x.device)[target]
            x_adv, _ = high_confidence_path(model, x, target, confidence=target_confidence, steps=self.steps,
                                            ste_slope=self.ste_slope)
            with torch.no_grad():
                pred_adv = model(x_adv).argmax(dim=1)
        success = pred_adv != pred  # only attacks that changed the prediction (official X_hat_filter)
        critic_logs = self._critic_step(x, y, x_adv.detach(), pred_adv)

        gan = fool_loss(self.critic, x_adv, pred_adv, success, self.generator)
        cycle = self._cycle(model, x[success], x_adv[success].detach(), pred[success], conf[success])
        loss = ce + self.lam * gan + self.lambda_rec * cycle
        adv_l2 = torch.linalg.vector_norm((x_adv.detach() - x)[success].flatten(1), dim=1)
        logs = {"ce": ce.item(), "gan": gan.item(), "cycle": cycle.item(),
                "attack_success": success.float().mean().item(),
                "adv_l2": adv_l2.mean().item() if success.any() else 0.0,
                "target_confidence": target_confidence.mean().item(), **critic_logs, "loss": loss.item()}
        return loss, logs

    def _cycle(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, source: torch.Tensor,
               confidence: torch.Tensor) -> torch.Tensor:
        """‖A_f(x_adv, ŷ; c) − x‖² over the given (successful) examples; the attack keeps its graph."""
        if len(x) == 0:
            return cycle_loss(x, x)
        with eval_mode(model):
            x_rec, _ = high_confidence_path(model, x_adv, source, confidence=confidence, steps=self.steps,
                                            ste_slope=self.ste_slope)
        return cycle_loss(x, x_rec)

    def _update_confidence(self, conf: torch.Tensor, pred: torch.Tensor, num_classes: int) -> None:
        if self.confidence is None:
            self.confidence = torch.ones(num_classes, device=conf.device, dtype=torch.float32)
        self.confidence = self.confidence.to(conf.device)
        # one-hot sums rather than bincount/index_add, which are nondeterministic on CUDA
        onehot = F.one_hot(pred, num_classes).float()
        counts, sums = onehot.sum(dim=0), conf.float() @ onehot
        batch_mean = torch.where(counts > 0, sums / counts.clamp_min(1), self.confidence)
        self.confidence = self.confidence_decay * self.confidence + (1 - self.confidence_decay) * batch_mean

    def _critic_step(self, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                     y_adv: torch.Tensor) -> dict[str, float]:
        loss, parts = critic_objective(self.critic, x, y, x_adv, y_adv, lambda_grad=self.lambda_grad,
                                       generator=self.generator)
        params = list(self.critic.parameters())
        # autograd.grad: nothing of this update reaches the classifier's .grad
        grads = torch.autograd.grad(loss, params)
        for param, grad in zip(params, grads):
            param.grad = grad
        self.reduce_gradients(params)
        self.critic_optimizer.step()
        self.critic_optimizer.zero_grad(set_to_none=True)
        return {"critic_loss": loss.item(), **{name: value.item() for name, value in parts.items()}}

    def _ensure_critic(self, x: torch.Tensor, num_classes: int) -> None:
        if self.critic is not None:
            return
        pending = self._pending
        in_features = x[0].numel()
        if pending is not None and list(pending["critic_shape"]) != [in_features, num_classes]:
            raise ValueError(f"defense {self.name!r}: loaded critic expects (features, classes) "
                             f"{pending['critic_shape']}, got {[in_features, num_classes]}")
        # a loaded critic overwrites its weights: its init must not consume the run's generator
        init = self.generator if pending is None else torch.Generator(device=x.device).manual_seed(0)
        if init is None:
            raise ValueError(f"defense {self.name!r} needs a torch.Generator (defense.generator) to build its critic")
        self.critic = AdversaryCritic(in_features, num_classes, hidden=[self.critic_width] * 2,
                                      input_noise=self.input_noise, hidden_noise=self.hidden_noise,
                                      init_generator=init, device=x.device, dtype=x.dtype)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.critic_lr, betas=BETAS)
        if pending is not None:
            self.critic.load_state_dict(pending["critic"])
            self.critic_optimizer.load_state_dict(pending["critic_optimizer"])
            self._pending = None
        self._set_lr()

    def _set_lr(self) -> None:
        for group in self.critic_optimizer.param_groups:
            group["lr"] = self.critic_lr * self.lr_factor
