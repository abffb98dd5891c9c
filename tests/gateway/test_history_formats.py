"""The history readers' column-at-a-time paths give exactly what their one-value-at-a-time rules give."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from contracts.metrics import METRICS, SENTINELS
from contracts.records import DecodeError
from gateway.history_formats import TimeParser, read_csv, read_lass_json
from gateway.validation import (
    MAX_FUTURE_S,
    metric_value,
    plain_history_times,
    plain_metric_values,
    resolve_history_time,
)


def _stamps(seed: int, n: int) -> tuple[list[str], list[str]]:
    """Random instants from year 1 to 9999 written ``...Z`` and ``... +HH:MM`` (every offset width)."""
    rng = random.Random(seed)
    zulu, offset = [], []
    for _ in range(n):
        t = datetime(1, 1, 2, tzinfo=UTC) + timedelta(seconds=rng.randrange(0, 315_537_000_000))
        day = f"{t.year:04d}-{t.month:02d}-{t.day:02d}"
        zulu.append(f"{day}T{t:%H:%M:%S}Z")
        minutes = rng.randrange(-23 * 60 - 59, 23 * 60 + 60)
        sign = "+" if minutes >= 0 else "-"
        offset.append(f"{day} {t:%H:%M:%S}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
    return zulu, offset


@pytest.mark.parametrize("layout", [0, 1])
def test_time_column_gives_the_seconds_of_the_one_stamp_parser(layout: int) -> None:
    texts = _stamps(7, 5000)[layout]
    assert TimeParser(None).column(texts) == [TimeParser(None)(t) for t in texts]


def test_time_column_hands_what_the_arithmetic_cannot_vouch_for_to_the_one_stamp_parser() -> None:
    good = [f"2025-03-01T00:{m:02d}:00Z" for m in range(60)] * 2
    odd = ["2024-02-29T12:00:00Z", "2025-12-31T23:59:59Z", "2025-01-01 00:00:00Z", "0001-01-02T00:00:00Z"]
    assert TimeParser(None).column(good + odd) == [TimeParser(None)(t) for t in good + odd]
    for impossible in ("2025-02-29T00:00:00Z", "2025-03-01T00:00:60Z", "2025-13-01T00:00:00Z", "2025-03-01T24:00:00Z"):
        with pytest.raises(ValueError):
            TimeParser(None)(impossible)
        with pytest.raises(ValueError):
            TimeParser(None).column([*good, impossible])


def test_a_plain_file_and_the_same_file_with_odd_lines_give_the_same_rows(tmp_path: Path) -> None:
    lines = [f"box-{d},2025-03-01T00:{m:02d}:00Z,{metric},{m + d / 10}"
             for d in range(3) for m in range(60) for metric in ("pm25", "rh")]
    plain = tmp_path / "plain.csv"
    plain.write_text("device,time,metric,value\n" + "\n".join(lines) + "\n", encoding="utf-8")
    odd = tmp_path / "odd.csv"  # a quoted line, padding and an empty line send its block line by line
    odd_lines = [*lines[:10], f'"{lines[10].split(",")[0]}",{",".join(lines[10].split(",")[1:])}', " " + lines[11], "",
                 *lines[12:]]
    odd.write_text("device,time,metric,value\n" + "\n".join(odd_lines) + "\n", encoding="utf-8")
    rows_plain = [r for c in read_csv(plain) for r in c.rows()]
    rows_odd = [r for c in read_csv(odd) for r in c.rows()]
    assert rows_plain == rows_odd and len(rows_plain) == len(lines)


def test_a_bad_line_in_a_big_block_is_refused_with_its_number_and_the_rest_read(tmp_path: Path) -> None:
    lines = [f"box-a,2025-03-01T{m // 60:02d}:{m % 60:02d}:00Z,pm25,{m}" for m in range(500)]
    lines[200] = "box-a,2025-03-01T03:20:00Z,pm25,ten"
    path = tmp_path / "one-bad.csv"
    path.write_text("device,time,metric,value\n" + "\n".join(lines) + "\n", encoding="utf-8")
    chunks = list(read_csv(path, chunk_rows=128))
    assert sum(len(c) for c in chunks) == 499
    assert [r for c in chunks for r in c.refused] == ["line 202: could not convert string to float: 'ten'"]
    assert max(len(c) for c in chunks) == 128


def test_plain_time_column_agrees_with_resolve_history_time() -> None:
    now = 1_790_000_000.0
    ts = np.array([math.nan, math.inf, -math.inf, 0.0, 631_151_999.0, 631_152_000.0, 1.7e9, now + MAX_FUTURE_S,
                   now + MAX_FUTURE_S + 1, 1e11, 1.5e12], dtype=np.float64)
    expected = []
    for t in ts.tolist():
        try:
            expected.append(resolve_history_time(t, now) == (t, 2048))
        except DecodeError:
            expected.append(False)
    assert plain_history_times(ts, now).tolist() == expected


@pytest.mark.parametrize("name", [*METRICS, "no_such_metric"])
def test_plain_metric_column_agrees_with_metric_value(name: str) -> None:
    spec = METRICS.get(name)
    edges = [0.0, 1.0] if spec is None else [spec.low, spec.high, spec.low - 1e-9, spec.high + 1e-9]
    raws = np.array([*edges, *SENTINELS, math.nan, math.inf, -math.inf, 25.0, 101.0, -40.0], dtype=np.float64)
    expected = []
    for raw in raws.tolist():
        try:
            expected.append(metric_value(name, raw) == (name, raw, raw, 0))
        except DecodeError:
            expected.append(False)
    assert plain_metric_values([name] * len(raws), raws).tolist() == expected


def test_plain_metric_column_judges_each_row_by_its_own_metric() -> None:
    names = ["pm25", "rh", "rh", "t", "mystery", "pm25"]
    raws = np.array([-1.0, 100.5, 55.0, -30.0, 5.0, 999.0], dtype=np.float64)
    expected = [metric_value(n, r) == (n, r, r, 0) for n, r in zip(names, raws.tolist(), strict=True)]
    assert plain_metric_values(names, raws).tolist() == expected == [False, False, True, True, False, True]


def test_a_lass_history_comes_in_chunks_that_hold_all_its_readings(tmp_path: Path) -> None:
    entries = [{f"2024-12-01T00:{m:02d}:00Z": {"s_d0": m, "s_h0": 50 + m % 9, "s_t0": 20.5}} for m in range(50)]
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"device_id": "74DA38F210A2", "feeds": [{"AirBox": entries}]}), encoding="utf-8")
    chunks = list(read_lass_json(path, chunk_rows=40))
    whole = list(read_lass_json(path))
    assert [len(c) for c in chunks] == [42, 42, 42, 24] and [c.done for c in chunks] == [0, 0, 0, 1]
    assert [r for c in chunks for r in c.rows()] == whole[0].rows() and len(whole) == 1
