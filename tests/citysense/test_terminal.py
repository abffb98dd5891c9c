"""CLI tables in a pipe: every character of a long cell is printed (folded), none cut with an ellipsis."""

from __future__ import annotations

import pytest
from rich.table import Table

from citysense.terminal import PIPE_WIDTH, make_console


def test_a_table_wider_than_a_pipe_folds_its_cells_instead_of_cutting_them(capsys: pytest.CaptureFixture[str]) -> None:
    device = "tp-school-" + "0123456789" * 25  # one unbroken word, wider than the pipe's width
    table = Table(title="drift")
    for column in ("device", "status", "compared with"):
        table.add_column(column)
    table.add_row(device, "insufficient data", "reference:moenv_banqiao")
    make_console().print(table)
    out = capsys.readouterr().out
    assert "…" not in out
    assert all(len(line) <= PIPE_WIDTH for line in out.splitlines())
    rows = [line.split("│")[1:-1] for line in out.splitlines() if line.count("│") == 4]
    columns = ["".join(row[i].strip() for row in rows) for i in range(3)]
    assert columns == [device, "insufficient data", "reference:moenv_banqiao"]
