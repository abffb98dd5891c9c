"""The parking detector scored on physically modelled street traces it was not tuned on (CPython only).

Seeds: the detector's constants were tuned on seeds 1000-1001, 2000-2001, 7000-7001, 9000-9001,
11000-11001 and 13000-13001 (`python firmware/host/parkscore.py --seed 1000 --misses`; 7000, 9000,
11000 and 13000 were each held out first and became tuning seeds once their failures were looked
at). This file scores HELD_OUT_SEEDS, two traces per family (25 trace-days), with the definitions of
firmware/host/parkscore.py. They were never tuned on at first, but their table was seen in issue 18's
second pass and their failures were looked at in the third, so they are a regression set now (as are
17000-17003 and 21000-21003, the second and third passes' held-out sets, tuned on in the fourth, and
23000-23003, the fourth pass's, looked at in the fifth; and 26000-28003 and 41000-41001, looked at
in the seventh); the held-out figures (seeds 24000-24003, 25000-25007, 26000-26003, 27000-27003,
28000-28003 and 29000-29003, each first scored once) are in firmware/README.md, with the scores on
variants of the generator (`streettraces.Variant`). The file
asserts the issue's targets (99 % recall and precision, 99.5 % occupied time, no flapping) in every
family that meets them here. The families that do not yet meet them are named in BELOW_TARGET with
the floor they hold (what they reach on these seeds, less a small margin): the gap is stated, not
hidden.
"""

from __future__ import annotations

import math

import parkscore
import pytest
import streettraces

HELD_OUT_SEEDS = (15000, 15001)
TARGET = (99.0, 99.0, 99.5)  # recall %, precision %, occupied-time %

# family: (recall %, precision %, occupied-time %) floors on the held-out set, below the target
BELOW_TARGET: dict[str, tuple[float, float, float]] = {
    "scooters": (96.5, 98.0, 98.0),  # 1 m bays: a neighbour's scooter leaves as much field as a small own one
    # a wipe (first boot) on a small car that looks like Earth's field: the bay is guessed wrong until it recurs
    "reboots_maintenance": (97.5, 97.5, 96.5),
}


@pytest.fixture(scope="module")
def held_out() -> dict[str, parkscore.Score]:
    traces = [streettraces.generate(f, s) for f in streettraces.FAMILIES for s in HELD_OUT_SEEDS]
    return parkscore.score_set(traces, parkscore.default_detector)


@pytest.mark.slow
def test_detector_meets_the_issue_targets_on_held_out_seeds_in_every_family_not_named_below_target(
    held_out: dict[str, parkscore.Score],
) -> None:
    print("\n" + parkscore.table(held_out))
    assert set(held_out) == {f.name for f in streettraces.FAMILIES}
    met = [family for family in held_out if family not in BELOW_TARGET]
    assert len(met) >= 9
    recall, precision, occupied = TARGET
    for family in met:
        s = held_out[family]
        assert s.recall >= recall and s.precision >= precision and s.occupied_accuracy >= occupied, family
    for family, score in held_out.items():
        assert score.flaps == 0, family


@pytest.mark.slow
def test_families_below_the_target_hold_their_floors_on_held_out_seeds(
    held_out: dict[str, parkscore.Score],
) -> None:
    for family, (recall, precision, occupied) in BELOW_TARGET.items():
        s = held_out[family]
        assert s.recall >= recall and s.precision >= precision and s.occupied_accuracy >= occupied, family


@pytest.mark.slow
def test_detector_finds_98_5_percent_of_all_held_out_events_with_under_0_4_false_changes_a_day(
    held_out: dict[str, parkscore.Score],
) -> None:
    total = parkscore.Score("all")
    for s in held_out.values():
        total.add(s)
    assert total.events > 1200
    assert total.recall >= 98.5 and total.precision >= 99.0 and total.false_per_day <= 0.4


def test_street_traces_are_seeded_and_have_earth_s_field_when_the_bay_is_empty() -> None:
    fam = next(f for f in streettraces.FAMILIES if f.name == "cars_parallel")
    a, b = streettraces.generate(fam, 5), streettraces.generate(fam, 5)
    assert a.x == b.x and a.truth == b.truth and a.events() == b.events()
    empty = [i for i in range(a.n) if a.ok[i] and not a.truth[i]][:600]
    mag = sum(math.sqrt(a.x[i] ** 2 + a.y[i] ** 2 + a.z[i] ** 2) for i in empty) / len(empty)
    assert abs(mag - streettraces.EARTH_UT) < 12.0  # installation offset and gain errors, not more
    q = streettraces.LSB_UT
    assert all(abs(a.x[i] / q - round(a.x[i] / q)) < 1e-6 for i in empty)  # QMC5883L counts


def test_a_parked_car_swings_the_field_in_direction_during_its_manoeuvre() -> None:
    earth = streettraces.earth_in_bay(30.0)
    import random

    rng = random.Random(3)
    lay = streettraces.Layout("parallel", 6.0, -3.0)
    car = streettraces.make_vehicle(rng, "car", earth)
    car.keys = streettraces.arrival_path(rng, lay, 100.0, (0.0, 0.0, 0.0)).keys
    fields = [car.field_at_sensor(float(t)) for t in range(60, 101)]
    parked = fields[-1]
    angles = []
    for f in fields:
        dot = sum(p * q for p, q in zip(f, parked, strict=True))
        n = math.sqrt(sum(p * p for p in f)) * math.sqrt(sum(p * p for p in parked))
        angles.append(math.degrees(math.acos(max(-1.0, min(1.0, dot / n)))) if n > 1e-9 else 0.0)
    assert max(angles) > 45.0  # not one vector scaled up and down
    assert math.sqrt(sum(p * p for p in parked)) > 5.0


def test_score_counts_a_late_report_as_missed_a_blip_as_flapping_and_an_unseen_event_from_the_power_up() -> None:
    fam = streettraces.Family("unit", 0.05, neighbours=False, lane_per_h=0.0, stay_s=(600.0, 601.0))
    tr = streettraces.generate(fam, 1)
    events = tr.events()
    assert events, "the unit trace holds a visit"

    class Replay:
        """A stand-in detector that reports given changes at given samples."""

        def __init__(self, plan: dict[int, int]) -> None:
            self.plan, self.i, self.state, self.occupied = plan, 0, 1, 0
            self.save_due = False

        def update(self, x: float, y: float, z: float, t: float | None = None) -> bool:
            self.i += 1
            if self.i - 1 in self.plan:
                self.occupied = self.plan[self.i - 1]
                return True
            return False

        def skip(self) -> None:
            self.i += 1

        def snapshot(self) -> list[float]:
            return []

    t_in = events[0][0]
    good = {t + 10: st for t, st in events}
    late = {**good, t_in + parkscore.LATE_S + 5: 1}
    del late[t_in + 10]
    blip = {**good, t_in + 200: 0, t_in + 230: 1}
    s_good = parkscore.score_trace(tr, lambda: Replay(good))  # type: ignore[arg-type,return-value]
    s_late = parkscore.score_trace(tr, lambda: Replay(late))  # type: ignore[arg-type,return-value]
    s_blip = parkscore.score_trace(tr, lambda: Replay(blip))  # type: ignore[arg-type,return-value]
    n = len(events)
    assert s_good.recall == 100.0 and s_good.precision == 100.0 and s_good.occupied_accuracy == 100.0
    assert s_late.matched == n - 1 and s_late.flaps == 0 and s_late.occupied_accuracy < 100.0
    assert s_blip.matched == n and s_blip.flaps == 1 and s_blip.reports == n + 2

    # an event while the device is unpowered is judged from its power-up: a report LATE_S after the
    # power-up still matches, one later does not (Replay counts the samples it is given: none unpowered)
    t_out = events[1][0]
    cut, up = t_out - 20, t_out + 40  # a 60 s power cut over the departure (the next arrival is 198 s on)
    tr.powered[cut:up] = bytes(up - cut)
    assert parkscore.deadline(tr, t_out) == up + parkscore.LATE_S
    assert parkscore.deadline(tr, t_in) == t_in + parkscore.LATE_S
    given = {k if k < t_out else k - (up - cut): st for k, st in good.items() if k != t_out + 10}
    in_time = {**given, up + parkscore.LATE_S - 5 - (up - cut): 0}
    too_late = {**given, up + parkscore.LATE_S + 5 - (up - cut): 0}
    seen = parkscore.score_trace(tr, lambda: Replay(in_time))  # type: ignore[arg-type,return-value]
    assert seen.matched == n and seen.occupied_accuracy == 100.0  # the wait for the report is in the window
    assert parkscore.score_trace(tr, lambda: Replay(too_late)).matched == n - 1  # type: ignore[arg-type,return-value]
    # an event just before a power cut: its window goes on after the cut by what the cut took from it
    assert parkscore.deadline(tr, cut - 30) == up + parkscore.LATE_S - 30


def test_the_default_variant_is_the_documented_generator_and_a_variant_changes_what_it_names() -> None:
    fam = streettraces.Family("unit", 0.05, neighbours=False, lane_per_h=0.0, stay_s=(600.0, 601.0))
    a, b = streettraces.generate(fam, 1), streettraces.generate(fam, 1, streettraces.Variant())
    assert a.x == b.x and a.y == b.y and a.z == b.z and a.temp == b.temp and a.truth == b.truth

    # without noise, the empty bay reads one value whatever the temperature only without temperature
    # coefficients (the rest: manoeuvres, which the truth counts as empty, and a spike now and then)
    def commonest_empty_share(variant: streettraces.Variant) -> float:
        tr = streettraces.generate(fam, 1, variant)
        assert max(tr.temp) - min(tr.temp) > 0.1
        empty = [(tr.x[i], tr.y[i], tr.z[i]) for i in range(tr.n) if tr.ok[i] and not tr.truth[i]]
        return max(empty.count(v) for v in set(empty)) / len(empty)

    assert commonest_empty_share(streettraces.Variant(noise=0.0, tempco=0.0)) > 0.95
    assert commonest_empty_share(streettraces.Variant(noise=0.0)) < 0.5

    import random

    earth = streettraces.earth_in_bay(30.0)
    one = streettraces.make_vehicle(random.Random(3), "car", earth)
    two = streettraces.make_vehicle(random.Random(3), "car", earth, 2.0)
    one.keys = two.keys = [(0.0, 0.2, 0.1, 0.05)]
    f1, f2 = one.field_at_sensor(0.0), two.field_at_sensor(0.0)
    assert all(abs(q - 2.0 * p) < 1e-9 for p, q in zip(f1, f2, strict=True))  # moments scale the field
    two.depth, two._cache_pose = 0.3, None
    deep = two.field_at_sensor(0.0)
    assert math.dist(deep, (0.0, 0.0, 0.0)) < 0.5 * math.dist(f2, (0.0, 0.0, 0.0))  # deeper: weaker


def test_a_variant_is_parsed_from_name_value_pairs_and_anything_else_is_refused_with_the_reason() -> None:
    v = streettraces.Variant.parse("moment=0.6, offset_ut=10")
    assert v == streettraces.Variant(moment=0.6, offset_ut=10.0)
    assert streettraces.Variant.parse("") == streettraces.DEFAULT
    for text, says in (("mass=2", "name one of"), ("moment", "name=value"), ("moment=x", "not a number"),
                       ("noise=-1", ">= 0"), ("lane=nan", "finite")):
        with pytest.raises(ValueError, match=says):
            streettraces.Variant.parse(text)
