"""`python -m citysense` runs the CLI."""

from citysense.cli import app

app()
