"""Chan, Tay, Ong & Fu 2020, "Jacobian Adversarially Regularized Networks for Robustness" (JARN,
arXiv 1912.10185), Table 1: MNIST accuracy (%) on adversarial and clean test samples.

The seed text (shared/papers/jarn_chan2020.txt) keeps Table 1's caption but lost its body, and
§4.1 lost the perturbation size ("with perturbation , crafted from FGSM and PGD"): every paper
value is None (rendered "not in text"). The rows are those §4.1's results paragraph names; each
row's ``in_text`` is the word the text uses for it there. The AutoAttack and alignment columns
are not in the paper.
"""

from robust.tables import Column, Row, Table, register_table

SOURCE = "jarn_chan2020.txt"
STUDY = "chan2020"
EPS = 0.3  # chosen: the text lost the MNIST ε (studies/chan2020.yaml)

# (row label, the row's word in §4.1's results paragraph, run suffix)
ROWS = (
    ("Standard", "standard", "standard"),
    ("Uniform noise", "uniform", "uniform-noise"),
    ("JARN", "JARN", "jarn"),
)

COLUMNS = (
    Column("Clean %", attack="clean", metric="accuracy", scale=100.0),
    Column("FGSM %", attack="fgsm", metric="accuracy", scale=100.0, eps=EPS),
    Column("PGD5 %", attack="pgd", metric="accuracy", scale=100.0, eps=EPS, steps=5),
    Column("PGD40 %", attack="pgd", metric="accuracy", scale=100.0, eps=EPS, steps=40),
    Column("AutoAttack %", attack="autoattack", metric="accuracy", scale=100.0, eps=EPS),
    Column("Alignment", attack="clean", metric="alignment", digits=3),
)
# one per column: Clean, FGSM, PGD5, PGD40 (lost from the seed text), AutoAttack and alignment
# (not in the paper)
PAPER = (None, None, None, None, None, None)

TABLE1 = register_table(Table(
    id="chan2020-table1",
    title="MNIST accuracy (%) on adversarial and clean test samples, 3-convolution CNN",
    source=f"{SOURCE}, Table 1",
    columns=COLUMNS,
    rows=tuple(Row(label, f"{STUDY}-{suffix}", PAPER, in_text=in_text) for label, in_text, suffix in ROWS),
    notes=(
        "The seed text lost Table 1's numbers and the MNIST ε: every paper cell is \"not in text\".",
        f"Attacks (§4.1): FGSM, PGD-5 and PGD-40, L∞. Chosen: ε = {EPS} (Madry et al.'s MNIST budget), "
        "random starts, PGD-5 steps of ε/4 (the official CIFAR ratio), PGD-40 steps of 0.01 (Madry et al.).",
        "AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square, the authors' budgets) at the same ε is not in "
        "the paper: added beside PGD as the stronger check. The smoke profile runs it with 10 iterations and "
        "100 Square queries.",
        "Alignment = mean over the evaluated points of |⟨∇ₓz_c(x), x⟩| / (‖∇ₓz_c(x)‖‖x‖), z_c the logit of the "
        "predicted class (Etmann et al. 2019, divided by ‖x‖): not in the paper's table; JARN (§3.1) argues "
        "that it should be higher for JARN than for the standard model.",
        "Network (§4.1): 3 convolutions of 64-128-256 channels with stride 5, then a softmax layer "
        "(jarn-mnist). JARN: 2-layer discriminator (64-128) updated every 10 iterations, on the last 25% of "
        "training. Chosen (lost from the text): λ_adv = 1, noise ε = 0.3, Adam at 1e-3 ×0.1 after 50% and 75% "
        "of 100 epochs, batch 64; see studies/chan2020.yaml.",
    ),
))
