"""Reference files: MOENV station CSVs and generic CSVs, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration.reference_import import (
    ReferenceFormatError,
    detect_format,
    read_generic,
    read_moenv,
    read_reference,
)

HOURS_00 = ",".join(f"{h:02d}" for h in range(24))
HOURS_1 = ",".join(str(h) for h in range(1, 25))


def modern_moenv() -> str:
    pm = [str(10 + h) for h in range(24)]
    pm[3] = "#"  # instrument check invalid
    pm[4] = "17x"  # flag suffixed to a value: still invalid
    rh = [str(60 + h) for h in range(24)]
    return (
        f"測站,日期,測項,{HOURS_00},\n"
        f"板橋,2025/03/01 00:00:00,PM2.5,{','.join(pm)},\n"
        f"板橋,2025/03/01 00:00:00,RH,{','.join(rh)},\n"
        f"板橋,2025/03/01 00:00:00,NO2,{','.join(['5'] * 24)},\n"
    )


def test_moenv_modern_layout_is_converted_from_taiwan_time_to_utc() -> None:
    series = read_moenv(modern_moenv())
    # 00:00 Taipei on 1 March = 16:00 UTC on 28 February.
    assert series.times[0] == np.datetime64("2025-02-28T16:00:00")
    assert series.times[-1] == np.datetime64("2025-03-01T15:00:00")
    assert series.pm25[0] == 10.0 and series.pm25[23] == 33.0
    assert np.isnan(series.pm25[3]) and np.isnan(series.pm25[4])
    assert series.rh is not None and series.rh[5] == 65.0
    assert any("flagged" in note for note in series.notes)
    assert any("2 hour(s)" in note for note in series.notes)


def test_moenv_legacy_layout_with_hours_1_to_24() -> None:
    text = f"日期,測站,測項,{HOURS_1}\n2010/01/01,二林,PM2.5,{','.join(str(h) for h in range(1, 25))}\n"
    series = read_moenv(text)
    assert series.times[0] == np.datetime64("2009-12-31T16:00:00")  # column "1" is 00:00-00:59 local
    assert series.pm25[0] == 1.0


def test_moenv_big5_file_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "ref.csv"
    text = f"日期,測站,測項,{HOURS_00}\n2010/01/01,二林,PM2.5,{','.join(['12'] * 24)}\n"
    path.write_bytes(text.encode("cp950"))
    series = read_reference(path)
    assert len(series) == 24 and float(series.pm25.mean()) == 12.0


def test_moenv_several_stations_need_a_choice() -> None:
    text = modern_moenv() + f"土城,2025/03/01 00:00:00,PM2.5,{','.join(['9'] * 24)},\n"
    with pytest.raises(ReferenceFormatError, match="several stations"):
        read_moenv(text)
    assert float(np.nanmax(read_moenv(text, station="土城").pm25)) == 9.0


def test_moenv_duplicate_rows_are_refused() -> None:
    text = modern_moenv() + f"板橋,2025/03/01 00:00:00,PM2.5,{','.join(['9'] * 24)},\n"
    with pytest.raises(ReferenceFormatError, match="duplicate pm25 row"):
        read_moenv(text)


def test_generic_with_offsets() -> None:
    text = "time,pm25,rh\n2025-03-01T08:00+08:00,12.5,70\n2025-03-01T01:00Z,14,71\n"
    series = read_generic(text)
    assert list(series.times) == [np.datetime64("2025-03-01T00:00:00"), np.datetime64("2025-03-01T01:00:00")]
    assert series.rh is not None and list(series.rh) == [70.0, 71.0]


def test_generic_naive_times_need_a_zone() -> None:
    text = "time,pm25\n2025-03-01 08:00,12.5\n"
    with pytest.raises(ReferenceFormatError, match="no UTC offset"):
        read_generic(text)
    series = read_generic(text, tz="Asia/Taipei")
    assert series.times[0] == np.datetime64("2025-03-01T00:00:00")


def test_generic_duplicate_hours_are_refused_even_across_zones() -> None:
    text = "time,pm25\n2025-03-01T08:00+08:00,12\n2025-03-01T00:00Z,13\n"
    with pytest.raises(ReferenceFormatError, match="line 3: duplicate hour"):
        read_generic(text)


def test_generic_sub_hourly_times_are_refused() -> None:
    with pytest.raises(ReferenceFormatError, match="not on the hour"):
        read_generic("time,pm25\n2025-03-01T08:30Z,12\n")


def test_generic_missing_hours_stay_gaps_and_are_counted() -> None:
    text = "time,pm25\n2025-03-01T00:00Z,10\n2025-03-01T01:00Z,\n2025-03-01T05:00Z,12\n"
    series = read_generic(text)
    assert len(series) == 3
    assert series.missing_hours() == 4
    assert any("4 hour(s)" in note for note in series.notes)


def test_mg_per_m3_must_be_declared() -> None:
    rows = "\n".join(f"2025-03-01T{h:02d}:00Z,0.0{h % 9 + 1}" for h in range(24))
    text = f"time,pm25\n{rows}\n"
    with pytest.raises(ReferenceFormatError, match="looks like mg/m³"):
        read_generic(text)
    series = read_generic(text, unit="mg/m3")
    assert series.pm25[0] == pytest.approx(10.0)


def test_bad_numbers_and_headers() -> None:
    with pytest.raises(ReferenceFormatError, match="line 2: pm25 value 'abc'"):
        read_generic("time,pm25\n2025-03-01T00:00Z,abc\n")
    with pytest.raises(ReferenceFormatError, match="header"):
        read_generic("when,value\n")
    with pytest.raises(ReferenceFormatError, match="unknown unit"):
        read_generic("time,pm25\n", unit="ppm")


def test_format_detection() -> None:
    assert detect_format(modern_moenv()) == "moenv"
    assert detect_format("\ufefftime,pm25\n") == "generic"
