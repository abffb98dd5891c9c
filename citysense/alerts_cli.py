"""`citysense alerts`: run the evaluator and delivery worker, or check a rules file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Alert rules evaluated on a clock; delivery by webhook, e-mail and MQTT.", no_args_is_help=True)


@app.command()
def run(
    once: Annotated[bool, typer.Option(help="One evaluation cycle and one delivery pass, then exit")] = False,
) -> None:
    """Evaluate every CITYSENSE_ALERTS_INTERVAL_S and deliver the outbox, until SIGTERM/Ctrl-C."""
    from alerts.rules import RulesError  # noqa: PLC0415
    from alerts.service import AlertsStartError, run_alerts, run_once  # noqa: PLC0415
    from citysense.cli import _settings, fail  # noqa: PLC0415

    settings = _settings()
    try:
        asyncio.run(run_once(settings) if once else run_alerts(settings))
    except RulesError as exc:
        raise fail(str(exc), 2) from None
    except AlertsStartError as exc:
        raise fail(str(exc)) from None


@app.command("check-rules")
def check_rules(path: Annotated[Path, typer.Argument(help="A rules file (TOML)")]) -> None:
    """Validate a rules file and print its version and what it overrides."""
    from alerts.rules import RulesError, load_rules  # noqa: PLC0415
    from citysense.cli import fail  # noqa: PLC0415

    try:
        book = load_rules(path)
    except RulesError as exc:
        raise fail(str(exc), 2) from None
    typer.echo(
        f"rules {path}: version {book.version}, {len(book.file.overrides)} overrides, "
        f"{len(book.file.webhooks)} webhooks"
    )
