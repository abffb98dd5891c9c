"""One table for `make bench`: each target of the speed issue, the figure measured in this run, and the ratio.

The ingest, backfill and API benches each print their own detailed table; this one puts the
figures the targets name side by side (ratios measured in the same run on the same machine),
so a reader sees at once which target is met and which part is the limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

from devtools.bench.report import api_target_ms


@dataclass(frozen=True)
class TargetRow:
    target: str
    measured: str
    ratio: str
    met: bool | None


def _fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _met(value: float | None, ok: bool) -> bool | None:
    return None if value is None else ok


def ingest_rows(r: dict[str, Any]) -> list[TargetRow]:
    """Throughput against the raw COPY of the same rows, the peer, latency and loss."""
    ratio = r["ratios"]
    backend = r["machine"].get("backend", "?")
    gw = r["gateway"]["accepted_msg_s"]
    copy = r["limit_copy"]["msg_s"]
    rows = [
        TargetRow(f"gateway >= 0.85x raw COPY ({backend})", f"{_fmt(gw)} vs {_fmt(copy)} msg/s",
                  f"{_fmt(ratio['gateway_vs_copy_limit'], 2)}x",
                  _met(ratio["gateway_vs_copy_limit"], (ratio["gateway_vs_copy_limit"] or 0) >= 0.85)),
    ]
    plain = r.get("plain_postgresql")
    if plain:
        rows.append(TargetRow(
            "gateway >= 0.85x raw COPY (plain PostgreSQL)",
            f"{_fmt(plain['gateway']['accepted_msg_s'])} vs {_fmt(plain['limit_copy']['msg_s'])} msg/s",
            f"{_fmt(ratio['plain_gateway_vs_plain_copy_limit'], 2)}x",
            _met(ratio["plain_gateway_vs_plain_copy_limit"], (ratio["plain_gateway_vs_plain_copy_limit"] or 0) >= 0.85),
        ))
        rows.append(TargetRow(
            "TimescaleDB >= 0.9x plain PostgreSQL", "", f"{_fmt(ratio['timescaledb_vs_plain_gateway'], 2)}x",
            _met(ratio["timescaledb_vs_plain_gateway"], (ratio["timescaledb_vs_plain_gateway"] or 0) >= 0.9),
        ))
    else:
        rows.append(TargetRow("TimescaleDB >= 0.9x plain PostgreSQL", f"not measured: backend {backend}", "", None))
    peer = r.get("node_red") or {}
    rows.append(TargetRow(
        ">= 3x Node-RED's batched flow",
        f"{_fmt(gw)} vs {_fmt(peer.get('msg_s'))} msg/s" if "msg_s" in peer
        else f"not run: {peer.get('skipped', 'no --peer')}",
        f"{_fmt(ratio['gateway_vs_node_red'], 2)}x",
        _met(ratio["gateway_vs_node_red"], (ratio["gateway_vs_node_red"] or 0) >= 3),
    ))
    p99 = r["gateway_half_rate"]["latency_ms"]["p99_ms"]
    rows.append(TargetRow(
        "p99 publish-to-committed < 250 ms at half load",
        f"{_fmt(p99, 0, ' ms')} at {_fmt(r['gateway_half_rate']['accepted_msg_s'])} msg/s", "",
        _met(p99, (p99 or 0) < 250),
    ))
    loss = r["loss"]
    rows.append(TargetRow(
        "0 lost (QoS 1, ack after commit, receipts on)",
        f"{loss['lost_messages']} of {loss['published_and_broker_acked']:,} messages", "", loss["lost_messages"] == 0,
    ))
    return rows


def api_rows(r: dict[str, Any]) -> list[TargetRow]:
    out = []
    for name, q in r["queries"].items():
        if "cache off" not in name:
            continue
        target = api_target_ms(name)
        out.append(TargetRow(f"{name} p95 < {target} ms ({r['data']['devices']} devices)",
                             _fmt(q["p95_ms"], 1, " ms"), "", _met(q["p95_ms"], (q["p95_ms"] or 0) < target)))
    return out


def map_page_rows(r: dict[str, Any]) -> list[TargetRow]:
    page = r.get("map_page") or {}
    if "markers_max_ms" not in page:
        return [TargetRow("map page usable < 2 s (browser)", f"not measured: {page.get('skipped', '?')}", "", None)]
    return [TargetRow(
        f"map page: {page['markers']:,} markers drawn < {page['target_ms']:.0f} ms (browser, cold + warm)",
        f"p50 {page['markers_p50_ms']} ms, max {page['markers_max_ms']} ms (cold {page['cold_markers_ms']} ms)",
        "", page["met"],
    )]


def backfill_rows(r: dict[str, Any]) -> list[TargetRow]:
    replay = r["replay"]
    return [TargetRow(
        "flash-queue backfill (readings/s, vs raw COPY)",
        f"{_fmt(replay['readings_s'])} vs {_fmt(r['limit_copy']['rows_s'])} rows/s",
        f"{_fmt(r.get('ratio_vs_copy'), 2)}x", None,
    )]


def import_rows(r: dict[str, Any]) -> list[TargetRow]:
    """`citysense import` into plain PostgreSQL against its 100,000 readings/s target and the raw COPY."""
    fresh, year = r["phases"]["fresh"], r["phases"]["reference_year"]
    return [
        TargetRow("history import >= 100,000 readings/s (CSV, vs raw COPY)",
                  f"{_fmt(fresh['readings_s'])} vs {_fmt(r['phases']['copy']['readings_s'])} readings/s",
                  f"{_fmt(r.get('fresh_vs_copy'), 2)}x",
                  _met(fresh["readings_s"], (fresh["readings_s"] or 0) >= 100_000)),
        TargetRow("a reference station's year, hourly (MOENV file)",
                  f"{_fmt(year['rows'])} readings in {year['wall_s']} s, {_fmt(year['readings_s'])} readings/s",
                  "", None),
    ]


def summary_table(rows: list[TargetRow], backend: str) -> Table:
    table = Table(title=f"citysense bench: the targets in one run (backend {backend})")
    for col in ("target", "measured", "ratio", "met"):
        table.add_column(col, justify="left" if col in ("target", "measured") else "right")
    for row in rows:
        table.add_row(row.target, row.measured, row.ratio, "-" if row.met is None else ("yes" if row.met else "no"))
    return table
