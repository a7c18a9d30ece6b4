"""Bashivan et al. 2021, "Adversarial Feature Desensitization" (arXiv 2006.04621), CIFAR-10 parts.
Paper values transcribed from shared/papers/afd_bashivan2021.txt: Table 1 (its CIFAR10 RN18 rows marked
† and AFD's, labelled as the seed text prints them), Table 2 (the CIFAR10 block of AUCs), Table A3 (its
CIFAR10 rows) and Table A5 (the CIFAR10 columns). The rows, columns and helpers are the MNIST module's
(robust/tables/bashivan2021.py) where the data set does not change them.
"""

from robust.tables import Row, Table, register_table
from robust.tables.bashivan2021 import (DEFENSES, SOURCE, TABLE2_COLUMNS, TABLEA5_COLUMNS, study_runs,
                                        table1_columns, tablea3_columns)

STUDY = "bashivan2021-cifar10"
SEEDS = (0,)  # one initialisation per row (Table 1 gives μ ± σ over three for AFD only)
EPS = 8 / 255  # Table 1's caption: "ε = 0.3 and 8/255 for MNIST and CIFAR10/CIFAR100"
BLACK_BOX_SOURCE = f"{STUDY}-nt-source"


def _runs(defense: str) -> tuple[str, ...]:
    return study_runs(STUDY, defense, SEEDS)


TABLE1_COLUMNS = table1_columns(EPS, BLACK_BOX_SOURCE)
# CIFAR10, RN18 rows: NT, AT and TRADES as single numbers, AFD the mean of three runs (σ in the notes)
TABLE1_PAPER = (
    (95.40, 0.12, 47.79, 12.00, 54.65),
    (83.58, 41.05, 50.12, 83.20, 82.88),
    (82.22, 52.30, 58.16, 80.36, 79.69),
    (89.38, 77.72, 85.34, 86.33, 84.70),
)

TABLE1 = register_table(Table(
    id=f"{STUDY}-table1",
    title="Robust accuracy % on CIFAR-10 (ResNet-18), ε = 8/255: white-box and black-box PGD-L∞ and FGSM",
    source=f"{SOURCE}, Table 1 (CIFAR10, RN18 rows NT, AT and TRADES marked †, and AFD)",
    columns=TABLE1_COLUMNS,
    rows=tuple(Row(label, _runs(suffix), paper) for (label, _, suffix), paper in zip(DEFENSES, TABLE1_PAPER)),
    notes=(
        "Paper: NT, AT and TRADES as single numbers; AFD μ ± σ over three initialisations, σ 2.71 / 10.78 / 0.03 / "
        "2.21 / 1.40 (clean, PGD WB, FGSM WB, PGD BB, FGSM BB); §3.2: the best of its three runs had 83.72% under "
        "white-box PGD-L∞. Here: one run per row (seed 0).",
        "PGD-L∞: 20 steps of 2/255 with random start (Table A2; the training attack of AFD); FGSM: one signed "
        "step of ε. A point is robust only if it is classified correctly both clean and attacked. The smoke "
        "profile's PGD takes 10 steps.",
        f"BB: the attacks crafted on a separately trained NT model ({BLACK_BOX_SOURCE}, another seed, chosen): "
        "the paper's NT row has BB 12.00% against WB 0.12%, so its source is not the evaluated NT model.",
        "Not in the text, chosen: NT's and AT's learning rate (the E+Dc rate 0.1), AT's training PGD (Madry et "
        "al.'s 7 steps of 2/255), the BB source's seed. TRADES: its official CIFAR-10 script (β = 6, 76 epochs). "
        "Paper-profile epochs: Table A1's 900 (the official code's default is 300). AFD trains with the text's "
        "PGD-L∞ and softplus losses (the official defaults, APGD-CE and WGAN losses, are options of the defense).",
    ),
))

# Table 2, CIFAR10 block: AUC of accuracy-vs-ε over Table A2's grids, normalised to a maximum of 1; the
# columns are the MNIST table's (PGD-L∞, PGD-L2, PGD-L1, FGSM, MIM, DDN, DeepFool, C&W)
TABLE2_PAPER = (
    (0.04, 0.02, 0.06, 0.35, 0.04, 0.06, 0.08, 0.13),
    (0.27, 0.05, 0.14, 0.39, 0.28, 0.06, 0.33, 0.41),
    (0.34, 0.06, 0.16, 0.46, 0.36, 0.06, 0.41, 0.47),
    (0.73, 0.43, 0.82, 0.85, 0.84, 0.38, 0.33, 0.37),
)

TABLE2 = register_table(Table(
    id=f"{STUDY}-table2",
    title="AUC of robust accuracy over ε on CIFAR-10 (ResNet-18), normalised to 1",
    source=f"{SOURCE}, Table 2 (CIFAR10 block)",
    columns=TABLE2_COLUMNS,
    # the block's rows, found in running text by the defense's short name (the same tokens open the MNIST
    # block's rows, whose values differ)
    rows=tuple(Row(name, _runs(suffix), paper, in_text=name) for (_, name, suffix), paper in zip(DEFENSES, TABLE2_PAPER)),
    notes=(
        "AUC = trapezoidal area under accuracy-vs-ε over the grid divided by the grid's width (1: accurate at every "
        "ε). Grids of Table A2 (CIFAR): PGD-L∞ and MIM ε ∈ {0, 2, 4, 8, 16, 32}/255 (PGD 20 steps of 2/255, MIM 40 "
        "steps of ε/40, chosen); FGSM {0, 2, 4, 8, 16, 32, 64}/255; DDN {0, 2, 5, 10, 15} (100 steps); DeepFool L∞ "
        "over the FGSM grid (50 steps).",
        "Table A2 prints one grid for PGD-L2, PGD-L1 and C&W, in cells shared by MNIST and CIFAR: read as both data "
        "sets' (chosen), PGD-L2 {0, 2, 5, 10} and PGD-L1 {0, 10, 50, 100, 200} (50 steps of 0.025·ε; the L1 "
        "grid's first value is lost, 0 chosen), C&W-L2 {0, 0.5, 1, 1.5, 2} (100 steps of 0.05, 9 binary steps).",
        "DDN, DeepFool and C&W minimise ‖δ‖: as Foolbox does for them, each point's δ is cut to every ε of the grid "
        "(L2: rescaled; L∞: clamped) and the model re-evaluated there.",
        "The smoke profile runs the PGD-L∞ (10 steps), FGSM, DDN (20 steps) and DeepFool columns; cpu the PGD-L∞, "
        "FGSM, DDN and DeepFool columns.",
    ),
))

# Table A3, CIFAR10 rows: AutoAttack, Boundary and B&B on 100 random test points, in whole percentages as the
# paper prints them; the seed text keeps only the NT row's AutoAttack cell ("0.0")
TABLEA3_COLUMNS = tablea3_columns(EPS)
TABLEA3_PAPER = tuple((*paper, None, None) for paper in ((0.0, None, None), (34, 51, 36), (49, 58, 54), (25, 68, 41)))

TABLEA3 = register_table(Table(
    id=f"{STUDY}-tablea3",
    title="Robust accuracy % on CIFAR-10 (ResNet-18) against AutoAttack, the Boundary attack and B&B, 100 test points",
    source=f"{SOURCE}, Table A3 (CIFAR10 rows)",
    columns=TABLEA3_COLUMNS,
    rows=tuple(Row(name, _runs(suffix), paper) for (_, name, suffix), paper in zip(DEFENSES, TABLEA3_PAPER)),
    notes=(
        "As the caption says: each attack on 100 random test points (one seeded subset of the evaluated points, "
        "the same for every attack and run), the Boundary attack with 5,000 steps at L2 ε = 2. Not in the text, "
        "chosen: AutoAttack's norm and ε (the standard version, L∞ at the training ε 8/255) and B&B's (L∞ at "
        "8/255).",
        "The seed text lost the NT row's Boundary and B&B cells (\"not in text\").",
        "Boundary and B&B run at the paper profile only, through Foolbox: `pip install 'robust[foolbox]'`. The "
        "smoke profile runs AutoAttack with 10 steps and 100 Square queries; smoke and cpu run neither Boundary "
        "nor B&B.",
        "With 100 points one example is one percentage point. The last two columns are not in the paper: Table 1's "
        "PGD-L∞ (20 steps of 2/255; smoke 10) and the Square attack (5,000 queries; smoke 100) on the same 100 "
        "points. The sanity checks hold AutoAttack to PGD and PGD to Square: a ⚠ on the PGD cell means an attack "
        "that reads no gradients beat it, the mark of masked gradients.",
    ),
))

# Table A5, CIFAR10 columns: non-zero feature dimensions over the test set, and PCA dimensions for 99% variance.
# The seed text's rows hold MNIST's two numbers before CIFAR10's: each row is found by its label as a cell.
TABLEA5_PAPER = ((512, 97), (512, 455), (512, 349), (417, 9))

TABLEA5 = register_table(Table(
    id=f"{STUDY}-tablea5",
    title="Dimensionality of the learned representation E(x) on CIFAR-10 (ResNet-18)",
    source=f"{SOURCE}, Table A5 (CIFAR10 columns)",
    columns=TABLEA5_COLUMNS,
    rows=tuple(Row(name, _runs(suffix), paper) for (_, name, suffix), paper in zip(DEFENSES, TABLEA5_PAPER)),
    notes=(
        "E(x): the activations before the last linear layer (512-d, L2-normalised, on the full-width CIFAR "
        "ResNet-18; the smoke profile's width 0.125 has 64, cpu's 0.25 has 128). Units: dimensions non-zero for at "
        "least one evaluated test point. Dims: principal components of E(x) over the evaluated test points that "
        "explain 99% of its variance.",
        "The representation's sensitivity to PGD-L∞ (Fig. 4) is stored beside it: rows attack `representation`, "
        "metric `sensitivity` (median over the points of ‖E(x) − E(x′)‖₂/‖E(x)‖₂) and `sensitivity_std`, per ε.",
    ),
))
