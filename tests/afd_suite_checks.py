"""Checks of an AFD study's attack suite that the MNIST and CIFAR studies share."""

from robust.tables import TABLES


def assert_suite_feeds_tables_a3_and_2(suite, table_a3_id: str, profile: str) -> None:
    """Table A3: each of its columns read from an attack on the same 100 points (smoke and cpu run the
    ones without the optional foolbox extra); Table 2: every sweep at paper, the PGD-L∞, FGSM, DDN and
    DeepFool ones at smoke and cpu."""
    table_a3 = {(s.name, s.norm, s.eps, s.label): s.examples for s in suite if s.examples is not None}
    columns = TABLES.get(table_a3_id).columns
    if profile != "paper":
        columns = [c for c in columns if c.attack in ("autoattack", "pgd", "square")]
    assert table_a3 == {(c.attack, c.norm, c.eps, c.attack_label or ""): 100 for c in columns}
    names = {(s.name, s.norm) for s in suite if s.sweep is not None or s.budgets}
    wanted = {("pgd", "linf"), ("fgsm", "linf"), ("ddn", "l2"), ("deepfool", "linf")}
    if profile == "paper":
        wanted |= {("pgd", "l2"), ("pgd", "l1"), ("mim", "linf"), ("cw", "l2")}
    assert names == wanted
