"""citysense: open city sensing from low-cost air boxes and parking sensors to open data."""

from contracts.version import __version__

__all__ = ["__version__"]
