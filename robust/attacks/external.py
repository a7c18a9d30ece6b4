"""Attacks run through kept libraries, not rewritten: AutoAttack and Square (torchattacks), Foolbox's Boundary
and B&B.

- ``autoattack``: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble
  of diverse parameter-free attacks", arXiv 2003.01690, version "standard": APGD-CE, APGD-T,
  FAB-T and Square, each run only on the points the previous ones left robust. Built from
  torchattacks' APGD, APGDT, FAB, Square and MultiAttack the way ``torchattacks.AutoAttack``
  builds it, but with the budgets of the authors' code (fra31/auto-attack) where torchattacks'
  defaults differ: ``steps`` = 100 iterations for APGD-CE, APGD-T and FAB-T (torchattacks: 10),
  at most 9 target classes (K − 1 below 10 classes, K read from the model's output; torchattacks
  assumes 10 classes), ``queries`` = 5,000 for Square without its rescaled schedule, one restart
  each. Lower ``steps`` and ``queries`` are for quick runs only.
- ``square``: Andriushchenko et al., "Square Attack: a query-efficient black-box adversarial attack
  via random search", arXiv 1912.00049: AutoAttack's score-based member alone (torchattacks'
  Square, the same ``queries``), which reads no gradients and so checks PGD for masked ones.
- ``boundary``: Brendel, Rauber & Bethge, "Decision-Based Adversarial Attacks", arXiv 1712.04248,
  Foolbox 3's ``BoundaryAttack`` (L2, its only norm), 5,000 steps as in AFD Table A3
  (Bashivan et al., arXiv 2006.04621), Foolbox's other defaults.
- ``brendel_bethge``: Brendel et al., "Accurate, reliable and fast robustness evaluation",
  arXiv 1907.01003, Foolbox 3's L∞/L2/L1 ``BrendelBethgeAttack``, Foolbox's defaults (1,000 steps).

Accuracy at ε, not minimal perturbation: AFD Table A3 reports robust accuracy, so both Foolbox
attacks take an ``eps``. Foolbox minimises the perturbation and its ``epsilons`` argument
projects the result onto the ε-ball (rescaling towards x under L2, clipping under L∞); that
projected point is returned, so a point is robust unless the projected point is misclassified.
Table A3 gives ε = 2 for Boundary and neither norm nor ε for B&B. Its B&B accuracies sit next to
AutoAttack's (L∞, ε = 0.3 on MNIST) and far above Boundary's at L2 ε = 2, which points to L∞ B&B
at the AutoAttack ε: ``norm`` defaults to "linf" on that reading, not on a stated value.

Starting points of the Foolbox attacks: Foolbox's own initialisation, uniform noise blended into
x until the model misclassifies it (``LinearSearchBlendedUniformNoiseAttack``, each attack's
default number of blending steps). A model often puts all uniform noise into one class, so the
noise never leaves that class's points, and Foolbox then aborts the whole batch; such points
start instead from the closest (L2) point of the batch that the model assigns another class.
Points the model already misclassifies, and points without any adversarial start (a batch
classified into one class), are returned unchanged.

The common contract, kept around both libraries:
- randomness: torchattacks seeds the global RNG with its own ``seed`` argument and Foolbox draws
  from the global RNG, so one integer drawn from ``generator`` seeds them inside
  ``torch.random.fork_rng``, which restores the global CPU and CUDA RNG states afterwards;
- mode: torchattacks switches the model to eval mode and back with a blanket ``train()``, which
  flattens mixed modes; both libraries get the model behind a facade whose ``train``/``eval`` do
  nothing, so every submodule keeps the caller's mode;
- gradients: FAB and Foolbox backpropagate into the parameters, so their ``requires_grad`` flags
  are off during the attack and restored afterwards;
- the result is projected onto the ε-ball and the [0, 1] box once more, removing rounding only.

torchattacks is a dependency of robust. Foolbox (B&B also needs numba) is an optional extra,
imported when an attack runs; a missing one raises ``MissingExtra``, and
``missing_extra(name)`` says so beforehand.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

import torch
from torch import nn

from robust.attacks import ATTACKS
from robust.attacks.base import (
    check_choice,
    check_eps,
    check_inputs,
    check_positive_int,
    clip_box,
    project_l1,
    project_l2,
    project_linf,
)
from robust.errors import MissingExtra

log = logging.getLogger(__name__)

AUTOATTACK_NORMS = {"linf": "Linf", "l2": "L2"}
MAX_TARGET_CLASSES = 9  # APGD-T and FAB-T target the 9 most likely other classes (fra31/auto-attack)
BRENDEL_BETHGE_NORMS = {"linf": "LinfinityBrendelBethgeAttack", "l2": "L2BrendelBethgeAttack",
                        "l1": "L1BrendelBethgeAttack"}
PROJECTIONS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "linf": project_linf, "l2": project_l2, "l1": project_l1,
}
# packages each attack imports, and the pip extra of robust that installs each package
REQUIRES: dict[str, tuple[str, ...]] = {
    "boundary": ("foolbox",), "brendel_bethge": ("foolbox", "numba"),
}
EXTRA_OF = {"foolbox": "foolbox", "numba": "foolbox"}


def missing_extra(attack: str) -> MissingExtra | None:
    """The ``MissingExtra`` that ``attack`` would raise, found without importing anything; None if it can run."""
    for package in REQUIRES.get(attack, ()):
        if importlib.util.find_spec(package) is None:
            return MissingExtra(f"attack {attack!r}", package, EXTRA_OF[package])
    return None


def _require(attack: str) -> ModuleType:
    """Import the packages ``attack`` needs and return the first; a missing one raises ``MissingExtra``."""
    modules = []
    for package in REQUIRES[attack]:
        try:
            modules.append(importlib.import_module(package))
        except ImportError as error:
            raise MissingExtra(f"attack {attack!r}", package, EXTRA_OF[package]) from error
    return modules[0]


class _CallerMode(nn.Module):
    """The attacked model behind a facade whose ``train``/``eval`` leave every submodule's mode alone.

    Inputs are cast to the caller's ``dtype`` and logits back to the input's: torchattacks' FAB
    casts its inputs to float32 and then needs float32 logits.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.training = False  # what the libraries read; the wrapped modules keep their own flags

    def train(self, mode: bool = True) -> _CallerMode:
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).to(x.dtype)


def _seed_from(generator: torch.Generator | None, attack: str) -> int:
    if generator is None:
        raise ValueError(f"{attack}: needs an explicit seeded torch.Generator (for its random draws), "
                         f"got {generator!r}")
    return int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))


@contextmanager
def _library_call(model: nn.Module, x: torch.Tensor, seed: int) -> Iterator[_CallerMode]:
    """Seeded global RNG (restored on exit), frozen parameters, and the mode-keeping facade."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        try:
            for p in params:
                p.requires_grad_(False)
            yield _CallerMode(model, x.dtype)
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)


def _into_budget(x: torch.Tensor, x_adv: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    return clip_box(x + PROJECTIONS[norm](x_adv.to(x.dtype) - x, eps)).detach()


# ---------------------------------------------------------------- AutoAttack (torchattacks)

@ATTACKS.register("autoattack")
def autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 100,
    queries: int = 5000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Standard AutoAttack at radius ``eps`` in ``norm`` ("linf" or "l2"); ``generator`` seeds it."""
    steps = check_positive_int(steps, "steps")
    queries = check_positive_int(queries, "queries")
    import torchattacks as ta  # noqa: PLC0415  (heavy import, only when AutoAttack runs)

    def build(facade: nn.Module, common: dict, n_classes: int):
        return ta.MultiAttack([
            ta.APGD(facade, loss="ce", steps=steps, **common),
            ta.APGDT(facade, steps=steps, n_classes=n_classes, **common),
            ta.FAB(facade, steps=steps, multi_targeted=True, n_classes=n_classes, **common),
            ta.Square(facade, n_queries=queries, resc_schedule=False, **common),
        ])

    return _torchattacks_run("autoattack", build, model, x, y, eps=eps, norm=norm, generator=generator)


@ATTACKS.register("square")
def square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    queries: int = 5000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The Square Attack alone (Andriushchenko et al., arXiv 1912.00049; AutoAttack's last member).

    It reads only the model's scores, never its gradients: where it beats PGD, PGD's gradients are
    masked (Carlini et al., arXiv 1902.06705, §5), which the sanity check ``pgd_le_gradient_free``
    reports.
    """
    queries = check_positive_int(queries, "queries")
    import torchattacks as ta  # noqa: PLC0415

    def build(facade: nn.Module, common: dict, n_classes: int):
        return ta.Square(facade, n_queries=queries, resc_schedule=False, **common)

    return _torchattacks_run("square", build, model, x, y, eps=eps, norm=norm, generator=generator)


def _torchattacks_run(name: str, build: Callable[[nn.Module, dict, int], nn.Module], model: nn.Module,
                      x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
                      generator: torch.Generator | None) -> torch.Tensor:
    """Run the torchattacks attack ``build(facade, common settings, classes to target)`` under the contract."""
    norm = check_choice(norm, "norm", AUTOATTACK_NORMS)
    eps = check_eps(eps, norm=norm)
    check_inputs(x, y)
    x = x.detach()
    if not len(x):
        return x.clone()
    seed = _seed_from(generator, name)
    with torch.no_grad():
        n_classes = model(x).shape[1]
    # torchattacks' APGD-T and FAB-T target n_classes − 1 classes
    n_classes = min(n_classes, MAX_TARGET_CLASSES + 1)
    with _library_call(model, x, seed) as facade:
        common = {"norm": AUTOATTACK_NORMS[norm], "eps": eps, "seed": seed, "n_restarts": 1}
        # FAB works in float32 only; the facade feeds the model its own dtype
        x_adv = build(facade, common, n_classes)(x.float(), y)
    return _into_budget(x, x_adv, eps, norm)


# ---------------------------------------------------------------- Foolbox: Boundary, Brendel & Bethge

def _batch_starts(x_todo: torch.Tensor, y_todo: torch.Tensor, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """For each point, the closest batch point the model puts in another class (NaN rows where none is)."""
    dist = torch.cdist(x_todo.flatten(1), x.flatten(1))
    dist = dist.masked_fill(pred.unsqueeze(0) == y_todo.unsqueeze(1), float("inf"))
    nearest = dist.argmin(dim=1)
    starts = x[nearest].clone()
    starts[dist.gather(1, nearest.unsqueeze(1)).squeeze(1).isinf()] = float("nan")
    return starts


def _starting_points(fb, init, facade, fmodel, x, y, todo, name):
    """Adversarial starts for the points ``todo`` and the subset of ``todo`` that has one."""
    pred = _predict(facade, x)
    x_todo, y_todo = x[todo], y[todo]
    with warnings.catch_warnings():  # failures are handled below, not only warned about
        warnings.simplefilter("ignore")
        starts = init.run(fmodel, x_todo, fb.criteria.Misclassification(y_todo))
    failed = _predict(facade, starts) == y_todo
    if failed.any():
        starts[failed] = _batch_starts(x_todo[failed], y_todo[failed], x, pred)
        log.info("%s: %d of %d points start from another batch point", name, int(failed.sum()), len(todo))
    keep = ~starts.isnan().flatten(1).any(dim=1)
    # re-checked on exactly the batch Foolbox checks first: a model in train mode (BatchNorm)
    # classifies a point differently in another batch
    while keep.any():
        adversarial = _predict(facade, starts[keep]) != y_todo[keep]
        if adversarial.all():
            break
        keep[keep.nonzero().squeeze(1)[~adversarial]] = False
    if not keep.all():
        log.warning("%s: no adversarial starting point for %d of %d points; they count as robust",
                    name, int((~keep).sum()), len(todo))
    return starts[keep], todo[keep]


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def _foolbox_attack(fb, attack, init, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    eps: float, norm: str, seed: int, name: str) -> torch.Tensor:
    """Run the Foolbox minimisation ``attack`` at ``eps`` from adversarial starting points."""
    x = x.detach()
    x_adv = x.clone()
    # Foolbox always sees float32 (the facade feeds the model its own dtype): numba compiles the
    # B&B solver anew, for a minute, for every input dtype
    x32 = x.float()
    with _library_call(model, x, seed) as facade:
        fmodel = fb.PyTorchModel(facade, bounds=(0, 1), device=x.device)
        todo = (_predict(facade, x32) == y).nonzero().squeeze(1) if len(x) else y[:0]
        if len(todo):
            starts, chosen = _starting_points(fb, init, facade, fmodel, x32, y, todo, name)
            if len(chosen):
                _, clipped, _ = attack(fmodel, x32[chosen], fb.criteria.Misclassification(y[chosen]),
                                       epsilons=eps, starting_points=starts)
                x_adv[chosen] = clipped.to(x.dtype)
    return _into_budget(x, x_adv, eps, norm)


@ATTACKS.register("boundary")
def boundary(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 5000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Foolbox's Boundary attack (L2) for ``steps`` steps, projected onto the L2 ball of radius ``eps``."""
    eps = check_eps(eps, norm="l2")
    steps = check_positive_int(steps, "steps")
    check_inputs(x, y)
    fb = _require("boundary")
    seed = _seed_from(generator, "boundary")
    attack = fb.attacks.BoundaryAttack(steps=steps)
    init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(steps=50)  # BoundaryAttack's own default init
    return _foolbox_attack(fb, attack, init, model, x, y, eps=eps, norm="l2", seed=seed, name="boundary")


@ATTACKS.register("brendel_bethge")
def brendel_bethge(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 1000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Foolbox's Brendel & Bethge attack in ``norm`` ("linf", "l2", "l1"), projected onto the ``eps``-ball."""
    norm = check_choice(norm, "norm", BRENDEL_BETHGE_NORMS)
    eps = check_eps(eps, norm=norm)
    steps = check_positive_int(steps, "steps")
    check_inputs(x, y)
    fb = _require("brendel_bethge")  # and numba, which compiles the B&B trust-region solver
    seed = _seed_from(generator, "brendel_bethge")
    attack = getattr(fb.attacks, BRENDEL_BETHGE_NORMS[norm])(steps=steps)
    init = fb.attacks.LinearSearchBlendedUniformNoiseAttack()  # the B&B attack's own default init
    return _foolbox_attack(fb, attack, init, model, x, y, eps=eps, norm=norm, seed=seed, name="brendel_bethge")
