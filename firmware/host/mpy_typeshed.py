"""Lay out an installed MicroPython stub package as the typeshed mypy checks the device code against.

The stubs from PyPI (`micropython-esp32-stubs`, `micropython-rp2-stubs`, both built on
`micropython-stdlib-stubs`) are meant to replace CPython's standard library, not to sit
beside it: a board's `time`, `machine` or `umqtt.simple` must win over CPython's. mypy
allows that only through `--custom-typeshed-dir` (the stdlib) plus `mypy_path` (the
board's own modules), and mypy refuses a search path inside site-packages, where pip put
the stubs. So this copies the files the two distributions installed (read from their
metadata, nothing guessed) into one directory:

    OUT/stdlib/, OUT/stubs/   the MicroPython stdlib (custom_typeshed_dir = OUT)
    OUT/board/                the board's modules and `_mpy_shed` (on mypy_path)

`firmware/mypy-device.ini` points at `build/mpy-typeshed-<board>`; `make lint` runs this
first. Usage: python firmware/host/mpy_typeshed.py [--board esp32] [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
STDLIB_DISTRIBUTION = "micropython-stdlib-stubs"
TYPESHED_PARTS = ("stdlib", "stubs")  # typeshed's own layout: OUT/stdlib, OUT/stubs


def board_distribution(board: str) -> str:
    return f"micropython-{board}-stubs"


def default_out(board: str) -> Path:
    return REPO / "build" / f"mpy-typeshed-{board}"


def stub_files(distribution: str) -> list[tuple[Path, Path]]:
    """(installed file, path relative to the typeshed) for every .pyi and VERSIONS file of a distribution.

    Raises metadata.PackageNotFoundError naming the distribution when it is not installed.
    """
    dist = metadata.distribution(distribution)
    found: list[tuple[Path, Path]] = []
    for rel in dist.files or ():
        parts = Path(rel).parts
        if not parts or parts[0].endswith(".dist-info") or not (rel.name.endswith(".pyi") or rel.name == "VERSIONS"):
            continue
        where = Path(*parts) if parts[0] in TYPESHED_PARTS else Path("board", *parts)
        found.append((Path(str(dist.locate_file(rel))), where))
    return found


def lay_out(board: str, out: Path) -> int:
    """Replace `out` with the typeshed of `board`; return the number of stub files copied."""
    files = stub_files(STDLIB_DISTRIBUTION) + stub_files(board_distribution(board))
    if out.exists():
        shutil.rmtree(out)
    for src, rel in files:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    if not (out / "stdlib" / "VERSIONS").is_file():
        raise RuntimeError(f"{STDLIB_DISTRIBUTION} installed no stdlib/VERSIONS: not a typeshed layout")
    return len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--board", default="esp32", help="esp32 or rp2: micropython-<board>-stubs must be installed")
    parser.add_argument("--out", type=Path, default=None, help="default: build/mpy-typeshed-<board>")
    args = parser.parse_args(argv)
    out = args.out or default_out(args.board)
    try:
        count = lay_out(args.board, out)
    except metadata.PackageNotFoundError as exc:
        print(f"stub package {exc} is not installed (pip install {exc})", file=sys.stderr)
        return 2
    print(f"{count} stub files of {board_distribution(args.board)} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
