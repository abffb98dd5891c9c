"""The CLI's consoles: long lines are never wrapped or cut, on a terminal or in a pipe; table cells fold.

Rich wraps at the terminal's width and, without a terminal (a pipe, a log, a test), at 80
columns, which cut table cells (`tp-school-0…`) and split one-line errors in two. Lines are
soft-wrapped (left to the terminal) and tables get room when there is no terminal to size them.
A table wider than that room, or than the terminal, folds its cells onto more lines instead
of cutting them with an ellipsis: every character of an id or a model is printed.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 200


class FoldingConsole(Console):
    """A Console whose tables fold long cells onto more lines (rich's default cuts them with '…')."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        for obj in objects:
            if isinstance(obj, Table):
                for column in obj.columns:
                    column.overflow = "fold"
        super().print(*objects, **kwargs)


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return FoldingConsole(stderr=stderr, soft_wrap=True, width=width)


def print_table(
    console: Console, headers: list[str], rows: list[list[str]], *, right: frozenset[int] = frozenset()
) -> None:
    """Columns padded to their widest cell and printed as plain lines: no value is ever cut or
    wrapped, whatever the terminal's width (a narrow terminal wraps the line, not the cell)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    console.print(line(headers), markup=False, highlight=False)
    for row in rows:
        console.print(line(row), markup=False, highlight=False)
