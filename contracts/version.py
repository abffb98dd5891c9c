"""The release version, in one place: the package metadata, the API's OpenAPI document and `citysense --version`."""

from __future__ import annotations

__version__ = "0.2.0"
