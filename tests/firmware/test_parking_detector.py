"""The parking detector on the generated trace suite (runs on CPython and MicroPython)."""

# ruff: noqa: UP031 - also runs under MicroPython (kept portable)

import magtraces
from parking.detector import Detector, make_detector


def test_detector_finds_99_percent_of_events_without_flapping():
    total = matched = false_events = 0
    for scenario in magtraces.suite():
        det = make_detector(scenario.period_s * 1000)
        t, m, f = magtraces.run_detector(det, scenario)
        print("  %-22s events=%3d detected=%3d false=%d" % (scenario.name, t, m, f))
        total += t
        matched += m
        false_events += f
    rate = 100.0 * matched / total
    print(
        "parking detector: %d/%d events detected correctly (%.2f%%), %d false/flapping events"
        % (matched, total, rate, false_events)
    )
    assert rate >= 99.0
    assert false_events == 0


def test_detector_ignores_a_car_in_the_next_bay():
    det = Detector(learn_samples=5)
    for _ in range(5):
        det.update(18.0, -4.0, 42.0)
    changes = 0
    for _ in range(2000):  # a neighbour's car adds 4 uT for a long time
        if det.update(22.0, -4.0, 42.0):
            changes += 1
    assert changes == 0 and det.occupied == 0


def test_detector_debounces_single_spikes():
    det = Detector(learn_samples=5, debounce=3)
    for _ in range(5):
        det.update(18.0, -4.0, 42.0)
    for _ in range(20):
        assert not det.update(18.0, -4.0, 42.0)
    assert not det.update(60.0, -4.0, 42.0)  # one spike
    assert not det.update(18.0, -4.0, 42.0)
    assert det.occupied == 0


def test_detector_reports_a_car_present_at_boot_from_a_saved_baseline():
    det = Detector()
    det.set_baseline(18.0, -4.0, 42.0)
    changed = False
    for _ in range(10):
        changed = det.update(18.0, 30.0, 42.0) or changed
    assert changed and det.occupied == 1


def test_detector_relearns_on_request():
    det = Detector(learn_samples=4)
    for _ in range(4):
        det.update(1.0, 2.0, 3.0)
    det.relearn()
    for _ in range(4):
        det.update(10.0, 20.0, 30.0)
    assert det.base == (10.0, 20.0, 30.0)
