"""Find the command blocks of the user docs, and say which a walker runs and which it may not.

The convention (README.md, "Tests", says it too):

* A fenced block with the info string `console` is **walked**. Each line starting with `$ ` is a
  command (a line ending in `\\` continues on the next); the lines after it, up to the next command,
  are its expected output. The command must exit 0 (or the status an expected line `(exit N)`
  names), and every other expected line must appear in what it printed (stdout and stderr), in
  order, runs of spaces equal and `...` matching anything.
* Any other fenced block must come right after a comment `<!-- not walked: REASON -->` (flashing a
  board, installing packages, a server that runs until Ctrl-C, a payload or source example). A
  block that is neither is an error, so a new block is walked or excluded on purpose, never by
  being forgotten.
* A command written in an indented (unfenced) block is an error too: fence it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WALKED_DOCS = ["README.md", "docs/schools.md", "docs/bureaus.md", "docs/calibration.md", "firmware/README.md"]

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_NOT_WALKED = re.compile(r"^\s*<!--\s*not walked:\s*(\S.*?)\s*-->\s*$")
_EXIT = re.compile(r"^\(exit (\d+)\)$")
_INDENTED_COMMAND = re.compile(r"^( {4,}|\t)(\$ |citysense |make |curl |mpremote )")


class DocFormatError(ValueError):
    """A doc breaks the convention above; the message names the file and line."""


@dataclass
class Step:
    """One command of a walked block and what it must print."""

    command: str
    expected: list[str] = field(default_factory=list)
    exit_status: int = 0


@dataclass
class Block:
    """A fenced block: where it is, its info string, its text, and why it is not walked (if it is not)."""

    doc: str
    line: int  # 1-based line of the opening fence
    info: str
    lines: list[str]
    not_walked: str | None

    @property
    def walked(self) -> bool:
        return self.not_walked is None

    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    def steps(self) -> list[Step]:
        """The block's commands with their expected output (see the module docstring)."""
        steps: list[Step] = []
        pending = ""
        for raw in self.lines:
            text = raw.rstrip()
            if pending or text.startswith("$ "):
                body = text if pending else text[2:]
                if body.endswith("\\"):
                    pending += body[:-1].rstrip() + " "
                    continue
                steps.append(Step(pending + body.strip()))
                pending = ""
                continue
            if not text.strip():
                continue
            if not steps:
                raise DocFormatError(f"{self.where()}: output before the first `$ ` command: {text!r}")
            status = _EXIT.match(text.strip())
            if status:
                steps[-1].exit_status = int(status.group(1))
            else:
                steps[-1].expected.append(text.strip())
        if pending:
            raise DocFormatError(f"{self.where()}: the last command ends with a continuation `\\`")
        if not steps:
            raise DocFormatError(f"{self.where()}: a console block without a `$ ` command")
        return steps


def parse_blocks(doc: str, text: str) -> list[Block]:
    """Every fenced block of `text`; raises DocFormatError where the convention is broken."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            if _INDENTED_COMMAND.match(lines[i]) and (i == 0 or not lines[i - 1].strip()):
                raise DocFormatError(f"{doc}:{i + 1}: a command in an indented block; fence it (```console)")
            i += 1
            continue
        indent, fence, info = m.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i == len(lines):
            raise DocFormatError(f"{doc}:{start + 1}: a fenced block that is never closed")
        i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = _NOT_WALKED.match(previous)
        block = Block(doc, start + 1, info, body, marker.group(1) if marker else None)
        if block.walked and info != "console":
            raise DocFormatError(
                f"{block.where()}: a ```{info} block that is neither walked (```console with `$ ` commands) nor "
                "excluded (`<!-- not walked: REASON -->` on the line before)"
            )
        blocks.append(block)
    return blocks


def output_matches(expected: list[str], output: str) -> str | None:
    """None when every expected line appears in `output` in order; else the first line that does not."""
    printed = [" ".join(line.split()) for line in output.splitlines()]
    at = 0
    for want in expected:
        pattern = re.compile(".*?".join(re.escape(" ".join(part.split())) for part in want.split("...")))
        while at < len(printed) and not pattern.search(printed[at]):
            at += 1
        if at == len(printed):
            return want
        at += 1
    return None


def doc_blocks() -> dict[str, list[Block]]:
    """The blocks of every walked doc, by doc."""
    return {doc: parse_blocks(doc, (REPO / doc).read_text(encoding="utf-8")) for doc in WALKED_DOCS}
