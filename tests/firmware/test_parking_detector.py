"""The parking detector's rules, one behaviour each (runs on CPython and MicroPython).

The street-trace score per scenario family is in test_parking_street.py (CPython only).
"""



from parking.detector import OCCUPIED, VACANT, Detector, make_detector

EMPTY = (30.0, -20.1, -26.2)  # Taipei, flat sensor: 36 uT horizontal, 26.2 uT down


def _feed(det, field, n, t=None, wobble=0.0):
    """n samples of a field (with a tiny alternating wobble); returns the changes as (index, occupied)."""
    changes = []
    for i in range(n):
        w = wobble if i % 2 else -wobble
        if det.update(field[0] + w, field[1] - w, field[2] + w, t):
            changes.append((i, det.occupied))
    return changes


def _drive(det, a, b, t=25.0):
    """A manoeuvre from field a to field b: 8 samples that swing past both; returns the changes."""
    changes = []
    for i in range(8):
        f = 0.3 + 0.1 * i
        s = 1.6 if i % 2 else -0.6
        x, y, z = (a[j] + (b[j] - a[j]) * f + s * (b[j] - a[j]) * 0.3 for j in range(3))
        if det.update(x, y + 4.0 * s, z, t):
            changes.append((i, det.occupied))
    return changes


def _plus(a, b):
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _learnt(**kw):
    det = make_detector(1000, **kw)
    _feed(det, EMPTY, 40, 25.0, 0.2)
    assert det.state == VACANT and det.base_known
    return det


def test_detector_ignores_a_car_in_the_next_bay():
    det = _learnt()
    assert _feed(det, _plus(EMPTY, (3.0, 0.0, 1.0)), 3000, 25.0, 0.2) == []  # a neighbour's car, for 50 min
    assert det.occupied == 0


def test_detector_debounces_single_spikes():
    det = _learnt()
    assert _feed(det, EMPTY, 20, 25.0, 0.2) == []
    assert not det.update(EMPTY[0] + 60.0, EMPTY[1], EMPTY[2], 25.0)  # one spike
    assert _feed(det, EMPTY, 20, 25.0, 0.2) == []
    assert det.occupied == 0


def test_car_signature_is_taken_once_the_field_settled_so_no_false_departure_follows():
    det = _learnt()
    changes = []
    for i in range(20):  # the manoeuvre: the field swings in size and direction
        f = (EMPTY[0] + 25.0 * (i % 3), EMPTY[1] - 14.0 * (i % 4), EMPTY[2] + 3.0 * i)
        if det.update(f[0], f[1], f[2], 25.0):
            changes.append(det.occupied)
    car = _plus(EMPTY, (-12.0, 20.0, 9.0))
    changes += [o for _, o in _feed(det, car, 600, 25.0, 0.2)]
    assert changes == [1]
    assert abs(det.car[0] - car[0]) < 0.5 and abs(det.car[1] - car[1]) < 0.5


def test_departure_is_reported_when_the_field_returns_to_the_baseline():
    det = _learnt()
    car = _plus(EMPTY, (15.0, -20.0, 8.0))
    assert _drive(det, EMPTY, car) == []
    assert [o for _, o in _feed(det, car, 60, 25.0, 0.2)] == [1]
    assert _drive(det, car, EMPTY) == []
    assert [o for _, o in _feed(det, EMPTY, 30, 25.0, 0.2)] == [0]


def test_a_queue_in_the_lane_shorter_than_a_red_light_is_not_an_arrival():
    det = _learnt()
    bus = _plus(EMPTY, (5.0, 4.0, 0.0))
    assert _drive(det, EMPTY, bus) == []
    assert _feed(det, bus, 90, 25.0, 0.2) == []  # a bus standing beside the bay
    assert _drive(det, bus, EMPTY) == []
    assert _feed(det, EMPTY, 60, 25.0, 0.2) == []


def test_a_weak_vehicle_counts_once_it_stays():
    det = _learnt()
    scooter = _plus(EMPTY, (4.0, -3.0, 2.0))  # 5.4 uT
    _drive(det, EMPTY, scooter)
    changes = _feed(det, scooter, 150, 25.0, 0.2)
    # 100 s after the field left the baseline, 8 of them in the manoeuvre
    assert [o for _, o in changes] == [1] and 85 <= changes[0][0] <= 100


def test_a_weak_vehicle_counts_after_100_s_away_even_when_a_neighbour_shifts_its_level():
    det = _learnt()
    scooter = _plus(EMPTY, (4.0, -3.0, 2.0))  # 5.4 uT
    _drive(det, EMPTY, scooter)
    assert _feed(det, scooter, 50, 25.0, 0.2) == []
    shifted = _plus(scooter, (1.5, 1.5, 1.0))  # a neighbour parks beside it: the level moves by 2.3 uT
    changes = _feed(det, shifted, 100, 25.0, 0.2)
    assert [o for _, o in changes] == [1] and changes[0][0] <= 50  # not another 100 s at the new level


def test_a_weak_vehicle_counts_where_neighbours_left_steps_as_large_as_it():
    det = _learnt()
    det.nb_level = 7.0  # 1 m scooter bays: neighbours' scooters left 7 uT standing at this sensor
    changes = _feed(det, _plus(EMPTY, (6.0, 4.0, 2.0)), 200, 25.0, 0.2)  # the own scooter, 7.5 uT
    assert [c[1] for c in changes] == [1] and 95 <= changes[0][0] <= 130


def test_a_jump_across_a_reboot_with_the_bay_saved_empty_is_an_offset_step_even_when_it_looks_unearthly():
    det = _learnt()
    again = make_detector(1000)
    again.restore(det.snapshot())
    step = (38.1, -25.5, -33.2)  # 12 uT along the field (a battery's steel can): 12 uT stronger than Earth's
    assert _feed(again, step, 400, 25.0, 0.2) == [(7, 0)]
    assert again.occupied == 0 and not again.verified
    car = (20.1, 30.0, -26.2)  # a car whose field happens to look like Earth's: still an arrival
    _drive(again, step, car)
    assert [o for _, o in _feed(again, car, 60, 25.0, 0.2)] == [1]  # a car, not "the old bay came back"
    _drive(again, car, step)
    assert [o for _, o in _feed(again, step, 30, 25.0, 0.2)] == [0]


def test_an_instant_jump_across_a_maintenance_reboot_is_an_offset_step_not_a_car():
    det = _learnt()
    again = make_detector(1000)
    again.restore(det.snapshot())
    assert _feed(again, _plus(EMPTY, (6.0, 6.0, -4.0)), 400, 25.0, 0.2) == [(7, 0)]  # the boot decision
    assert again.occupied == 0 and not again.verified and again.needs_relearning


def test_a_jump_while_powered_that_stays_is_a_vehicle_not_an_offset_step():
    # the offset only steps when a technician opens the device (a reboot); a fast arrival with a
    # read failing in the manoeuvre looks like a jump and must still count
    det = _learnt()
    changes = _feed(det, _plus(EMPTY, (6.0, 6.0, -4.0)), 400, 25.0, 0.2)
    assert [o for _, o in changes] == [1] and det.occupied == 1


def test_a_small_car_that_came_over_the_sensor_counts_below_the_arrival_threshold_and_leaves():
    det = _learnt()
    assert _feed(det, _plus(EMPTY, (8.0, 8.0, 0.0)), 10, 25.0, 0.2) == []  # its steel passes over the sensor
    small = _plus(EMPTY, (2.0, 2.0, 1.0))  # 3 uT parked: under th_low, far above the level's own error
    changes = _feed(det, small, 150, 25.0, 0.2)
    assert [o for _, o in changes] == [1] and 95 <= changes[0][0] <= 110
    assert [o for _, o in _feed(det, EMPTY, 30, 25.0, 0.2)] == [0]  # the departure threshold is under 3 uT


def test_a_noisy_sensor_still_sees_a_small_car():
    det = _learnt()
    _feed(det, EMPTY, 1500, 25.0, 1.0)  # 1.5 uT per-axis noise
    assert det.noise > 1.2
    _feed(det, _plus(EMPTY, (12.0, 9.0, 0.0)), 5, 25.0, 1.0)  # passing over the sensor, shorter than a level
    changes = _feed(det, _plus(EMPTY, (3.0, 4.0, 0.0)), 200, 25.0, 1.0)  # 5 uT, the arrival threshold is 6
    assert [o for _, o in changes] == [1]
    assert [o for _, o in _feed(det, EMPTY, 120, 25.0, 1.0)] == [0]


def test_a_first_boot_on_a_car_that_looks_like_earth_is_corrected_when_a_third_level_appears():
    det = make_detector(1000)
    car = (20.1, 30.0, -26.2)  # the same horizontal and vertical strength as the empty bay: a plausible bay
    _feed(det, car, 40, 25.0, 0.2)
    assert det.state == VACANT and det.needs_relearning  # a guess
    _drive(det, car, EMPTY)
    assert [o for _, o in _feed(det, EMPTY, 60, 25.0, 0.2)] == [1]  # taken for an arrival: cannot be told yet
    other = _plus(EMPTY, (10.0, -12.0, 5.0))
    _drive(det, EMPTY, other)
    det.save_due = False
    assert _feed(det, other, 200, 25.0, 0.2) == []  # the bay never went back to the guess: it was a car
    assert det.save_due  # re-decided without a report: the app saves the snapshot at once
    assert det.occupied == 1 and det.verified and abs(det.base[1] - EMPTY[1]) < 0.5
    _drive(det, other, EMPTY)
    assert [o for _, o in _feed(det, EMPTY, 30, 25.0, 0.2)] == [0]


def test_the_baseline_follows_the_temperature_during_a_long_stay():
    det = _learnt()
    k = (0.15, -0.1, 0.12)  # uT per degC
    for minute in range(600):  # ten empty hours from 20 to 45 degC and back
        t = 20.0 + 25.0 * (minute if minute < 300 else 600 - minute) / 300.0
        f = _plus(EMPTY, (k[0] * (t - 25), k[1] * (t - 25), k[2] * (t - 25)))
        assert _feed(det, f, 60, t, 0.2) == []
    assert abs(det.kx - k[0]) < 0.03 and abs(det.ky - k[1]) < 0.03
    car = _plus(EMPTY, (20.0, 10.0, -10.0))
    _drive(det, EMPTY, car)
    assert [o for _, o in _feed(det, car, 60, 25.0, 0.2)] == [1]
    t = 50.0  # the car leaves on a hot afternoon: the empty field has moved by ~5 uT
    empty_hot = _plus(EMPTY, (k[0] * (t - 25), k[1] * (t - 25), k[2] * (t - 25)))
    _drive(det, car, empty_hot, t)
    assert [o for _, o in _feed(det, empty_hot, 40, t, 0.2)] == [0]


def test_first_boot_with_a_car_present_learns_the_bay_at_the_first_departure():
    det = make_detector(1000)
    car = _plus(EMPTY, (25.0, 30.0, 20.0))  # far from Earth's field for a flat sensor
    _feed(det, car, 40, 25.0, 0.2)
    assert det.state == OCCUPIED and not det.base_known and det.needs_relearning
    _drive(det, car, EMPTY)
    assert [o for _, o in _feed(det, EMPTY, 60, 25.0, 0.2)] == [0]
    assert det.base_known and not det.verified  # kept open until the bay comes back to this level
    other = _plus(EMPTY, (10.0, -12.0, 5.0))
    _drive(det, EMPTY, other)
    assert [o for _, o in _feed(det, other, 30, 25.0, 0.2)] == [1]
    _drive(det, other, EMPTY)
    assert [o for _, o in _feed(det, EMPTY, 30, 25.0, 0.2)] == [0]
    assert det.verified and not det.needs_relearning


def test_reboot_restores_the_car_and_the_baseline_from_a_snapshot():
    det = _learnt()
    car = _plus(EMPTY, (15.0, -20.0, 8.0))
    _drive(det, EMPTY, car)
    _feed(det, car, 60, 25.0, 0.2)
    _drive(det, car, EMPTY)
    _feed(det, EMPTY, 30, 25.0, 0.2)  # the bay came back: no longer a first-boot guess
    _drive(det, EMPTY, car)
    _feed(det, car, 60, 25.0, 0.2)
    assert det.occupied == 1 and det.verified
    again = make_detector(1000)
    again.restore(det.snapshot())
    assert _feed(again, car, 12, 25.0, 0.2) != [] and again.occupied == 1 and again.verified
    _drive(again, car, EMPTY)
    assert [o for _, o in _feed(again, EMPTY, 30, 25.0, 0.2)] == [0]


def test_detector_reports_a_car_present_at_boot_from_an_old_three_number_baseline():
    det = Detector()
    det.set_baseline(EMPTY[0], EMPTY[1], EMPTY[2])
    changed = _feed(det, _plus(EMPTY, (0.0, 30.0, 0.0)), 12, 25.0, 0.2)
    assert changed and det.occupied == 1


def test_detector_relearns_on_request():
    det = _learnt()
    det.relearn()
    other = (33.0, -15.0, 27.0)
    _feed(det, other, 40, 25.0, 0.0)
    b = det.base
    assert abs(b[0] - other[0]) < 1e-6 and abs(b[2] - other[2]) < 1e-6


def test_thresholds_scale_with_the_sensor_noise():
    quiet, noisy = _learnt(), make_detector(1000)
    _feed(noisy, EMPTY, 1500, 25.0, 1.5)
    assert noisy.noise > 3 * quiet.noise
    assert noisy._th_arr() > quiet._th_arr()


def test_a_snapshot_saved_before_any_baseline_was_known_boots_as_new():
    det = make_detector(1000)
    _feed(det, _plus(EMPTY, (25.0, 30.0, 20.0)), 40, 25.0, 0.2)  # a car on the new sensor: no baseline yet
    assert det.occupied == 1 and not det.base_known
    again = make_detector(1000)
    again.restore(det.snapshot())
    _feed(again, EMPTY, 40, 25.0, 0.2)  # the car left while the device was off
    assert again.occupied == 0 and abs(again.base[0] - EMPTY[0]) < 0.5  # not a zero "baseline"


def test_a_first_level_taken_for_a_car_is_the_bay_when_the_field_comes_back_to_it():
    det = make_detector(1000)
    shifted = _plus(EMPTY, (18.0, 0.0, 6.0))  # the empty bay after a large offset step: unlike Earth's field
    _feed(det, shifted, 40, 25.0, 0.2)
    assert det.occupied == 1 and not det.base_known
    car = _plus(shifted, (15.0, -20.0, 8.0))
    _drive(det, shifted, car)
    assert _feed(det, car, 400, 25.0, 0.2) == []  # taken for the car having changed
    _drive(det, car, shifted)
    assert [o for _, o in _feed(det, shifted, 60, 25.0, 0.2)] == [0]
    assert det.base_known and abs(det.base[0] - shifted[0]) < 0.5


def test_a_neighbour_step_left_after_the_first_stay_on_a_guessed_bay_is_a_departure_not_a_third_level():
    det = make_detector(1000)
    _feed(det, EMPTY, 40, 25.0, 0.2)
    assert det.state == VACANT and det.guess
    car = _plus(EMPTY, (25.0, 30.0, -20.0))  # unlike Earth's field
    _drive(det, EMPTY, car)
    assert [o for _, o in _feed(det, car, 60, 25.0, 0.2)] == [1]
    left = _plus(EMPTY, (5.0, -4.0, 2.0))  # the car left; a neighbour's vehicle beside the bay leaves 6.7 uT
    _drive(det, car, left)
    assert [o for _, o in _feed(det, left, 200, 25.0, 0.2)] == [0]
    assert abs(det.base[0] - left[0]) < 0.5  # (the neighbour's level, until the bay's own comes back)


def test_a_first_boot_guess_given_up_for_a_more_earth_like_level_is_published_as_the_car_s_departure():
    det = make_detector(1000)
    small_car = (36.0, -20.1, -29.2)  # 6 uT from Earth's field: taken for the bay at boot
    _feed(det, small_car, 40, 25.0, 0.2)
    assert det.state == VACANT and det.guess
    _drive(det, small_car, EMPTY)
    assert [o for _, o in _feed(det, EMPTY, 60, 25.0, 0.2)] == [0]  # it left: the change the boot missed
    assert det.verified and abs(det.base[0] - EMPTY[0]) < 0.5


def test_without_a_baseline_a_neighbour_moving_the_car_s_level_a_little_is_no_departure():
    det = make_detector(1000)
    car = _plus(EMPTY, (25.0, 30.0, 20.0))  # far from Earth's field: a car on the new sensor
    _feed(det, car, 40, 25.0, 0.2)
    assert det.occupied == 1 and not det.base_known
    moved = _plus(car, (-3.0, -3.5, -2.0))  # 5 uT nearer Earth's field: a neighbour parked beside it
    _drive(det, car, moved)
    assert _feed(det, moved, 400, 25.0, 0.2) == []
    _drive(det, moved, EMPTY)
    assert [o for _, o in _feed(det, EMPTY, 60, 25.0, 0.2)] == [0]


def test_a_small_car_with_a_small_excursion_counts_where_traffic_disturbs_the_sensor_less():
    small = _plus(EMPTY, (1.5, 1.5, 0.5))  # 2.2 uT parked, its manoeuvre 3.5 uT at the sensor
    for quiet, expected in ((False, []), (True, [1])):
        det = _learnt()
        if quiet:
            det.gone_peak = 1.0  # lately nothing that went back to the baseline disturbed it by over 1 uT
        assert _feed(det, _plus(EMPTY, (2.5, 2.5, 0.0)), 10, 25.0, 0.2) == []
        assert [o for _, o in _feed(det, small, 150, 25.0, 0.2)] == expected


def test_a_leaving_car_s_first_swing_is_not_taken_for_an_excursion_before_its_level():
    det = _learnt()
    small = _plus(EMPTY, (3.0, 3.0, 1.0))  # 4.4 uT: under the arrival threshold, it came in without an excursion
    assert _feed(det, small, 300, 25.0, 0.2) == []
    swing = _plus(small, (9.0, -6.0, 4.0))  # it pulls out: the first samples swing away from its level
    assert _feed(det, swing, 2, 25.0, 0.0) == []
    assert det.occupied == 0


def test_a_first_boot_guess_stays_a_guess_across_a_glitch_reboot():
    det = make_detector(1000)
    small_car = (36.0, -20.1, -29.2)  # 6 uT from Earth's field: taken for the bay at boot
    _feed(det, small_car, 40, 25.0, 0.2)
    assert det.guess
    again = make_detector(1000)
    again.restore(det.snapshot())  # a watchdog reboot before the car has left
    _feed(again, small_car, 12, 25.0, 0.2)
    assert again.state == VACANT and again.guess and not again.verified
    _drive(again, small_car, EMPTY)
    assert [o for _, o in _feed(again, EMPTY, 60, 25.0, 0.2)] == [0]  # still given up for the Earth-like level
    assert abs(again.base[0] - EMPTY[0]) < 0.5


def _until_change(det, field, limit=60):
    """Samples of a field until the detector reports a change; returns the state reported."""
    for _ in range(limit):
        if det.update(field[0], field[1], field[2], 25.0):
            return det.occupied
    raise AssertionError("no change reported")


def test_a_lane_queue_standing_beside_the_bay_as_its_car_leaves_is_no_arrival():
    # the departure saw the empty bay: the time the field has been away from it starts again there,
    # so a bus queuing at the red light right after is judged like any queue (shorter than `slow`)
    det = _learnt()
    car = _plus(EMPTY, (15.0, -20.0, 8.0))
    _drive(det, EMPTY, car)
    assert [o for _, o in _feed(det, car, 3000, 25.0, 0.2)] == [1]
    _drive(det, car, EMPTY)
    assert _until_change(det, EMPTY) == 0
    bus = _plus(EMPTY, (5.0, 3.0, 0.0))
    assert _feed(det, bus, 90, 25.0, 0.2) == []
    assert _feed(det, EMPTY, 60, 25.0, 0.2) == []


def test_a_small_car_leaving_beside_a_neighbour_s_step_departs_once_its_level_is_twice_as_near_the_baseline():
    # a 3.5 uT car leaves while a neighbour's vehicle moves this sensor's field 1.9 uT the other way:
    # more than half the car's signature from the baseline, but 5.4 uT from the car
    det = _learnt()
    car = _plus(EMPTY, (3.0, 1.5, 1.0))
    assert _feed(det, _plus(EMPTY, (8.0, 8.0, 0.0)), 10, 25.0, 0.2) == []  # it came over the sensor
    assert [o for _, o in _feed(det, car, 200, 25.0, 0.2)] == [1]
    beside = _plus(EMPTY, (-1.6, -0.9, -0.6))
    changes = _feed(det, beside, 400, 25.0, 0.2)
    assert [o for _, o in changes] == [0] and changes[0][0] <= 110


def test_a_departure_onto_a_queue_standing_in_the_lane_takes_the_baseline_back_when_the_queue_leaves():
    # the car pulls out while a bus stands at the red light beside the bay: the level the departure
    # settles on is the bus's, 5 uT off the baseline; when the bus leaves, the field going back to the
    # predicted baseline is the empty bay again, not a small vehicle arriving
    det = _learnt()
    car = _plus(EMPTY, (15.0, -20.0, 8.0))
    _drive(det, EMPTY, car)
    assert [o for _, o in _feed(det, car, 600, 25.0, 0.2)] == [1]
    queue = _plus(EMPTY, (4.0, 3.0, 1.5))
    _drive(det, car, queue)
    assert [o for _, o in _feed(det, queue, 40, 25.0, 0.2)] == [0]
    assert _feed(det, EMPTY, 600, 25.0, 0.2) == []
    assert det.occupied == 0 and det._level_dev() < 1.0


def test_a_small_car_on_a_noisy_chip_is_a_new_level_though_its_step_is_inside_the_settling_radius():
    # 1.5 uT of noise per axis: the settling radius (4.5 noise widths) is wider than a 4.9 uT car's
    # step, so the run would go on through the arrival: its level would creep towards the car's and
    # be judged late (143 s here before), while the baseline follows it as drift
    det = make_detector(1000)
    _feed(det, EMPTY, 400, 25.0, 1.0)
    assert det.state == VACANT and det.noise > 1.2 and 4.5 * det.noise > 4.9
    car = _plus(EMPTY, (4.0, -2.0, 2.0))
    changes = _feed(det, car, 400, 25.0, 1.0)
    assert [o for _, o in changes] == [1] and changes[0][0] <= 110  # a weak level: after `slow` samples
    changes = _feed(det, EMPTY, 400, 25.0, 1.0)
    assert [o for _, o in changes] == [0] and changes[0][0] <= 30


def test_the_status_can_be_read_right_after_a_restored_boot_decides():
    # the app reads needs_relearning after every update: a boot that restores the snapshot and finds
    # the bay as saved decides without re-anchoring, and every attribute the flag reads must exist
    first = _learnt()
    car = _plus(EMPTY, (15.0, -20.0, 8.0))
    _drive(first, EMPTY, car)
    _feed(first, car, 200, 25.0, 0.2)
    _drive(first, car, EMPTY)
    _feed(first, EMPTY, 60, 25.0, 0.2)
    assert first.verified and first.occupied == 0  # the car's departure showed the empty bay
    saved = first.snapshot()
    det = make_detector(1000)
    det.restore(saved)
    flags = []
    for _ in range(20):
        if det.update(EMPTY[0], EMPTY[1], EMPTY[2], 25.0):
            flags.append((det.occupied, det.needs_relearning, det.confidence > 0.5))  # as the app reads them
    assert flags == [(0, False, True)]
