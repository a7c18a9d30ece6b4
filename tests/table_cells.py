"""Reading a rendered markdown table (robust.tables.render_table) back in the tests."""


def row_cells(text: str, label: str) -> list[str]:
    """The stripped cells of the first table line whose row label starts with ``label``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
    return [cell.strip() for cell in line.strip("|").split("|")]
