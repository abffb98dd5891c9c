"""Vehicle detection from a 3-axis magnetometer: settled levels, a temperature baseline, noise-scaled thresholds.

Pure logic, no I/O; one call to `update(x, y, z, t)` per sample (uT, degC of
the chip's own sensor), `skip()` for a failed read.

The idea: a bay is either empty (the field equals the baseline, which moves
with the sensor's temperature) or holds one vehicle (the field equals that
vehicle's signature). Between the two the field swings while the vehicle
manoeuvres, and lane traffic or a neighbour disturbs it for a while. So only
*settled* levels are judged: a run of samples that stay within a few noise
widths of their mean (single spikes are ignored). A judgement needs

- arrival: a settled level at least `th_arr` from the baseline. A level above
  `th_big` (a bay's own car) counts after `settle` samples; a smaller one (a
  scooter, a high chassis, or a bus queuing in the lane) only once the field
  has stayed away from the baseline for `slow` samples, longer than a red
  light (the level may shift meanwhile: a neighbour parking beside a scooter
  moves its level, and must not restart the wait), and has stood `NB_HOLD`. `th_big` rises with the largest passing
  disturbance seen recently, so a street with buses asks more; `th_arr`
  rises above the steps that neighbours' vehicles and the lane leave standing
  at this sensor (seen beside a parked car, or as levels that came and went),
  so 1 m scooter bays ask more than kerb-side car bays (up to `th_low` +
  `NB_ARR_CAP`: their own scooters stand in the same range). A level below
  `th_arr` (down to a few widths of the level's own error) still counts after
  `slow` samples when the vehicle drove over the sensor to park: the
  excursion before it reached 1.3 times the level and 1.5 times the largest
  excursion lately that left nothing standing (traffic, neighbours), at
  least 2.5 and at most 5 uT. Only samples beyond the standing level's own
  spread (3 noise widths) count in that excursion, and the rule is not judged
  on a sample leaving the level. The car's signature is
  that settled level, never a sample from the manoeuvre.
- departure: a settled level back within `th_dep` of the baseline predicted
  for the current temperature (th_dep scales with the car's signature and is
  never above half of it), or, after `slow` samples, a level much nearer the
  baseline than the car: within half the car's signature of it, or at most half
  as far from it as from the car (drift the temperature model did not catch, or
  a small car leaving while a neighbour's vehicle moves the field the other way).
  The departure saw the empty bay (or a queue beside it, below), so the time the
  field has been away from it starts again there: a queue standing in the lane
  right after is judged as any.
  The level a departure settles on becomes the baseline, but it may be a queue
  or a neighbour's vehicle standing while the car pulled out: when it is more than
  max(2 uT, 3 noise widths) off the predicted baseline, that prediction is kept as
  the other candidate (`ox, oy, oz`) for an hour (`alt_for`; 5 or 20 min kept fewer
  of the neighbours' steps beside scooters), and its recurrence then is
  the empty bay again, no event (before, the field going back to it was a small
  arrival). It is not in the snapshot: a reboot within that hour forgets it.
- noise: the typical sample-to-sample step when quiet sets the settling
  radius and the excursion threshold. Levels are means of up to 64 samples,
  so they are compared on their own error: the arrival threshold and a
  level's persistence depend on the noise only a little. On a noisy chip the
  settling radius is wider than a small car's step, so a run would go on
  through its arrival (the level creeping, the baseline following it as
  drift): once a run has 16 samples, a fast mean of its last ~8 samples more
  than max(1.5 uT, 2 noise widths) off the run's mean breaks it, and a new run
  starts at that sample (judged after `settle` samples, as any). The counts are
  samples (at the app's 1 sample/s).
- baseline model: an anchor (the empty field at a temperature) plus one
  temperature coefficient per axis, fitted by exponentially forgetting least
  squares on empty settled levels once a minute (ridge towards 0 while the
  temperature has not moved), so a multi-day stay in sun and shade departs
  against the right baseline.
- a hard-iron offset step happens when the device is opened (a battery swap):
  across a reboot, judged by `restore` below. While powered, a jump that stays
  is a vehicle (a fast arrival with a failed read in the manoeuvre looks
  like a jump).
- first boot without a saved state: the first quiet `learn_samples` give a
  level; if it is far from Earth's field for a flat-mounted sensor (magnitude
  `earth_ut`, inclination `earth_incl`), a car is taken to stand there and the
  first level nearer Earth's field teaches the baseline. The decision is a
  guess, settled by which level recurs: a car's signature never comes back
  (another car, another position), the empty bay does. So a level given up
  is kept (`ox, oy, oz`): should it come back, it was the bay, and the one
  between was a car. The state is already vacant then, but that car's
  departure was never told: it is published (a change report to vacant), as
  is the departure of a guessed bay given up for a more Earth-like level.
  Without a baseline, a departure needs a level more Earth-like than the car
  that moved the field by at least half the car's misfit (a car leaving takes
  its whole field away; a neighbour parking beside it moves the level by a
  few uT). A third level while the first-boot baseline is still a guess means
  the guess was a car, unless that level is much nearer the guessed bay than
  the car and the guess looks like Earth's field while the car does not: then
  the car left and a neighbour's vehicle stands beside the bay. The same
  recurrence holds for a level taken as the new empty bay after `stuck`
  samples, but its return is no event (a neighbour left, or drift).
- whenever the empty bay is re-decided without a report, `save_due` asks the
  app to save the snapshot at once, so a reboot does not restore a baseline
  the detector has given up.
- a first-boot guess survives a glitch reboot as a guess (the snapshot's
  occupied flag carries +2 while it stands): a restored level that matches it
  does not verify it, so the misfit and third-level rules still apply.
- boot with a saved state (`restore`): the first settled level is compared
  with the saved baseline and car; a jump while the bay was empty is an
  offset step (maintenance: a technician works on an empty bay), not a car,
  unless it is larger than a battery can move the offset (`2 th_high`). How
  Earth-like the level looks is no evidence there: the offset a step adds
  moves the misfit as much as a car does. The old baseline is kept as the
  other candidate: should it recur, a small car stood there at boot and left.
  The misfit rule that gives up a baseline for a more Earth-like level
  (by `MISFIT_MARGIN`) is for first-boot guesses only.

RAM: 85 attributes (numbers and flags), no lists; `update` allocates no containers
(MicroPython boxes floats). Measured under the WebAssembly MicroPython 1.27
(tests/firmware/test_build_and_micropython.py): 1584 bytes held after gc.collect(),
53-97 us per sample on a 2-core machine at a load average of 1.3-1.8 (136-344 us at 8-9,
measured before the last three numbers were added) and ~2.4 KB of short-lived floats per sample.
"""

import math

LEARNING = 0
VACANT = 1
OCCUPIED = 2

WEAK_FLOOR = 1.5
MISFIT_MARGIN = 4.0
CAME_OVER_PEAK = 5.0  # uT: an excursion this large is a vehicle that drove over the sensor to park
CAME_OVER_MIN = 2.5  # uT: the least such excursion, in a street whose traffic disturbs this sensor little
NB_MARGIN = 1.2  # the arrival threshold stands this far above the neighbours' levels seen here
NB_ARR_CAP = 1.0  # uT above th_low: the most the neighbours' steps may raise the arrival threshold
DEP_NEARER = 0.5  # after `slow`: this much nearer the baseline than the car is a departure
NB_HOLD = 30  # samples a level must stand to count as a neighbour's (passing traffic is shorter)
STEP_W = 0.125  # weight of a sample in the run's fast mean (~8 samples)
STEP_SIGMAS = 2.0  # the fast mean this many noise widths off the run's mean: a step, a new level
_SETTLE_STEP = 2.26  # mean 3-D length of the difference of two samples, in per-axis noise sigmas


def _clamp(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


class Detector:
    def __init__(
        self,
        th_high: float = 12.0,
        th_low: float = 6.0,
        debounce: int = 3,
        learn_samples: int = 30,
        alpha: float = 0.02,
        settle: int = 8,
        slow: int = 100,
        stuck: int = 1200,
        move: int = 300,
        fit_every: int = 60,
        alt_for: int = 3600,
        arr_floor: float = 4.5,
        earth_ut: float = 44.5,
        earth_incl: float = 36.0,
    ) -> None:
        if th_low >= th_high:
            raise ValueError("th_low must be below th_high")
        self.th_high = th_high
        self.th_low = th_low
        self.debounce = debounce
        self.learn_samples = learn_samples
        self.alpha = alpha
        self.settle = settle
        self.slow = slow
        self.stuck_n = stuck
        self.move = move
        self.fit_every = fit_every
        self.alt_for = alt_for
        self.arr_floor = min(arr_floor, th_low)
        self.earth_h = earth_ut * math.cos(math.radians(earth_incl))
        self.earth_z = earth_ut * math.sin(math.radians(earth_incl))
        self.sd = 0.5  # EWMA of the quiet sample-to-sample step (uT)
        self.lane_peak = 0.0
        self.gone_peak = CAME_OVER_PEAK / 1.5  # the largest excursion lately that left no vehicle on the bay
        self.nb_level = 0.0  # the largest step a neighbour's vehicle or the lane left standing at this sensor
        self.exc_level = 0.0
        self.lvl_d = 0.0  # the deviation of the level last judged while vacant
        self.peak_gap = 0.8  # how far beyond it a sample is part of an excursion, not of the level's noise
        self.nb_q = -1  # the standing level last weighed as a neighbour's
        self.temp = 25.0
        self.age = 0  # samples since the empty bay was last seen
        self.deviation = 0.0
        self.saved_occ = -1
        self.saved_guess = False
        self.n = 0
        self.save_due = False  # the bay's baseline was re-decided without a report: save the snapshot now
        self.relearn()

    # ---- state -------------------------------------------------------------------

    def relearn(self) -> None:
        """Forget the baseline and the car: the next quiet level is learnt as at first boot."""
        self.state = LEARNING
        self.restored = False
        self.base_known = False
        self.verified = False
        self.ax = self.ay = self.az = 0.0
        self.at = 25.0
        self.kx = self.ky = self.kz = 0.0
        self.sw = self.st = self.stt = 0.0
        self.sx = self.sy = self.sz = self.sxt = self.syt = self.szt = 0.0
        self.cx = self.cy = self.cz = 0.0
        self.sig = 0.0
        self.guess = False  # the baseline is a guess: a car may stand on it
        self.earthlike = False  # ... made at a first boot from how Earth-like the level looked (kept across reboots)
        self.ox = self.oy = self.oz = 0.0  # the other candidate for the empty bay (a guess given up)
        self.have_alt = False
        self.alt_car = False  # on its recurrence, the level between was a vehicle no report told of
        self.alt_until = -1  # the sample after which the candidate no longer counts (-1: it always does)
        self.stuck = 0
        self._reset_run()
        self.start_n = 0
        self.qx = self.qy = self.qz = 0.0
        self.q_start = -1
        self.held = 0
        self.away_n = 0  # the last sample near the baseline
        self.fit_n = 0
        self.exc_len = 0
        self.exc_peak = 0.0
        self.d_prev = 0.0
        self.px = self.py = self.pz = 0.0
        self.have_prev = False

    def _reset_run(self) -> None:
        self.rn = 0
        self.mx = self.my = self.mz = 0.0
        self.fx = self.fy = self.fz = 0.0  # the run's last ~8 samples (a step inside it)
        self.bad = 0

    @property
    def occupied(self) -> int:
        return 1 if self.state == OCCUPIED else 0

    @property
    def base(self) -> tuple[float, float, float]:
        """The empty-bay field predicted for the last temperature."""
        dt = self.temp - self.at
        return (self.ax + self.kx * dt, self.ay + self.ky * dt, self.az + self.kz * dt)

    @property
    def car(self) -> tuple[float, float, float]:
        return (self.cx, self.cy, self.cz)

    @property
    def noise(self) -> float:
        """Per-axis noise sigma estimated from quiet samples (uT)."""
        return self.sd / _SETTLE_STEP

    @property
    def needs_relearning(self) -> bool:
        """True while the empty-bay field is not confirmed (no saved or seen baseline, an offset
        step taken on trust, a level stuck between the thresholds) or last seen over a week ago."""
        return (not self.base_known) or (not self.verified) or self.stuck > self.stuck_n // 2 or self.age > 7 * 86400

    @property
    def confidence(self) -> float:
        """0..1: how clearly the field sits at the state reported (and how sure the baseline is)."""
        if self.state == LEARNING:
            return 0.0
        if self.state == VACANT:
            c = 1.0 - self.deviation / self._th_arr()
        elif not self.base_known:
            c = 0.5
        else:
            dx, dy, dz = self.mx - self.cx, self.my - self.cy, self.mz - self.cz
            c = 1.0 - math.sqrt(dx * dx + dy * dy + dz * dz) / max(self.sig, 1.0)
        c = _clamp(c, 0.0, 1.0)
        return c if self.verified else c * 0.5

    def set_baseline(self, x: float, y: float, z: float) -> None:
        """A baseline from flash (the old 3-number file): checked against the first settled level."""
        self.restore((x, y, z))

    def snapshot(self) -> list[float]:
        """What survives a reboot: anchor, its temperature, the temperature coefficients,
        the occupied flag (plus 2 while the baseline is still a first-boot guess: a glitch reboot
        must not turn the guess into a verified bay) and the car's signature (11 numbers)."""
        flag = float(self.occupied) + (2.0 if (self.guess and self.earthlike) else 0.0)
        return [self.ax, self.ay, self.az, self.at, self.kx, self.ky, self.kz,
                flag, self.cx, self.cy, self.cz]

    def restore(self, v: "list[float] | tuple[float, ...]") -> None:
        """Take a snapshot (or a 3-number baseline); the first settled level decides the state."""
        self.relearn()
        if v[0] == 0.0 and v[1] == 0.0 and v[2] == 0.0:
            return  # saved before any baseline was known (no field is exactly zero): boot as new
        self.ax, self.ay, self.az = float(v[0]), float(v[1]), float(v[2])
        if len(v) >= 11:
            self.at = float(v[3])
            self.kx, self.ky, self.kz = float(v[4]), float(v[5]), float(v[6])
            self.saved_occ = int(v[7])
            self.saved_guess = self.saved_occ >= 2
            self.saved_occ -= 2 if self.saved_guess else 0
            self.cx, self.cy, self.cz = float(v[8]), float(v[9]), float(v[10])
        else:
            self.saved_occ = -1
            self.saved_guess = False
        self.base_known = True
        self.restored = True
        self.verified = False

    # ---- thresholds ----------------------------------------------------------------

    def _th_arr(self) -> float:
        """Arrival threshold for a settled level: a mean of many samples, so the sample noise enters
        only a little; the floor is what neighbours and lane queues leave. It never rises above
        th_low + NB_ARR_CAP: in 1 m scooter bays the neighbours' steps overlap the own scooters'
        levels (3-8 uT), and a higher cap made a 7-8 uT own scooter wait until its level drifted
        over it (reported minutes late) while sparing few of the neighbours' steps."""
        return _clamp(max(3.0 * self.noise, NB_MARGIN * self.nb_level), self.arr_floor, self.th_low + NB_ARR_CAP)

    def _th_exc(self) -> float:
        """A single sample this far from the baseline is part of an excursion (a vehicle moving near)."""
        return 0.5 * _clamp(6.0 * self.noise, self.arr_floor, self.th_low)

    def _th_weak(self) -> float:
        """The smallest settled level taken for a vehicle that came over the sensor: a few widths of
        the level's own error (a mean of up to 64 samples), never below what neighbours can leave."""
        return max(WEAK_FLOOR, 2.5 * self.noise)

    def _th_came_over(self) -> float:
        """An excursion this large on the way to a weak level is the bay's own vehicle driving over the
        sensor: 1.5 times the largest excursion lately that went back to the baseline (traffic, neighbours'
        manoeuvres; it starts at CAME_OVER_PEAK and decays over a day), within CAME_OVER_MIN..CAME_OVER_PEAK,
        so a 2 uT car in a quiet street is not taken into the baseline for the day it stands."""
        return _clamp(1.5 * self.gone_peak, CAME_OVER_MIN, CAME_OVER_PEAK)

    def _th_base(self, th_arr: float) -> float:
        """A settled level this near the baseline is the empty bay (and moves the baseline a little):
        no wider than the level's own error and the neighbours' steps ask, so a 2 uT car that came
        over the sensor is not taken into the baseline while it waits to be confirmed."""
        return max(WEAK_FLOOR, min(0.5 * th_arr, max(3.0 * self.noise, self.nb_level)))

    def _th_big(self) -> float:
        return min(max(self.th_high, 1.25 * self.lane_peak), 3.0 * self.th_high)

    def _radius(self) -> float:
        return max(0.8, 4.5 * self.noise)

    def _misfit(self, x: float, y: float, z: float) -> float:
        """Distance of a field from Earth's for a flat sensor: horizontal and vertical parts."""
        h = math.sqrt(x * x + y * y) - self.earth_h
        v = (z if z > 0 else -z) - self.earth_z
        return math.sqrt(h * h + v * v)

    # ---- samples ---------------------------------------------------------------------

    def skip(self) -> None:
        """A failed read: the second still counts (a manoeuvre may hide in a gap)."""
        self.n += 1

    def update(self, x: float, y: float, z: float, t: "float | None" = None) -> bool:
        """Feed one sample; True when the occupied state changed (or the boot state was decided)."""
        if t is not None:
            self.temp = t
        self.age += 1
        self.n += 1
        if self.have_prev:
            dx, dy, dz = x - self.px, y - self.py, z - self.pz
            e = math.sqrt(dx * dx + dy * dy + dz * dz)
            cap = 3.0 * self.sd + 0.1  # motion and spikes pull only a little (clipped), a noisier chip wins
            rate = 0.05 if self.state == LEARNING else 0.005  # a noisy chip must not hold up the first level
            self.sd += ((e if e < cap else cap) - self.sd) * rate
        self.px, self.py, self.pz = x, y, z
        self.have_prev = True
        self.lane_peak *= 0.999992  # half-life ~1 day
        self.nb_level *= 0.999992
        self.gone_peak *= 0.999992
        if self.base_known:
            dt = self.temp - self.at
            dx = x - self.ax - self.kx * dt
            dy = y - self.ay - self.ky * dt
            dz = z - self.az - self.kz * dt
            d = math.sqrt(dx * dx + dy * dy + dz * dz)
            d2 = d if d < self.d_prev else self.d_prev  # two samples: a spike is not an excursion
            self.d_prev = d
            self.deviation = d
            if self.state == VACANT:
                if d < self._th_exc():
                    self.away_n = self.n
                if d2 > self._th_exc():
                    self.exc_len += 1
                    if d2 > self.exc_peak and d2 > self.lvl_d + self.peak_gap:
                        self.exc_peak = d2  # beyond the standing level's own spread: the manoeuvre
        if not self._run(x, y, z):
            return False
        if self.state == LEARNING:
            return self._decide_boot()
        if self.state == VACANT:
            return self._vacant()
        return self._occupied()

    def _run(self, x: float, y: float, z: float) -> bool:
        """Extend or restart the settled run; True when the run is settled (a level to judge)."""
        need = self.learn_samples if (self.state == LEARNING and not self.restored) else self.settle
        if self.rn > 0:
            dx, dy, dz = x - self.mx, y - self.my, z - self.mz
            if math.sqrt(dx * dx + dy * dy + dz * dz) > self._radius():
                self.bad += 1
                if self.bad < self.debounce:
                    return self.rn >= need and self.state != LEARNING  # a spike: judge the level again
                self._reset_run()
            else:
                self.bad = 0
        if self.rn == 0:
            self.mx, self.my, self.mz = x, y, z
            self.fx, self.fy, self.fz = x, y, z
            self.rn = 1
            self.start_n = self.n
            return False
        self.rn += 1
        w = 1.0 / (self.rn if self.rn < 64 else 64)
        self.mx += (x - self.mx) * w
        self.my += (y - self.my) * w
        self.mz += (z - self.mz) * w
        self.fx += (x - self.fx) * STEP_W
        self.fy += (y - self.fy) * STEP_W
        self.fz += (z - self.fz) * STEP_W
        if self.rn >= 16:
            dx, dy, dz = self.fx - self.mx, self.fy - self.my, self.fz - self.mz
            if math.sqrt(dx * dx + dy * dy + dz * dz) > max(WEAK_FLOOR, STEP_SIGMAS * self.noise):
                # a step inside the run, smaller than the settling radius (a noisy chip): the run breaks
                # as at a sample outside the radius, and a new one starts here (judged after `need`)
                self.mx, self.my, self.mz = x, y, z
                self.fx, self.fy, self.fz = x, y, z
                self.rn = 1
                self.start_n = self.n
                return False
        if self.rn < need:
            return False
        self._persist()
        return True

    def _persist(self) -> None:
        """How long (samples) the field has been at this level, across brief disturbances."""
        dx, dy, dz = self.mx - self.qx, self.my - self.qy, self.mz - self.qz
        # levels are means of up to 64 samples: compared on their own error, not on the sample spread,
        # or a small car under a noisy sensor would seem to continue the empty level
        # (a vehicle standing in the lane beside a parked car moves its level by a share of its size)
        tol = max(1.5, 1.5 * self.noise, 0.2 * self._level_dev() if self.base_known else 0.0)
        if self.q_start < 0 or math.sqrt(dx * dx + dy * dy + dz * dz) > tol:
            self.qx, self.qy, self.qz = self.mx, self.my, self.mz
            self.q_start = self.start_n
        self.held = self.n - self.q_start

    def _level_dev(self) -> float:
        dt = self.temp - self.at
        dx = self.mx - self.ax - self.kx * dt
        dy = self.my - self.ay - self.ky * dt
        dz = self.mz - self.az - self.kz * dt
        return math.sqrt(dx * dx + dy * dy + dz * dz)

    def _from_car(self) -> float:
        dx, dy, dz = self.mx - self.cx, self.my - self.cy, self.mz - self.cz
        return math.sqrt(dx * dx + dy * dy + dz * dz)

    def _anchor_here(self) -> None:
        """The settled level is the empty bay at the current temperature."""
        self.ax, self.ay, self.az, self.at = self.mx, self.my, self.mz, self.temp
        self.base_known = True
        self.age = 0
        self.stuck = 0
        self.away_n = self.n  # the field is at the baseline now: a departure ends the time away
        self.save_due = True

    def _car_here(self) -> None:
        self.cx, self.cy, self.cz = self.mx, self.my, self.mz
        self.sig = self._level_dev() if self.base_known else 0.0

    def _decide_boot(self) -> bool:
        if not self.restored:
            if self._misfit(self.mx, self.my, self.mz) > 12.0:
                self.state = OCCUPIED  # far from Earth's field: a car stands on the new sensor
                self._car_here()
                # (or an offset that large: should the field come back here after another level, it is the bay)
                self._keep_alt(self.mx, self.my, self.mz, True)
            else:
                self.state = VACANT
                self._anchor_here()
                self.guess = self.earthlike = True
            return True
        d = self._level_dev()
        if d < max(2.5, self._th_arr() * 0.5):
            self.state = VACANT
            self.verified = not self.saved_guess
            self.guess = self.earthlike = self.saved_guess  # a first boot's guess stays one
            self.age = 0
            return True
        if self.saved_occ == 1:
            sig = self._dev_of(self.cx, self.cy, self.cz)
            if self._from_car() < max(3.0, 0.3 * sig) and not self.saved_guess:
                self.verified = True
            self.guess = self.earthlike = self.saved_guess
            self.state = OCCUPIED
            self._car_here()
            return True
        if d >= 2.0 * self.th_high:  # bigger than a battery swap moves the offset
            self.state = OCCUPIED  # a car arrived while the device was off,
            self._car_here()
            self.guess = True  # or an offset step that looks like one: if a third level comes, it was
            return True
        # an offset step while the device was off (a battery swap is done on an empty bay): the bay is
        # empty; should the old baseline recur, a small car stood there at boot and has left
        b = self.base
        self._keep_alt(b[0], b[1], b[2], True)
        self.state = VACANT
        self._anchor_here()
        self.verified = False
        return True

    def _keep_alt(self, x: float, y: float, z: float, car: bool, until: int = -1) -> None:
        """Keep a level given up as the other candidate for the empty bay: should it recur (before sample
        `until`, -1: ever), it is the bay, and the level between was a vehicle (`car`: publish its
        departure) or not (a neighbour, drift, a queue: no event)."""
        self.ox, self.oy, self.oz = x, y, z
        self.have_alt = True
        self.alt_car = car
        self.alt_until = until

    def _near_alt(self) -> bool:
        if 0 <= self.alt_until < self.n:
            return False
        dx, dy, dz = self.mx - self.ox, self.my - self.oy, self.mz - self.oz
        return math.sqrt(dx * dx + dy * dy + dz * dz) < max(2.0, 3.0 * self.noise)

    def _dev_of(self, x: float, y: float, z: float) -> float:
        dt = self.temp - self.at
        dx = x - self.ax - self.kx * dt
        dy = y - self.ay - self.ky * dt
        dz = z - self.az - self.kz * dt
        return math.sqrt(dx * dx + dy * dy + dz * dz)

    def _fit(self) -> None:
        """One empty settled level into the temperature fit (forgetting: ~3 days of minutes)."""
        self.fit_n += 1
        if self.fit_n < self.fit_every:
            return
        self.fit_n = 0
        lam = 0.99975
        t = self.temp
        self.sw = self.sw * lam + 1.0
        self.st = self.st * lam + t
        self.stt = self.stt * lam + t * t
        self.sx = self.sx * lam + self.mx
        self.sy = self.sy * lam + self.my
        self.sz = self.sz * lam + self.mz
        self.sxt = self.sxt * lam + self.mx * t
        self.syt = self.syt * lam + self.my * t
        self.szt = self.szt * lam + self.mz * t
        w = self.sw
        mt = self.st / w
        var = self.stt / w - mt * mt
        if w < 10:
            return
        r = 1.0 / (var + 4.0)  # ridge: 2 degC of spread gives half the slope
        self.kx = (self.sxt / w - mt * self.sx / w) * r
        self.ky = (self.syt / w - mt * self.sy / w) * r
        self.kz = (self.szt / w - mt * self.sz / w) * r

    def _vacant(self) -> bool:
        d = self._level_dev()
        self.lvl_d = d
        self.peak_gap = max(0.8, 3.0 * self.noise)
        th_arr = self._th_arr()
        if d < self._th_base(th_arr):
            a = self.alpha * 0.1
            dt = self.temp - self.at
            self.ax += (self.mx - self.ax - self.kx * dt) * a
            self.ay += (self.my - self.ay - self.ky * dt) * a
            self.az += (self.mz - self.az - self.kz * dt) * a
            self._fit()
            self.age = 0
            self.stuck = 0
            if self.bad == 0:  # back on the baseline (not just a spike in a quiet run)
                if 0 < self.exc_len < 150 and self.exc_peak > self.lane_peak:
                    self.lane_peak = self.exc_peak
                if self.exc_peak > self.gone_peak:  # passing traffic or a neighbour's manoeuvre
                    self.gone_peak = self.exc_peak
                if self.exc_level > self.nb_level:
                    self.nb_level = self.exc_level
                self.exc_level = 0.0
                self.exc_len = 0
                self.exc_peak = 0.0
            return False
        if self.have_alt and self.rn >= self.settle and self._near_alt():
            self._anchor_here()  # the level given up recurs: it was the empty bay, the one between was a car
            self.have_alt = self.guess = False
            self.verified = True
            return self.alt_car  # a departure: the level that left was a vehicle no report had told of
        if self.guess and self.earthlike and d >= th_arr and self.rn >= self.settle:
            b = self.base
            if self._misfit(self.mx, self.my, self.mz) + MISFIT_MARGIN < self._misfit(b[0], b[1], b[2]):
                # the unverified baseline was a car, which has left: learn the bay, but keep the old level:
                self._keep_alt(b[0], b[1], b[2], True)  # should it recur, it was the bay after all
                self.guess = False  # (the recurrence of the old level now settles the question)
                self._anchor_here()
                self.verified = True
                return True  # a departure of the car the boot took for the empty bay
        if self.held >= NB_HOLD and d > self.exc_level:
            self.exc_level = d  # a standing level: should the field go back to the baseline, a neighbour's
        if (self.held >= self.slow and self.bad == 0 and d >= self._th_weak()
                and self.exc_peak >= max(self._th_came_over(), 1.3 * d)):
            # (not judged on a sample leaving the level: a leaving car's first swing is no excursion before it)
            th_arr = d  # weak, but it came over the sensor on its way in: the bay's own vehicle
        away = self.n - self.away_n  # a vehicle's level may shift as neighbours come and go beside it
        if d >= th_arr and (self.held >= self.slow or (away >= self.slow and self.held >= NB_HOLD)
                            or (d >= self._th_big() and self.rn >= self.settle)):
            self.state = OCCUPIED
            self._car_here()
            self.stuck = 0
            self.exc_level = 0.0
            self.exc_len = 0
            self.exc_peak = 0.0
            return True
        if d < th_arr:
            self.stuck = self.held
            if self.stuck >= self.stuck_n:  # a neighbour's car or drift: the new empty level,
                # but should the old one recur, it is the neighbour leaving or drift undone: no event
                b = self.base
                self._keep_alt(b[0], b[1], b[2], False)
                self._anchor_here()
                self.exc_level = 0.0
                self.verified = False
        return False

    def _depart(self) -> bool:
        self.state = VACANT
        # the level the departure settled on is the empty bay, or a lane queue or a neighbour's
        # vehicle standing while the car pulled out: should the predicted baseline recur, it was that
        b = self.base
        far = self.base_known and self._level_dev() > max(2.0, 3.0 * self.noise)
        self._anchor_here()
        self.verified = True
        self.have_alt = self.guess = False  # the car left: the bay is empty (no first-boot question left)
        if far:  # for `alt_for` samples: a queue or a neighbour is gone by then, and a level near the
            self._keep_alt(b[0], b[1], b[2], False, self.n + self.alt_for)  # prediction later may be a vehicle
        self.exc_len = 0
        self.exc_peak = 0.0
        return True

    def _occupied(self) -> bool:
        dc = self._from_car()
        if not self.base_known:
            if self.have_alt and self.held >= 30 and dc >= self._th_arr() and self._near_alt():
                self._depart()  # the first level came back after another: it was the empty bay
                return True
            if self.held >= 30 and dc >= self._th_arr():
                mc = self._misfit(self.cx, self.cy, self.cz)
                # the car leaving moves the field by about its misfit (the bay's own is the offset's, small);
                # a neighbour parking beside it moves the level by a few uT, less Earth-like or not
                if self._misfit(self.mx, self.my, self.mz) + 3.0 < mc and dc >= 0.5 * mc:
                    self._depart()
                    # should the first level recur, it was the empty bay after all (an unusual installation offset)
                    self._keep_alt(self.cx, self.cy, self.cz, True)
                    self.verified = False
                    return True
                if self.held >= self.move:
                    self._car_here()
            return False
        d = self._level_dev()
        sig = self.sig
        if self.held >= NB_HOLD and self.q_start != self.nb_q:
            self.nb_q = self.q_start  # a new standing level beside a parked car: a neighbour or the lane;
            if dc > self.nb_level and d > 0.5 * sig:  # its step says what they leave at this sensor
                self.nb_level = dc
        th_dep = min(_clamp(0.4 * sig, max(1.0, 3.0 * self.noise), self.th_low), 0.5 * sig)
        if d < th_dep:
            return self._depart()
        if dc < max(th_dep, 0.25 * sig):
            a = self.alpha
            self.cx += (self.mx - self.cx) * a
            self.cy += (self.my - self.cy) * a
            self.cz += (self.mz - self.cz) * a
            self.sig = self._dev_of(self.cx, self.cy, self.cz)
            return False
        if self.held < self.slow:
            return False
        if self.guess and d >= self._th_arr():
            b = self.base
            if d < 0.5 * sig and dc > 0.5 * sig and (
                self._misfit(b[0], b[1], b[2]) + MISFIT_MARGIN < self._misfit(self.cx, self.cy, self.cz)
            ):
                # much nearer the guessed bay than the car, and the guess looks like Earth's field and the
                # car does not: the car left and a neighbour's vehicle stands beside the bay (its step stays)
                return self._depart()
            # a third level while the first-boot baseline is a guess: the bay never went back to it, so the
            # guess was a car, the level taken for a car was the empty bay, and this is the next vehicle
            self.ax, self.ay, self.az, self.at = self.cx, self.cy, self.cz, self.temp
            self.save_due = True
            self.guess = False
            self.verified = True
            self._car_here()
            return False
        if not self.verified:
            # three levels (baseline, car, this): the one nearest Earth's field is the empty bay
            b = self.base
            mb = self._misfit(b[0], b[1], b[2])
            mc = self._misfit(self.cx, self.cy, self.cz)
            ml = self._misfit(self.mx, self.my, self.mz)
            if ml < mb and ml < mc:
                return self._depart()
            if mc < mb and mc < ml:
                self.ax, self.ay, self.az, self.at = self.cx, self.cy, self.cz, self.temp
                self.save_due = True
                self.verified = True
                self._car_here()
                return False
        if dc > 0.5 * sig and (d < 0.5 * sig or d < DEP_NEARER * dc):
            return self._depart()
        if self.held >= self.move:
            self._car_here()
        return False


def make_detector(
    sample_ms: int,
    th_high: float = 12.0,
    th_low: float = 6.0,
    debounce: int = 3,
    learn_samples: int = 30,
    alpha: float = 0.02,
) -> Detector:
    """A Detector whose time-based settings (settle 8 s, slow confirmation 100 s, stuck 20 min,
    a changed signature 5 min, the temperature fit once a minute, a departure's other candidate
    an hour) are converted to sample counts for the given sample period."""
    per_s = 1000.0 / sample_ms
    return Detector(
        th_high=th_high,
        th_low=th_low,
        debounce=debounce,
        learn_samples=learn_samples,
        alpha=alpha,
        settle=max(3, int(8 * per_s)),
        slow=max(10, int(100 * per_s)),
        stuck=max(20, int(1200 * per_s)),
        move=max(20, int(300 * per_s)),
        fit_every=max(1, int(60 * per_s)),
        alt_for=max(20, int(3600 * per_s)),
    )
