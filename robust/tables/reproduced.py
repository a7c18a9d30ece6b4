"""Which paper tables have been reproduced beyond the committed outputs, and where the numbers are.

The committed ``metrics/`` come from the smoke profile, whose numbers check the machinery and are not
comparable to the papers'. Runs at the cpu profile (real data, hours per study on two cores) are written
up in ``docs/results/``; this record of which tables they covered feeds the status column of the tables
index (``metrics/tables/README.md``). A test holds every entry to a registered table and an existing page.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reproduced:
    profile: str  # "cpu" or "paper"
    extent: str  # which rows ran, e.g. "every row"
    page: str  # the repository-relative docs page that holds the numbers


def _every_row(page: str, *table_ids: str) -> dict[str, Reproduced]:
    return {table_id: Reproduced("cpu", "every row", f"docs/results/{page}.md") for table_id in table_ids}


# No table has run at the paper profile (it needs a GPU). The SVHN and CIFAR-100 tables have not run at
# cpu: neither data set has an offline copy.
REPRODUCED: dict[str, Reproduced] = {
    **_every_row("jakubovitz2018", "jakubovitz2018-table1", "jakubovitz2018-table2", "jakubovitz2018-table3",
                 "jakubovitz2018-table5", "jakubovitz2018-table6", "jakubovitz2018-table7", "jakubovitz2018-table8",
                 "jakubovitz2018-table9", "jakubovitz2018-table11", "jakubovitz2018-table12",
                 "jakubovitz2018-table13", "jakubovitz2018-cifar10-table4", "jakubovitz2018-cifar10-table14"),
    **_every_row("matyasko2018", "matyasko2018-table1a", "matyasko2018-table1b", "matyasko2018-table2a-proxy",
                 "matyasko2018-table2b-proxy"),
    **_every_row("chan2020", "chan2020-table1", "chan2020-cifar10-table3", "chan2020-cifar10-table5",
                 "chan2020-cifar10-fig5-lambda", "chan2020-cifar10-fig5-batch", "chan2020-cifar10-fig5-disc-every"),
    **_every_row("roth2018", "roth2018-mnist-whitebox", "roth2018-mnist-fgsm-transfer", "roth2018-mnist-pgd-transfer",
                 "roth2018-mnist-lrc", "roth2018-cifar10-whitebox", "roth2018-cifar10-fgsm-transfer",
                 "roth2018-cifar10-pgd-transfer", "roth2018-cifar10-lrc"),
    **_every_row("bashivan2021", "bashivan2021-table1", "bashivan2021-table2", "bashivan2021-tablea3",
                 "bashivan2021-tablea5", "bashivan2021-tablea6", "bashivan2021-tablea7", "bashivan2021-cifar10-table1",
                 "bashivan2021-cifar10-table2", "bashivan2021-cifar10-tablea3", "bashivan2021-cifar10-tablea5"),
}
