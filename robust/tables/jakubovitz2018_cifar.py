"""Jakubovitz & Giryes 2018, the CIFAR tables: Table 4 (CIFAR-10, DeepFool), Table 14 (Appendix G, CIFAR-10, λ)
and Table 10 (Appendix E, CIFAR-100, DeepFool). Paper values transcribed from
shared/papers/jacobian_reg_jakubovitz2018.txt; the runs are studies/jakubovitz2018-cifar10.yaml's and
studies/jakubovitz2018-cifar100.yaml's.
"""

from robust.tables import Row, Sweep, Table, register_table
from robust.tables.jakubovitz2018 import ACCURACY, RHO

CIFAR10 = "jakubovitz2018-cifar10"
CIFAR100 = "jakubovitz2018-cifar100"
CHOICES = (
    "Not in the text, chosen (the study file says each): the net's filter sizes and widths, the base's and the "
    "post-processing schedules, the augmentation, the regularizers' λ other than the Jacobian penalty's and the "
    "AT shares (the MNIST study's)."
)
RHO_NOTE = "ρ_adv averages ‖δ‖₂/‖x‖₂ over all evaluated points; misclassified points contribute 0."

TABLE4 = register_table(Table(
    id=f"{CIFAR10}-table4",
    title="Robustness to DeepFool attack for CIFAR-10",
    source="jacobian_reg_jakubovitz2018.txt, Table 4 (CIFAR-10, DeepFool)",
    columns=(ACCURACY, RHO),
    rows=(
        Row("No defense", f"{CIFAR10}-table4-none", (88.79, 1.21)),
        Row("Adversarial Training", f"{CIFAR10}-table4-at", (88.88, 1.23)),
        Row("Input Gradient regularization", f"{CIFAR10}-table4-input-gradient", (88.56, 1.43)),
        Row("Input Gradient regularization & Adversarial Training", f"{CIFAR10}-table4-input-gradient-at",
            (88.49, 2.17)),
        Row("Cross-Lipschitz regularization", f"{CIFAR10}-table4-cross-lipschitz", (88.91, 2.08)),
        Row("Cross-Lipschitz regularization & Adversarial Training", f"{CIFAR10}-table4-cross-lipschitz-at",
            (88.49, 4.04)),
        Row("Jacobian regularization", f"{CIFAR10}-table4-jacobian", (89.16, 3.42)),
        Row("Jacobian regularization & Adversarial Training", f"{CIFAR10}-table4-jacobian-at", (88.49, 6.03)),
    ),
    notes=(
        "All rows fine-tune the same RMSProp-trained base (post-processing training); the Jacobian penalty's "
        "λ is the paper's 0.5 (§4).",
        RHO_NOTE,
        CHOICES,
    ),
))

TABLE14 = register_table(Table(
    id=f"{CIFAR10}-table14",
    title="Influence of λ on Jacobian regularization for CIFAR-10 (post-processing training)",
    source="jacobian_reg_jakubovitz2018.txt, Table 14 (Appendix G, CIFAR-10)",
    columns=(ACCURACY, RHO),
    rows=(
        Row("λ = 0", f"{CIFAR10}-table4-none", (88.79, 1.21), in_text="0"),
        Row("λ = 0.001", f"{CIFAR10}-table14-lambda-1e-3", (88.69, 1.45), in_text="0.001"),
        Row("λ = 0.005", f"{CIFAR10}-table14-lambda-5e-3", (88.65, 1.74), in_text="0.005"),
        Row("λ = 0.01", f"{CIFAR10}-table14-lambda-1e-2", (88.76, 1.80), in_text="0.01"),
        Row("λ = 0.05", f"{CIFAR10}-table14-lambda-5e-2", (88.73, 2.44), in_text="0.05"),
        Row("λ = 0.1", f"{CIFAR10}-table14-lambda-1e-1", (89.16, 2.69), in_text="0.1"),
        Row("λ = 0.5 (the paper's choice)", f"{CIFAR10}-table4-jacobian", (89.16, 3.42), in_text="0.5"),
        Row("λ = 1", f"{CIFAR10}-table14-lambda-1", (87.82, 4.08), in_text="1"),
        Row("λ = 2", f"{CIFAR10}-table14-lambda-2", (86.30, 4.83), in_text="2"),
        Row("λ = 5", f"{CIFAR10}-table14-lambda-5", (81.46, 4.60), in_text="5"),
    ),
    notes=(
        "λ = 0 fine-tunes with cross-entropy alone (Table 4's no-defense row); λ = 0.5 is Table 4's Jacobian row.",
        "The seed text loses the bold mark of the chosen λ; §4 names 0.5.",
        CHOICES,
    ),
    sweep=Sweep("lambda", (0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5)),
))

TABLE10 = register_table(Table(
    id=f"{CIFAR100}-table10",
    title="Robustness to DeepFool attack for CIFAR-100",
    source="jacobian_reg_jakubovitz2018.txt, Table 10 (Appendix E, CIFAR-100, DeepFool)",
    columns=(ACCURACY, RHO),
    rows=(
        Row("No defense", f"{CIFAR100}-table10-none", (59.64, 0.61)),
        Row("Adversarial Training", f"{CIFAR100}-table10-at", (60.67, 1.23)),
        Row("Input Gradient regularization", f"{CIFAR100}-table10-input-gradient", (62.55, 0.76)),
        Row("Input Gradient regularization & Adversarial Training", f"{CIFAR100}-table10-input-gradient-at",
            (60.66, 1.45)),
        Row("Jacobian regularization", f"{CIFAR100}-table10-jacobian", (59.20, 1.55)),
        Row("Jacobian regularization & Adversarial Training", f"{CIFAR100}-table10-jacobian-at", (60.38, 3.34)),
    ),
    notes=(
        "The CIFAR-10 net and post-processing training, at batch 96 and the Jacobian penalty's λ = 0.02 (Appendix "
        "E); no cross-Lipschitz rows: \"not scalable to large values of K\" (K = 100), as in the paper.",
        RHO_NOTE,
        CHOICES,
    ),
))
