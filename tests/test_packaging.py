"""pyproject.toml builds with the setuptools of 2027: the licence is an SPDX expression, not a table."""

from __future__ import annotations

import tomllib

from tests.conftest import REPO


def test_the_license_is_an_spdx_string_and_setuptools_is_new_enough_to_read_it() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"  # PEP 639; `license = { text = ... }` breaks builds from 2027-02-18
    assert any(req.replace(" ", "").startswith("setuptools>=77") for req in pyproject["build-system"]["requires"])
