"""Jakubovitz & Giryes 2018, "Improving DNN Robustness to Adversarial Attacks using Jacobian
Regularization" (arXiv 1803.08680). Paper values transcribed from
shared/papers/jacobian_reg_jakubovitz2018.txt.
"""

from robust.tables import Column, Row, Table, register_table

SOURCE = "jacobian_reg_jakubovitz2018.txt, Table 3 (MNIST, DeepFool)"
ACCURACY = Column("Test accuracy %", attack="clean", metric="accuracy", scale=100.0)
RHO = Column("ρ_adv ×10⁻²", attack="deepfool", metric="rho_adv", scale=100.0)

TABLE3 = register_table(Table(
    id="jakubovitz2018-table3",
    title="Robustness to DeepFool attack for MNIST",
    source=SOURCE,
    columns=(ACCURACY, RHO),
    rows=(
        Row("No defense", "jakubovitz2018-table3-none", (99.08, 20.67)),
        Row("Adversarial Training", "jakubovitz2018-table3-at", (99.03, 22.38)),
        Row("Input Gradient regularization", "jakubovitz2018-table3-input-gradient", (99.25, 23.43)),
        Row("Input Gradient regularization & Adversarial Training", "jakubovitz2018-table3-input-gradient-at",
            (98.88, 23.49)),
        Row("Cross-Lipschitz regularization", "jakubovitz2018-table3-cross-lipschitz", (98.64, 29.03)),
        Row("Cross-Lipschitz regularization & Adversarial Training", "jakubovitz2018-table3-cross-lipschitz-at",
            (98.73, 32.38)),
        Row("Jacobian regularization", "jakubovitz2018-table3-jacobian", (98.44, 34.24)),
        Row("Jacobian regularization & Adversarial Training", "jakubovitz2018-table3-jacobian-at", (98.0, 36.29)),
    ),
    notes=(
        "All rows fine-tune the same pretrained base (post-processing training, as in the paper).",
        "Adversarial training mixes DeepFool examples into each batch; the paper reports, per row, the "
        "best percentage of Appendix F (10–50%) without saying which; the study file states the one used.",
        "ρ_adv averages ‖δ‖₂/‖x‖₂ over all evaluated points; misclassified points contribute 0.",
        "The paper gives no λ for the input-gradient and cross-Lipschitz rows: ours (1 and 0.01) are "
        "calibration choices, stated in studies/jakubovitz2018.yaml.",
    ),
))
