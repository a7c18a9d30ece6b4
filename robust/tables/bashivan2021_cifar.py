"""Bashivan et al. 2021, "Adversarial Feature Desensitization" (arXiv 2006.04621), CIFAR-10 and CIFAR-100
parts. Paper values transcribed from shared/papers/afd_bashivan2021.txt, one block of each table per data set:
Table 1 (its RN18 rows marked † or ⁺ and AFD's, labelled as the seed text prints them), Table 2 (the data set's
block of AUCs), Table A3 (its rows) and Table A5 (its columns). Both data sets train with the same settings
(studies/bashivan2021-cifar10.yaml; studies/bashivan2021-cifar100.yaml runs them on CIFAR-100), so the
tables differ in their paper values and notes only. The rows, columns and helpers are the MNIST module's
(robust/tables/bashivan2021.py) where the data set does not change them.
"""

from dataclasses import dataclass

from robust.tables import Row, Table, register_table
from robust.tables.bashivan2021 import (DEFENSES, SOURCE, TABLE2_COLUMNS, TABLEA5_COLUMNS, study_runs,
                                        table1_columns, tablea3_columns)

SEEDS = (0,)  # one initialisation per row (Table 1 gives μ ± σ over three for AFD only)
EPS = 8 / 255  # Table 1's caption: "ε = 0.3 and 8/255 for MNIST and CIFAR10/CIFAR100"
Cells = tuple[tuple[float | None, ...], ...]  # one tuple per row of DEFENSES: NT, AT, TRADES, AFD


@dataclass(frozen=True)
class CifarBlock:
    """One CIFAR data set's cells of the AFD tables, as the seed text prints them."""

    study: str  # the study (and run-name prefix), e.g. "bashivan2021-cifar10"
    name: str  # in titles, e.g. "CIFAR-10"
    in_text: str  # how the seed text names the data set, e.g. "CIFAR10"
    nt_label: str  # Table 1's NT row label as printed ("NT _†" for CIFAR-10, "NT ⁺" for CIFAR-100)
    table1_rows: str  # which of Table 1's rows of the data set are taken, with their marks
    table1: Cells  # clean, PGD WB, FGSM WB, PGD BB, FGSM BB; AFD's the mean of three runs
    afd_sigma: str  # AFD's σ over its three runs, per Table 1 column
    afd_best_pgd: str  # §3.2: the best of AFD's three runs under white-box PGD-L∞
    table2: Cells
    tablea3: Cells  # AutoAttack, Boundary, B&B in whole percentages; None where the text lost the cell
    tablea3_lost: str  # what the seed text lost or garbled of the data set's Table A3 rows
    tablea5: Cells  # non-zero units, PCA dimensions for 99% variance
    setting: str = ""  # a note on the study's settings, where they are another data set's

    @property
    def black_box_source(self) -> str:
        return f"{self.study}-nt-source"

    def runs(self, defense: str) -> tuple[str, ...]:
        return study_runs(self.study, defense, SEEDS)


def _rows(block: CifarBlock, papers: Cells, *, printed_labels: bool = False, in_text: bool = False) -> tuple[Row, ...]:
    """One row per defense, labelled by its short name or (Table 1) by its label as the seed text prints it."""
    rows = []
    for (label, name, suffix), paper in zip(DEFENSES, papers, strict=True):
        if printed_labels:
            name = block.nt_label if suffix == "nt" else label
        rows.append(Row(name, block.runs(suffix), paper, in_text=name if in_text else None))
    return tuple(rows)


def register_cifar_tables(block: CifarBlock) -> None:
    """Register Tables 1, 2, A3 and A5 of one CIFAR data set."""
    setting = (block.setting,) if block.setting else ()
    nt_paper = block.table1[0]
    register_table(Table(
        id=f"{block.study}-table1",
        title=f"Robust accuracy % on {block.name} (ResNet-18), ε = 8/255: white-box and black-box PGD-L∞ and FGSM",
        source=f"{SOURCE}, Table 1 ({block.in_text}, {block.table1_rows})",
        columns=table1_columns(EPS, block.black_box_source),
        rows=_rows(block, block.table1, printed_labels=True),
        notes=(
            "Paper: NT, AT and TRADES as single numbers; AFD μ ± σ over three initialisations, σ "
            f"{block.afd_sigma} (clean, PGD WB, FGSM WB, PGD BB, FGSM BB); §3.2: the best of its three runs had "
            f"{block.afd_best_pgd} under white-box PGD-L∞. Here: one run per row (seed 0).",
            "PGD-L∞: 20 steps of 2/255 with random start (Table A2; the training attack of AFD); FGSM: one signed "
            "step of ε. A point is robust only if it is classified correctly both clean and attacked. The smoke "
            "profile's PGD takes 10 steps.",
            f"BB: the attacks crafted on a separately trained NT model ({block.black_box_source}, another seed, "
            f"chosen): the paper's NT row has BB {nt_paper[3]:.2f}% against WB {nt_paper[1]:.2f}%, so its source "
            "is not the evaluated NT model.",
            "Not in the text, chosen: NT's and AT's learning rate (the E+Dc rate 0.1), AT's training PGD (Madry et "
            "al.'s 7 steps of 2/255), the BB source's seed. TRADES: its official CIFAR-10 script (β = 6, 76 epochs). "
            "Paper-profile epochs: Table A1's 900 (the official code's default is 300). AFD trains with the text's "
            "PGD-L∞ and softplus losses (the official defaults, APGD-CE and WGAN losses, are options of the defense).",
            *setting,
        ),
    ))
    register_table(Table(
        id=f"{block.study}-table2",
        title=f"AUC of robust accuracy over ε on {block.name} (ResNet-18), normalised to 1",
        source=f"{SOURCE}, Table 2 ({block.in_text} block)",
        columns=TABLE2_COLUMNS,
        # the block's rows, found in running text by the defense's short name (the same tokens open the other
        # blocks' rows, whose values differ)
        rows=_rows(block, block.table2, in_text=True),
        notes=(
            "AUC = trapezoidal area under accuracy-vs-ε over the grid divided by the grid's width (1: accurate at "
            "every ε). Grids of Table A2 (CIFAR): PGD-L∞ and MIM ε ∈ {0, 2, 4, 8, 16, 32}/255 (PGD 20 steps of "
            "2/255, MIM 40 steps of ε/40, chosen); FGSM {0, 2, 4, 8, 16, 32, 64}/255; DDN {0, 2, 5, 10, 15} (100 "
            "steps); DeepFool L∞ over the FGSM grid (50 steps).",
            "Table A2 prints one grid for PGD-L2, PGD-L1 and C&W, in cells shared by MNIST and CIFAR: read as both "
            "data sets' (chosen), PGD-L2 {0, 2, 5, 10} and PGD-L1 {0, 10, 50, 100, 200} (50 steps of 0.025·ε; the "
            "text prints the L1 grid as [10, 10, 50, 100, 200], its first 10 read as 0), C&W-L2 {0, 0.5, 1, 1.5, 2} (100 steps of 0.05, 9 binary "
            "steps).",
            "DDN, DeepFool and C&W minimise ‖δ‖: as Foolbox does for them, each point's δ is cut to every ε of the "
            "grid (L2: rescaled; L∞: clamped) and the model re-evaluated there.",
            "The smoke profile runs the PGD-L∞ (10 steps), FGSM, DDN (20 steps) and DeepFool columns; cpu the "
            "PGD-L∞, FGSM, DDN and DeepFool columns.",
            *setting,
        ),
    ))
    register_table(Table(
        id=f"{block.study}-tablea3",
        title=(f"Robust accuracy % on {block.name} (ResNet-18) against AutoAttack, the Boundary attack and B&B, "
               "100 test points"),
        source=f"{SOURCE}, Table A3 ({block.in_text} rows)",
        columns=tablea3_columns(EPS),
        # AutoAttack, Boundary and B&B from the paper; the added PGD and Square columns are not in it
        rows=_rows(block, tuple((*paper, None, None) for paper in block.tablea3)),
        notes=(
            "As the caption says: each attack on 100 random test points (one seeded subset of the evaluated "
            "points, the same for every attack and run), the Boundary attack with 5,000 steps at L2 ε = 2. Not in "
            "the text, chosen: AutoAttack's norm and ε (the standard version, L∞ at the training ε 8/255) and "
            "B&B's (L∞ at 8/255).",
            block.tablea3_lost,
            "Boundary and B&B run at the paper profile only, through Foolbox: `pip install 'robust[foolbox]'`. The "
            "smoke profile runs AutoAttack with 10 steps and 100 Square queries; smoke and cpu run neither "
            "Boundary nor B&B.",
            "With 100 points one example is one percentage point. The last two columns are not in the paper: "
            "Table 1's PGD-L∞ (20 steps of 2/255; smoke 10) and the Square attack (5,000 queries; smoke 100) on "
            "the same 100 points. The sanity checks hold AutoAttack to PGD and PGD to Square: a ⚠ on the PGD cell "
            "means an attack that reads no gradients beat it, the mark of masked gradients.",
            *setting,
        ),
    ))
    register_table(Table(
        id=f"{block.study}-tablea5",
        title=f"Dimensionality of the learned representation E(x) on {block.name} (ResNet-18)",
        source=f"{SOURCE}, Table A5 ({block.in_text} columns)",
        columns=TABLEA5_COLUMNS,
        rows=_rows(block, block.tablea5),
        notes=(
            "E(x): the activations before the last linear layer (512-d, L2-normalised, on the full-width CIFAR "
            "ResNet-18; the smoke profile's width 0.125 has 64, cpu's 0.25 has 128). Units: dimensions non-zero "
            "for at least one evaluated test point. Dims: principal components of E(x) over the evaluated test "
            "points that explain 99% of its variance.",
            "The representation's sensitivity to PGD-L∞ (Fig. 4) is stored beside it: rows attack "
            "`representation`, metric `sensitivity` (median over the points of ‖E(x) − E(x′)‖₂/‖E(x)‖₂) and "
            "`sensitivity_std`, per ε.",
            *setting,
        ),
    ))


CIFAR10 = CifarBlock(
    study="bashivan2021-cifar10", name="CIFAR-10", in_text="CIFAR10", nt_label="NT _†",
    table1_rows="RN18 rows NT, AT and TRADES marked †, and AFD",
    table1=(
        (95.40, 0.12, 47.79, 12.00, 54.65),
        (83.58, 41.05, 50.12, 83.20, 82.88),
        (82.22, 52.30, 58.16, 80.36, 79.69),
        (89.38, 77.72, 85.34, 86.33, 84.70),
    ),
    afd_sigma="2.71 / 10.78 / 0.03 / 2.21 / 1.40", afd_best_pgd="83.72%",
    # the columns are the MNIST table's (PGD-L∞, PGD-L2, PGD-L1, FGSM, MIM, DDN, DeepFool, C&W)
    table2=(
        (0.04, 0.02, 0.06, 0.35, 0.04, 0.06, 0.08, 0.13),
        (0.27, 0.05, 0.14, 0.39, 0.28, 0.06, 0.33, 0.41),
        (0.34, 0.06, 0.16, 0.46, 0.36, 0.06, 0.41, 0.47),
        (0.73, 0.43, 0.82, 0.85, 0.84, 0.38, 0.33, 0.37),
    ),
    # the seed text keeps only the NT row's AutoAttack cell ("0.0")
    tablea3=((0.0, None, None), (34, 51, 36), (49, 58, 54), (25, 68, 41)),
    tablea3_lost="The seed text lost the NT row's Boundary and B&B cells (\"not in text\").",
    # the seed text's rows hold MNIST's two numbers before CIFAR10's: each row is found by its label as a cell
    tablea5=((512, 97), (512, 455), (512, 349), (417, 9)),
)

CIFAR100 = CifarBlock(
    study="bashivan2021-cifar100", name="CIFAR-100", in_text="CIFAR100", nt_label="NT ⁺",
    table1_rows="RN18 rows NT marked ⁺, AT and TRADES marked †, and AFD",
    table1=(
        (76.12, 0.01, 9.67, 1.55, 15.43),
        (55.78, 20.39, 25.09, 53.83, 53.25),
        (55.48, 27.36, 30.46, 54.13, 53.16),
        (62.35, 44.88, 49.52, 63.63, 54.90),
    ),
    afd_sigma="5.70 / 8.30 / 6.73 / 4.12 / 0.42", afd_best_pgd="54.95%",
    table2=(
        (0.03, 0.02, 0.03, 0.09, 0.02, 0.05, 0.03, 0.10),
        (0.15, 0.03, 0.08, 0.19, 0.15, 0.04, 0.16, 0.23),
        (0.19, 0.04, 0.09, 0.23, 0.20, 0.04, 0.19, 0.26),
        (0.43, 0.19, 0.47, 0.50, 0.49, 0.15, 0.13, 0.19),
    ),
    tablea3=((None, 2, None), (24, 32, 27), (30, 35, 30), (15, 32, 10)),
    tablea3_lost=(
        "The seed text garbles the NT row: its AutoAttack cell reads \"θ\" (no number: \"not in text\"), its "
        "Boundary cell \"$\\overline{2}$\" (read as 2, as the MNIST TRADES cell), and its B&B cell is empty."
    ),
    tablea5=((512, 429), (512, 481), (512, 461), (500, 76)),
    setting=(
        "CIFAR-100 trains every row on the CIFAR-10 study's settings (studies/bashivan2021-cifar10.yaml): Table A1 "
        "gives both data sets one schedule and one set of learning rates, §3.2 one discriminator width (\"512 for "
        "CIFAR\"), Table 1's caption one ε (8/255). TRADES has no official CIFAR-100 script: its CIFAR-10 one "
        "(chosen). The network's last layer has 100 outputs."
    ),
)

for _block in (CIFAR10, CIFAR100):
    register_cifar_tables(_block)
