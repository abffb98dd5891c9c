"""The half-load latency split by what the server was doing when each row committed."""

from __future__ import annotations

from devtools.bench.latency import MAINTENANCE_EVERY_S, Maintenance, maintenance_effect


def test_rows_committed_during_a_vacuum_are_told_apart_from_the_others() -> None:
    notes: Maintenance = [(100.0 + k * MAINTENANCE_EVERY_S, ()) for k in range(40)]  # 100 s .. 109.75 s
    for k in range(20, 28):  # a vacuum of readings from 105 s to 106.75 s
        notes[k] = (notes[k][0], ("vacuum readings",))
    # (ts, latency): rows committed at 101 s (calm), 105.5 s (during), 108.5 s (calm again)
    samples = [(100.9, 0.1), (101.0, 0.05), (104.5, 1.0), (105.0, 0.8), (108.4, 0.1), (120.0, 5.0)]
    effect = maintenance_effect(samples, notes, 100.0, 110.0)
    assert effect["seconds_seen"] == {"vacuum readings": 8 * MAINTENANCE_EVERY_S}
    assert effect["busy_share"] == 0.2
    assert effect["latency_while_busy"]["samples"] == 2 and effect["latency_while_busy"]["max_ms"] == 1000.0
    # the row at 120 s lies outside the window
    assert effect["latency_otherwise"]["samples"] == 3 and effect["latency_otherwise"]["max_ms"] == 100.0


def test_a_checkpoint_is_reported_but_does_not_make_a_row_busy() -> None:
    notes: Maintenance = [(100.0 + k * MAINTENANCE_EVERY_S, ("checkpoint",)) for k in range(8)]
    effect = maintenance_effect([(100.5, 0.2)], notes, 100.0, 102.0)
    assert effect["seconds_seen"] == {"checkpoint": 8 * MAINTENANCE_EVERY_S}
    assert effect["busy_share"] == 0.0 and effect["latency_otherwise"]["samples"] == 1


def test_no_notes_means_every_row_counts_as_calm() -> None:
    effect = maintenance_effect([(1.0, 0.2)], [], 0.0, 10.0)
    assert effect["busy_share"] is None and effect["seconds_seen"] == {}
    assert effect["latency_otherwise"]["samples"] == 1 and effect["latency_while_busy"]["samples"] == 0
