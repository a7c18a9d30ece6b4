"""Bashivan et al. 2021, "Adversarial Feature Desensitization" (arXiv 2006.04621), MNIST parts.
Paper values transcribed from shared/papers/afd_bashivan2021.txt: Table 1 (its MNIST RN18 rows,
whose labels the seed text prints as "NT _†", "AT(Madry et al., 2017) [†]", …, kept verbatim so
each row can be found there), Table 2 (the MNIST block of AUCs), Table A3 (its MNIST rows), Table A5
(MNIST columns) and Table A6 (the discriminator architectures).
"""

from robust.tables import Column, Row, Table, register_table

SOURCE = "afd_bashivan2021.txt"
STUDY = "bashivan2021"
SEEDS = (0, 1, 2)  # the paper's three initialisations of Table 1's rows
BLACK_BOX_SOURCE = f"{STUDY}-mnist-nt-source"
# (row label as the seed text prints it, name in the seed text's running tables, run suffix)
DEFENSES = (
    ("NT _†", "NT", "nt"),
    ("AT(Madry et al., 2017) [†]", "AT", "at"),
    ("TRADES(Zhang et al., 2019b) [†]", "TRADES", "trades"),
    ("AFD", "AFD", "afd"),
)


def study_runs(prefix: str, defense: str, seeds: tuple[int, ...]) -> tuple[str, ...]:
    """The runs of one row: ``<prefix>-<defense>-s<seed>`` per seed."""
    return tuple(f"{prefix}-{defense}-s{seed}" for seed in seeds)


def _runs(defense: str, seeds: tuple[int, ...] = SEEDS) -> tuple[str, ...]:
    return study_runs(f"{STUDY}-mnist", defense, seeds)


def _rows_in_text(papers: tuple) -> tuple[Row, ...]:
    """Rows of a table the seed text prints as running text, found there by the defense's short name."""
    return tuple(Row(name, _runs(suffix), paper, in_text=name) for (_, name, suffix), paper in zip(DEFENSES, papers))


def _accuracy(label: str, attack: str, **narrow) -> Column:
    return Column(label, attack=attack, metric="accuracy", scale=100.0, **narrow)


def table1_columns(eps: float, black_box_source: str) -> tuple[Column, ...]:
    """Table 1's columns at a data set's ε: white-box cells read the ε member of the study's sweeps (label
    ""); black-box cells read the labelled transfer attacks, crafted on the separately trained NT source."""
    return (
        _accuracy("Clean", "clean"),
        _accuracy("PGD-L∞ (WB)", "pgd", norm="linf", eps=eps, attack_label=""),
        _accuracy("FGSM (WB)", "fgsm", norm="linf", eps=eps, attack_label=""),
        _accuracy("PGD-L∞ (BB)", "pgd", norm="linf", eps=eps, attack_label="pgd-transfer", source=black_box_source),
        _accuracy("FGSM (BB)", "fgsm", norm="linf", eps=eps, attack_label="fgsm-transfer", source=black_box_source),
    )


def tablea3_columns(eps: float) -> tuple[Column, ...]:
    """Table A3's columns: AutoAttack and B&B (L∞ at the data set's ε), Boundary (L2 2), each on 100 points,
    in whole percentages as the paper prints them (one point is one percent)."""
    return (
        _accuracy("AutoAttack", "autoattack", norm="linf", eps=eps, digits=0),
        _accuracy("Boundary", "boundary", norm="l2", eps=2.0, digits=0),
        _accuracy("B&B", "brendel_bethge", norm="linf", eps=eps, digits=0),
        # not in the paper's table: Table 1's PGD-L∞ and the gradient-free Square attack on the same 100 points
        _accuracy("PGD-L∞ (same points)", "pgd", norm="linf", eps=eps, attack_label="table-a3", digits=0),
        _accuracy("Square (same points)", "square", norm="linf", eps=eps, digits=0),
    )


TABLE1_COLUMNS = table1_columns(0.3, BLACK_BOX_SOURCE)
# MNIST, RN18 rows: mean over three runs (the ± σ of the text is in the notes)
TABLE1_PAPER = (
    (98.80, 0.0, 2.90, 11.25, 20.48),
    (99.13, 95.16, 97.33, 98.41, 98.17),
    (98.84, 80.69, 91.75, 97.11, 86.4),
    (99.15, 96.13, 97.70, 98.31, 97.92),
)

TABLE1 = register_table(Table(
    id="bashivan2021-table1",
    title="Robust accuracy % on MNIST (ResNet-18), ε = 0.3: white-box and black-box PGD-L∞ and FGSM",
    source=f"{SOURCE}, Table 1 (MNIST, RN18 rows)",
    columns=TABLE1_COLUMNS,
    rows=tuple(Row(label, _runs(suffix), paper) for (label, _, suffix), paper in zip(DEFENSES, TABLE1_PAPER)),
    notes=(
        "Paper σ over three initialisations: NT 0.11 / 0.0 / 0.07 / 3.60 / 2.91; AT 0.11 / 0.12 / 0.18 / 0.09 / "
        "0.18; TRADES 0.18 / 9.44 / 2.7 / 0.63 / 8.22; AFD 0.12 / 0.35 / 0.34 / 0.18 / 0.31 (clean, PGD WB, FGSM WB, "
        "PGD BB, FGSM BB). Here: mean ± sample std over seeds 0, 1 and 2 (the seeds whose runs have results).",
        "PGD-L∞: 40 steps of 0.01 with random start (the training attack); FGSM: one signed step of ε. A point "
        "is robust only if it is classified correctly both clean and attacked.",
        f"BB: the attacks crafted on a separately trained NT model ({BLACK_BOX_SOURCE}, another seed, chosen): "
        "the paper's NT row has BB 11.25% against WB 0.0%, so its source is not the evaluated NT model.",
        "Not in the text, chosen: AT's and NT's learning rate (the E+Dc rate 0.1), AT's PGD steps, the BB "
        "source's seed. AFD trains with the text's PGD-L∞ and softplus losses (the official code's defaults, "
        "APGD-CE and WGAN losses, are options of the defense).",
    ),
))


# Table 2, MNIST block: AUC of accuracy-vs-ε over Table A2's grids, normalised to a maximum of 1
def _auc(label: str, attack: str, **narrow) -> Column:
    return Column(label, attack=attack, metric="auc", **narrow)


TABLE2_COLUMNS = (
    _auc("PGD-L∞", "pgd", norm="linf", attack_label=""),
    _auc("PGD-L2", "pgd", norm="l2", attack_label=""),
    _auc("PGD-L1", "pgd", norm="l1", attack_label=""),
    _auc("FGSM", "fgsm", attack_label=""),
    _auc("MIM", "mim", attack_label=""),
    _auc("DDN", "ddn"),
    _auc("DeepFool", "deepfool"),
    _auc("C&W", "cw"),
)
TABLE2_PAPER = (
    (0.16, 0.12, 0.14, 0.29, 0.16, 0.18, 0.23, 0.75),
    (0.67, 0.50, 0.44, 0.76, 0.84, 0.72, 0.74, 0.96),
    (0.62, 0.47, 0.41, 0.72, 0.80, 0.77, 0.73, 0.96),
    (0.83, 0.84, 0.70, 0.84, 0.84, 0.85, 0.83, 0.96),
)

TABLE2 = register_table(Table(
    id="bashivan2021-table2",
    title="AUC of robust accuracy over ε on MNIST (ResNet-18), normalised to 1",
    source=f"{SOURCE}, Table 2 (MNIST block)",
    columns=TABLE2_COLUMNS,
    rows=_rows_in_text(TABLE2_PAPER),
    notes=(
        "AUC = trapezoidal area under accuracy-vs-ε over the grid divided by the grid's width (1: accurate at "
        "every ε). Grids of Table A2 (MNIST): PGD-L∞ and FGSM ε ∈ {0, 0.1, 0.3, 0.35, 0.4, 0.45, 0.5} (PGD 40 "
        "steps); PGD-L2 {0, 2, 5, 10} and PGD-L1 {0, 10, 50, 100, 200} (50 steps; the text prints the L1 grid as "
        "[10, 10, 50, 100, 200], its first 10 read as 0 like every other grid's first value); MIM {0, 0.1, 0.3, 0.5, 0.8, 1} (40 steps).",
        "Step sizes follow Foolbox, which the paper used: its step column is relative (0.033·ε for PGD-L∞, "
        "0.025·ε for L2/L1); MIM's step, ε/40, is chosen.",
        "DDN {0, 1, 2, 5} (100 steps), DeepFool L∞ {0, 0.1, 0.3, 0.35, 0.4, 0.45, 0.5} (50 steps) and C&W-L2 "
        "{0, 0.5, 1, 1.5, 2} (100 steps of 0.05, 9 binary steps) minimise ‖δ‖: as Foolbox does for them, each "
        "point's δ is cut to every ε of the grid (L2: rescaled; L∞: clamped) and the model re-evaluated there, "
        "also for a point the attack did not flip: its last iterate, cut, may still be misclassified.",
        "The smoke and cpu profiles run the PGD-L∞, FGSM, DDN and DeepFool columns; PGD-L2, PGD-L1, MIM "
        "and C&W run at the paper profile.",
    ),
))


# Table A3, MNIST rows: each attack on 100 random test points (the suite's ``examples: 100``)
TABLEA3_COLUMNS = tablea3_columns(0.3)
TABLEA3_PAPER = tuple((*paper, None, None) for paper in ((0, 25, 3), (88, 63, 92), (2, 48, 17), (92, 78, 96)))

TABLEA3 = register_table(Table(
    id="bashivan2021-tablea3",
    title="Robust accuracy % on MNIST (ResNet-18) against AutoAttack, the Boundary attack and B&B, 100 test points",
    source=f"{SOURCE}, Table A3 (MNIST rows)",
    columns=TABLEA3_COLUMNS,
    rows=tuple(Row(name, _runs(suffix), paper) for (_, name, suffix), paper in zip(DEFENSES, TABLEA3_PAPER)),
    notes=(
        "As the caption says: each attack on 100 random test points (one seeded subset of the evaluated points, "
        "the same for every attack and run), the Boundary attack with 5,000 steps at L2 ε = 2. Not in the text, "
        "chosen: AutoAttack's norm and ε (the standard version, L∞ at the training ε 0.3) and B&B's (L∞ at 0.3: "
        "robust.attacks.external gives the reasons). The smoke profile runs AutoAttack with 10 steps and 100 Square "
        "queries, and neither Boundary nor B&B.",
        "The seed text prints TRADES's AutoAttack cell as \"$\\overline{2}$\", read as 2.",
        "Boundary and B&B (the paper profile; smoke and cpu leave them out) run through Foolbox, which B&B runs with numba: "
        "`pip install 'robust[foolbox]'`. Without it their cells stay empty.",
        "With 100 points one example is one percentage point. The last two columns are not in the paper: Table "
        "1's PGD-L∞ (40 steps of 0.01; smoke 10) and the Square attack (5,000 queries; smoke 100), AutoAttack's "
        "gradient-free member alone, on the same 100 points. The sanity checks hold AutoAttack to PGD and PGD to "
        "Square: a ⚠ on the PGD cell means an attack that reads no gradients beat it, the mark of masked "
        "gradients (Carlini et al. 2019, §5).",
    ),
))


# Table A5, MNIST columns: non-zero feature dimensions over the test set, and PCA dimensions for 99% variance
TABLEA5_COLUMNS = (
    Column("Units", attack="representation", metric="active_units", digits=0),
    Column("Dims (PCA 99%)", attack="representation", metric="pca_dims_99", digits=0),
)
TABLEA5_PAPER = ((64, 24), (64, 43), (64, 40), (18, 6))

TABLEA5 = register_table(Table(
    id="bashivan2021-tablea5",
    title="Dimensionality of the learned representation E(x) on MNIST (ResNet-18)",
    source=f"{SOURCE}, Table A5 (MNIST columns)",
    columns=TABLEA5_COLUMNS,
    rows=_rows_in_text(TABLEA5_PAPER),
    notes=(
        "E(x): the activations before the last linear layer (64-d, L2-normalised, on the full-width MNIST "
        "ResNet-18; a narrower profile has fewer). Units: dimensions non-zero for at least one evaluated test "
        "point. Dims: principal components of E(x) over the evaluated test points that explain 99% of its "
        "variance.",
        "The representation's sensitivity to PGD-L∞ (Fig. 4) is stored beside it: rows attack "
        "`representation`, metric `sensitivity` (median over the points of ‖E(x) − E(x′)‖₂/‖E(x)‖₂) and "
        "`sensitivity_std`, per ε.",
    ),
))


# Table A6: AFD's robust accuracy by discriminator architecture. The seed text merged the table's label
# column into one cell and its values into the next ("FC ₁ -PD FC ₃ $FC3-PD$\t85.96 90.73 97.03"): a row's
# in_text is its label in that cell, its value the number at the same place in the next
# (label, in_text, run suffix, paper value)
TABLEA6_ROWS = (
    ("FC1-PD", "FC ₁ -PD", "afd-fc1pd", 85.96),
    ("FC3", "FC ₃", "afd-fc3", 90.73),
    ("FC3-PD", "$FC3-PD$", "afd", 97.03),
)

TABLEA6 = register_table(Table(
    id="bashivan2021-tablea6",
    title="Robust accuracy % of AFD against PGD-L∞ (ε = 0.3) by adversarial-discriminator architecture on MNIST "
          "(ResNet-18)",
    source=f"{SOURCE}, Table A6",
    columns=(TABLE1_COLUMNS[1],),
    rows=tuple(Row(label, _runs(suffix, seeds=(0,)), (paper,), in_text=in_text)
               for label, in_text, suffix, paper in TABLEA6_ROWS),
    notes=(
        "Each row is Table 1's AFD but for the discriminator Da (spectral norm, LeakyReLU 0.2, hidden width = the "
        "feature dimension, 64 at full width): "
        "FC1-PD, the projection discriminator on E(x) itself (no hidden layer); FC3, two hidden layers and a "
        "linear output without the projection term; FC3-PD, both (the paper's Da: Table 1's AFD run).",
        "PGD-L∞ as in Table 1 (40 steps of 0.01 with random start; the smoke profile's 10). The text does not say "
        "how Table A6's runs differ from Table 1's, whose FC3-PD row has 96.13 ± 0.35. One seed (0) per row here.",
        "The discriminator's accuracy per epoch of these runs (Fig. A5) is plot data: `dvc plots show` "
        "bashivan2021-figa5-disc_acc.",
    ),
))


# Table A7: the angle (radians) between each attack's perturbation of E(x) and PGD-L∞'s; the text keeps
# only its caption, so every paper cell is "not in text" (its rows and columns are chosen here)
def _angle(label: str, attack: str, **narrow) -> Column:
    return Column(label, attack=attack, metric="representation_angle", **narrow)


TABLEA7_COLUMNS = (
    _angle("FGSM", "fgsm"),
    _angle("PGD-L2", "pgd", norm="l2"),
    _angle("PGD-L1", "pgd", norm="l1"),
    _angle("MIM", "mim"),
    _angle("DDN", "ddn"),
    _angle("DeepFool", "deepfool"),
    _angle("C&W", "cw"),
)

TABLEA7 = register_table(Table(
    id="bashivan2021-tablea7",
    title="Angle (radians) between the representation perturbation of each attack and of PGD-L∞ on MNIST (ResNet-18)",
    source=f"{SOURCE}, Table A7 (caption only: the values are not in the text)",
    columns=TABLEA7_COLUMNS,
    rows=_rows_in_text(((None,) * len(TABLEA7_COLUMNS),) * len(DEFENSES)),
    notes=(
        "Per test point, arccos of the cosine between E(x′) − E(x) of the attack and of PGD-L∞ (ε 0.3, 40 steps of "
        "0.01), averaged over the points where both move E (`robust.representation`); 0 = the same direction, "
        "π/2 = orthogonal.",
        "Chosen (the text keeps only the caption): the rows, the reference, and each attack's budget — FGSM and "
        "MIM at ε 0.3, PGD-L2 at 2 and PGD-L1 at 10 (50 steps), DDN, DeepFool L∞ and C&W as in Table 2, at "
        "their minimal δ. The smoke profile runs FGSM, DDN and DeepFool against its 10-step PGD, the cpu profile "
        "the same three against the 40-step PGD; the other angles need the paper profile.",
    ),
))
