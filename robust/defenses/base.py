"""The defense API: a named training method, its validated hyper-parameters, one training step.

A defense is a class registered in ``DEFENSES``; its keyword-only ``__init__`` arguments *are*
its hyper-parameters. ``build_defense`` reads them from the class signature (one generic
mechanism: names, required keys, and types from the annotations); value checks (λ ≥ 0, …)
live in the constructors, so a defense built from Python is checked the same way. Params keys
that are Python keywords map to another argument name: ``lambda`` → ``lam``.

The trainer owns the loop::

    model.train(); opt.zero_grad()
    loss, logs = defense.training_step(model, x, y)
    loss.backward(); opt.step()

Adversarial examples mixed into the batch (shared by every defense, params key
``adversarial: {fraction, attack: {name, <settings>}}``) follow Jakubovitz & Giryes 2018
(arXiv 1803.08680), §4 and Appendix F: perturbed examples make up a chosen percentage of the
training mini-batch (10–50% of 500 there, generated with DeepFool). Chosen here: the first
round(fraction·B) examples of the batch (Python's round, half to even) are *replaced* by their
adversarial versions, so the batch size stays B; the loader shuffles, so which examples is
random. The attack runs on the current model in eval mode (dropout off, BatchNorm running
statistics) with parameter gradients off; both are restored afterwards, even on errors. The
cross-entropy sees the whole mixed batch; the gradient penalties (Jacobian, input gradient,
cross-Lipschitz) see only its unperturbed examples (``Defense.unperturbed``): "the optimal
results are obtained by applying the Jacobian regularization on the original input samples ...
and not on perturbed input samples" (Jakubovitz & Giryes §5). Those defenses
(``penalizes_originals``) require ``fraction`` < 1 and keep at least one original example in
every batch.

ε warm-up (optional ``adversarial.warmup_epochs: W``): the attack's ``eps`` and ``step_size``
are scaled by min(1, e/W) in epoch e (0-based): the first epoch trains on clean examples only
(no attack runs), then ε rises linearly and reaches its value in epoch W; the step rule (step ∝ ε)
is kept. Not in Jakubovitz & Giryes or Madry et al., who attack at the full ε from the first step;
short schedules need it: PGD training at MNIST's ε = 0.3 (and even at 0.1) from the first step
leaves a freshly initialised net near chance for hundreds of steps (a linear ε ramp from 0 as in
Gowal et al. 2018, arXiv 1810.12715, and later short-schedule adversarial training). Off unless
stated.

Mixed precision (``supports_amp``): with the training phase's ``amp: true`` the trainer runs
``training_step`` under bf16 autocast (``robust.train``). A defense allows it only when its
step is first-order: plain forward and backward passes, and attacks that differentiate with
respect to the input alone. Double backpropagation (the Jacobian, input-gradient,
cross-Lipschitz, margin, SGR/GN and JARN regularisers, the critic's unrolled attack and
gradient penalty) differentiates bf16 gradients again, and VAT's finite difference (ξ = 1e-6
in pixel units) is far below bf16's resolution of the input (about 4e-3 near 1): those keep
``supports_amp = False`` and the trainer refuses ``amp`` for them.

Several processes (``robust.distributed``): defenses that step optimizers of their own call
``reduce_gradients`` on those parameters right before each step, so the extra networks get
the same averaged update on every process; in a single process it does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from robust.attacks import check_settings, run_attack
from robust.attacks.base import parameters_frozen
from robust.errors import ConfigError
from robust.params import require_number
from robust.registry import Registry

KEY = "defense"  # params prefix named in error messages
DEFENSES: Registry = Registry("defense", f"{KEY}.name")

# params keys that cannot be Python argument names
ARGUMENT_FOR_KEY = {"lambda": "lam"}
KEY_FOR_ARGUMENT = {arg: key for key, arg in ARGUMENT_FOR_KEY.items()}



def is_number(value: object) -> bool:
    # bool is an int subclass; `lambda: true` in YAML is a typo, not a number
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class AdversarialMix:
    """Validated ``adversarial`` params: replace ``fraction`` of each batch by ``attack`` examples."""

    fraction: float
    attack: str
    settings: Mapping[str, Any]
    warmup_epochs: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], key: str = f"{KEY}.adversarial") -> AdversarialMix:
        if not isinstance(params, Mapping):
            raise ConfigError(key, f"must be a mapping with keys fraction and attack, got {params!r}")
        _check_keys(params, {"fraction", "attack", "warmup_epochs"}, key, required={"fraction", "attack"})
        fraction = params["fraction"]
        if not is_number(fraction) or not 0 < fraction <= 1:
            raise ConfigError(f"{key}.fraction", f"must be a number in (0, 1], got {fraction!r}")
        attack = params["attack"]
        if not isinstance(attack, Mapping) or "name" not in attack:
            raise ConfigError(f"{key}.attack", f"must be a mapping with a name and its settings, got {attack!r}")
        # checked now rather than at the first training step; values are checked by the attack itself
        settings = {k: v for k, v in attack.items() if k != "name"}
        check_settings(attack["name"], settings, key=f"{key}.attack")
        warmup = params.get("warmup_epochs")
        if warmup is not None:
            require_number(warmup, f"{key}.warmup_epochs", low=1, integer=True)
            if "eps" not in settings:
                raise ConfigError(f"{key}.warmup_epochs", f"ramps the attack's eps, which {attack['name']!r} is not given")
        return cls(float(fraction), attack["name"], types.MappingProxyType(settings), warmup)

    def eps_scale(self, epoch: int) -> float:
        """The warm-up's factor on ``eps`` and ``step_size`` in epoch ``epoch`` (0-based); 0 = a clean epoch."""
        return 1.0 if self.warmup_epochs is None else min(1.0, epoch / self.warmup_epochs)

    def scaled_settings(self, scale: float) -> Mapping[str, Any]:
        if scale == 1.0:
            return self.settings
        return {k: v * scale if k in ("eps", "step_size") else v for k, v in self.settings.items()}


def _check_keys(params: Mapping[str, Any], allowed: set[str], key: str, required: set[str] | None = None) -> None:
    for k in params:
        if k not in allowed:
            raise ConfigError(f"{key}.{k}", "unknown key", allowed)
    for k in sorted(allowed if required is None else required):
        if k not in params:
            raise ConfigError(f"{key}.{k}", "required key is missing")


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters while generating examples; every flag restored on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with parameters_frozen(model):
            yield
    finally:
        # per module, so a deliberately mixed state (e.g. frozen BatchNorm) survives
        for module, training in modes:
            module.training = training


class Defense:
    """Base class: adversarial mixing, then the subclass's ``loss`` on the mixed batch."""

    name: ClassVar[str]
    # smallest valid params (without "name"): documentation and the registry-generated tests
    example_params: ClassVar[dict[str, Any]] = {}
    # logged terms whose magnitude means the run diverged (e.g. an exploding discriminator loss);
    # the trainer stops the stage naming the term. Non-finite terms always stop it.
    divergence_limits: ClassVar[dict[str, float]] = {}
    # whether the trainer may run training_step under bf16 autocast (module docstring)
    supports_amp: ClassVar[bool] = False
    # whether ``loss`` adds a penalty over the batch's original examples only (``unperturbed``)
    penalizes_originals: ClassVar[bool] = False
    # set by the trainer of a multi-process run: averages the given parameters' .grad over the processes
    gradient_sync: Callable[[list[torch.Tensor]], None] | None = None

    def __init__(self, *, adversarial: dict | None = None):
        self.adversarial = None if adversarial is None else AdversarialMix.from_params(adversarial)
        if self.penalizes_originals and self.adversarial is not None and self.adversarial.fraction >= 1:
            raise ConfigError(f"{KEY}.adversarial.fraction", f"must be < 1 for defense {self.name!r}: its penalty "
                              f"is computed on the batch's original examples, got {self.adversarial.fraction!r}")
        # the ε warm-up's factor in the current epoch (set by start_epoch; 1 without a warm-up)
        self.adversarial_scale = 1.0
        # set by the trainer before training; every random draw of the defense uses it
        self.generator: torch.Generator | None = None
        # how many leading examples of the batch ``loss`` receives are adversarial (training_step)
        self.n_perturbed = 0

    def training_step(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss with its graph attached, and float logs, for one batch."""
        x, self.n_perturbed = self.mix_adversarial(model, x, y)
        loss, logs = self.loss(model, x, y)
        if self.adversarial is not None:
            logs["adv_fraction"] = self.n_perturbed / len(x)
            if self.adversarial.warmup_epochs is not None:
                logs["adv_eps"] = float(self.adversarial.settings["eps"] * self.adversarial_scale)
        return loss, logs

    def mix_adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The batch with its first round(fraction·B) examples replaced by adversarial ones."""
        n_adv = 0 if self.adversarial is None else round(self.adversarial.fraction * len(x))
        if self.penalizes_originals:
            n_adv = min(n_adv, len(x) - 1)
        if n_adv == 0 or self.adversarial_scale == 0:  # the first epoch of an ε warm-up is clean
            return x, 0
        mix = self.adversarial
        with attack_mode(model):
            x_adv = run_attack(mix.attack, model, x[:n_adv], y[:n_adv], generator=self.generator,
                               **mix.scaled_settings(self.adversarial_scale))
        return torch.cat([x_adv, x[n_adv:]]), n_adv

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def unperturbed(self, per_example: torch.Tensor) -> torch.Tensor:
        """The entries of a per-example tensor of the batch ``loss`` receives that belong to its
        original examples (all of them without adversarial mixing)."""
        return per_example[self.n_perturbed:]

    def start_epoch(self, epoch: int, epochs: int, *, lr_factor: float) -> None:
        """Called by the trainer before epoch ``epoch`` (0-based) of ``epochs``.

        ``lr_factor`` is the model's current learning rate over its initial one (the profile's
        milestones); defenses with their own optimizers scale theirs by it, and defenses that
        switch on late in training (JARN's last 25%) read the progress from ``epoch / epochs``.
        Subclasses that override it call it too: it sets the mixed attack's ε for the epoch.
        """
        if self.adversarial is not None:
            self.adversarial_scale = self.adversarial.eps_scale(epoch)

    def reduce_gradients(self, params: Iterable[torch.Tensor]) -> None:
        """Average the ``.grad`` of the defense's own ``params`` over the processes of a distributed run.

        Call it right before stepping an optimizer the defense owns; a no-op in one process.
        """
        if self.gradient_sync is not None:
            self.gradient_sync(list(params))

    def state_dict(self) -> dict[str, Any]:
        """Extra networks and optimizers of the defense; none in the base class."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise ValueError(f"defense {self.name!r} has no state, got keys {sorted(state)}")


def register_defense(name: str):
    """Class decorator: sets ``cls.name`` and adds the class to ``DEFENSES``."""

    def decorate(cls: type[Defense]) -> type[Defense]:
        # build_defense passes hyper-parameters by keyword: anything else could not be set from params
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        if any(p.kind is not inspect.Parameter.KEYWORD_ONLY for p in params):
            raise TypeError(f"defense {name!r}: hyper-parameters must be keyword-only: def __init__(self, *, ...)")
        cls.name = name
        return DEFENSES.register(name)(cls)

    return decorate


def hyperparameters(cls: type[Defense]) -> dict[str, inspect.Parameter]:
    """Params key → constructor parameter, read from the class signature."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {KEY_FOR_ARGUMENT.get(p.name, p.name): p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _matches(value: object, annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_matches(value, part) for part in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return is_number(value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation in (int, str):
        return isinstance(value, annotation) and not isinstance(value, bool)
    if annotation is Any:
        return True
    return isinstance(value, typing.get_origin(annotation) or annotation)


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(part) for part in typing.get_args(annotation))
    names = {type(None): "null", float: "a number", int: "an integer", str: "a string", bool: "true or false",
             dict: "a mapping"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def build_defense(config: Mapping[str, Any], key: str = KEY) -> Defense:
    """Build the defense named by ``config["name"]`` from the rest of ``config`` (its params).

    Unknown names or keys, missing required keys and wrongly typed values raise
    ``ConfigError`` naming the params key (``<key>.<setting>``, e.g. ``defense.lambda``) before
    anything is built.
    """
    try:
        return _build_defense(config)
    except ConfigError as error:
        raise error.under(KEY, key) from None


def _build_defense(config: Mapping[str, Any]) -> Defense:
    if not isinstance(config, Mapping) or "name" not in config:
        raise ConfigError(f"{KEY}.name", "required key is missing", DEFENSES.names())
    cls = DEFENSES.get(config["name"])
    params = hyperparameters(cls)
    hints = typing.get_type_hints(cls.__init__)
    kwargs = {}
    for key, value in config.items():
        if key == "name":
            continue
        if key not in params:
            raise ConfigError(f"{KEY}.{key}", f"unknown key for defense {cls.name!r}", ["name", *params])
        annotation = hints.get(params[key].name, Any)
        if not _matches(value, annotation):
            raise ConfigError(f"{KEY}.{key}", f"expected {_describe(annotation)}, got {value!r}")
        kwargs[params[key].name] = value
    for key, param in params.items():
        if param.default is inspect.Parameter.empty and key not in config:
            raise ConfigError(f"{KEY}.{key}", f"required by defense {cls.name!r} and missing")
    return cls(**kwargs)
