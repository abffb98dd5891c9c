"""Bench results as a rich table on the terminal and a JSON file under bench/results/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).resolve().parent.parent.parent / "bench" / "results"


def write_json(results: dict[str, Any], kind: str, out_dir: Path | None = None) -> Path:
    folder = out_dir or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if results.get("options", {}).get("quick") else ""
    path = folder / f"{kind}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}{suffix}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


_SHORT = {
    "gateway": "gw", "broker": "mq", "postgres": "pg", "load generator": "load", "latency probe": "probe",
    "subscriber": "sub", "bench (asyncpg)": "copy",
}


def _cpu(cpu: dict[str, float]) -> str:
    return " ".join(f"{_SHORT.get(k, k)} {v:.0f}" for k, v in cpu.items())


def ingest_table(r: dict[str, Any]) -> Table:
    gw = r["gateway"]
    machine = r["machine"]
    table = Table(title=f"citysense bench ingest ({machine['cpus']} cores; CPU in % of one core; backend "
                        f"{machine.get('backend')}; broker {str(machine.get('broker', 'open')).split(' ')[0]}; "
                        f"receipts {'on' if r['gateway_settings'].get('receipts') else 'off'})")
    for col in ("measurement", "msg/s", "readings/s", "p50 ms", "p95 ms", "p99 ms", "gateway is", "CPU"):
        table.add_column(col, justify="left" if col in ("measurement", "CPU") else "right")
    for key, label in (("gateway", "gateway, full load"), ("gateway_half_rate", "gateway, half load")):
        p = r[key]
        lat = p["latency_ms"]
        table.add_row(
            f"{label} ({p['offered_msg_s']:,.0f} offered)", _n(p["accepted_msg_s"]), _n(p["readings_s"]),
            _n(lat["p50_ms"], 1), _n(lat["p95_ms"], 1), _n(lat["p99_ms"], 1), "", _cpu(p["cpu_pct"]),
        )
    ratio = r["ratios"]
    copy, passthrough, naive = r["limit_copy"], r["limit_passthrough"], r["naive"]
    table.add_row(
        f"limit: asyncpg COPY ({copy['batch_rows']:,}-row txns)", _n(copy["msg_s"]), _n(copy["rows_s"]),
        "", "", "", f"{_n(ratio['gateway_vs_copy_limit'], 2)}x", _cpu(copy["cpu_pct"]),
    )
    plain = r.get("plain_postgresql")
    if plain:  # a TimescaleDB run also measures a plain-PostgreSQL database of the same server
        p, pc = plain["gateway"], plain["limit_copy"]
        lat = p["latency_ms"]
        table.add_row(
            "plain PostgreSQL: gateway, full load", _n(p["accepted_msg_s"]), _n(p["readings_s"]), _n(lat["p50_ms"], 1),
            _n(lat["p95_ms"], 1), _n(lat["p99_ms"], 1), f"TimescaleDB {_n(ratio['timescaledb_vs_plain_gateway'], 2)}x",
            _cpu(p["cpu_pct"]),
        )
        table.add_row(
            "plain PostgreSQL: asyncpg COPY", _n(pc["msg_s"]), _n(pc["rows_s"]), "", "", "",
            f"{_n(ratio['plain_gateway_vs_plain_copy_limit'], 2)}x", _cpu(pc["cpu_pct"]),
        )
    table.add_row(
        "limit: mosquitto -> paho", _n(passthrough["msg_s"]), "", "", "", "",
        f"{_n(ratio['gateway_vs_passthrough_limit'], 2)}x", _cpu(passthrough["cpu_pct"]),
    )
    table.add_row(
        "naive: INSERT per msg", _n(naive["msg_s"]), _n(naive["readings_s"]), "", "", "",
        f"{_n(ratio['gateway_vs_naive'], 1)}x", _cpu(naive["cpu_pct"]),
    )
    peer = r.get("node_red")
    if peer and "msg_s" in peer:
        kill = peer["kill9"]
        table.add_row(
            "peer: Node-RED join+INSERT flow", _n(peer["msg_s"]), _n(peer["readings_s"]), "", "", "",
            f"{_n(ratio['gateway_vs_node_red'], 1)}x", _cpu(peer["cpu_pct"]),
        )
        peer_note = (f"\nNode-RED: {_n(peer['cpu_us_per_msg'], 1)} us CPU/msg; kill -9 lost "
                     f"{kill['lost_messages']:,} of {kill['published_and_broker_acked']:,} acknowledged messages")
    elif peer:
        peer_note = f"\nNode-RED peer not run: {peer.get('skipped')}"
    else:
        peer_note = ""
    budget = r.get("cpu_us_per_msg", {})
    loss = r["loss"]
    table.caption = (
        f"loss: {loss['lost_messages']} of {loss['published_and_broker_acked']:,} messages; "
        f"readings {loss['readings_stored']:,}/{loss['readings_expected']:,}; "
        f"gateway vs lower limit {_n(ratio['gateway_vs_lower_limit'], 2)}x; "
        f"targets: {', '.join(f'{k}={v}' for k, v in r['targets'].items())}"
        f"\nCPU us per accepted message at full load: {', '.join(f'{k} {_n(v, 1)}' for k, v in budget.items())}"
        + peer_note
    )
    half = r["gateway_half_rate"].get("server_maintenance")
    if half:
        busy, calm = half["latency_while_busy"], half["latency_otherwise"]
        seen = ", ".join(f"{k} {v} s" for k, v in list(half["seconds_seen"].items())[:4]) or "nothing"
        table.caption += (
            f"\nhalf load, server maintenance seen: {seen}; p99 while a vacuum ran {_n(busy['p99_ms'], 1)} ms "
            f"({busy['samples']} rows), otherwise {_n(calm['p99_ms'], 1)} ms ({calm['samples']} rows)"
        )
    profile = gw.get("profile")
    if profile and profile.get("self"):
        top = ", ".join(f"{e['function']} {e['pct']}%" for e in profile["self"][:6])
        table.caption += f"\ngateway profile (py-spy, self time, {profile['samples']} samples): {top}"
    return table


def api_target_ms(request: str) -> int:
    """The p95 each read must meet: the map with no cache at all < 20 ms, SensorThings < 100 ms, others < 50 ms."""
    if "cache off" in request:
        return 20
    return 100 if "/sta/" in request else 50


def api_table(r: dict[str, Any]) -> Table:
    table = Table(title=f"citysense bench api ({r['data']['rows']:,} readings, {r['data']['devices']} devices)")
    for col in ("request", "n", "p50 ms", "p95 ms", "p99 ms", "target p95", "met"):
        table.add_column(col, justify="left" if col == "request" else "right")
    for name, q in r["queries"].items():
        target = api_target_ms(name)
        table.add_row(
            name, str(q["n"]), _n(q["p50_ms"], 1), _n(q["p95_ms"], 1), _n(q["p99_ms"], 1), f"< {target} ms",
            "yes" if q["p95_ms"] is not None and q["p95_ms"] < target else "no",
        )
    page = r.get("map_page") or {}
    if "markers_p50_ms" in page:
        table.add_row(
            f"browser: /map, {page['markers']:,} markers drawn (from navigation start)", str(page["loads"]),
            _n(page["markers_p50_ms"]), "", _n(page["markers_max_ms"]), f"max < {page['target_ms']:.0f} ms",
            "yes" if page["met"] else "no",
        )
    table.caption = f"data generation {r['data']['seconds']:.0f} s ({r['data']['rows_s']:,.0f} rows/s)"
    if "skipped" in page:
        table.caption += f"; map page not measured: {page['skipped']}"
    return table


def import_table(r: dict[str, Any]) -> Table:
    """`citysense bench import`: each phase's rate and CPU per reading, the fresh import against the COPY."""
    table = Table(title=f"citysense bench import ({r['csv_rows']:,} readings of CSV, chunks of {r['chunk_rows']:,}, "
                        f"backend {r['backend']})")
    for col in ("phase", "readings", "stored", "wall s", "readings/s", "per importer CPU-s", "per PostgreSQL CPU-s"):
        table.add_column(col, justify="left" if col == "phase" else "right")
    for name, p in r["phases"].items():
        table.add_row(name, _n(p["rows"]), _n(p["stored"]), _n(p["wall_s"], 2), _n(p["readings_s"]),
                      _n(p["readings_per_importer_cpu_s"]), _n(p["readings_per_postgres_cpu_s"]))
    table.caption = (f"fresh import vs raw COPY of the same rows (wall): {r['fresh_vs_copy']}x; "
                     f"aggregates refreshed for the range touched in {r['aggregates_refresh_s']} s")
    return table


def show(table: Table) -> None:
    console = Console()
    if not console.is_terminal or console.width < 150:
        console = Console(width=150)
    console.print(table)
