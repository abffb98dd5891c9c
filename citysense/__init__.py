"""citysense: open city sensing from low-cost air boxes and parking sensors to open data."""

__version__ = "0.1.0"
