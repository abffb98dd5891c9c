"""Vehicle detection from a 3-axis magnetometer: baseline, hysteresis, debounce, drift tracking.

Pure logic, no I/O; one call to `update(x, y, z)` per sample (uT).

- Learning: the first `learn_samples` quiet samples give the empty-bay baseline
  (learning restarts while the field is moving). `set_baseline` restores a
  baseline saved on flash, so a reboot with a car on the bay is detected.
- Vacant -> occupied: deviation |B - baseline| above `th_high` for `debounce`
  consecutive samples. While vacant and below `th_low`, the baseline follows
  the field slowly (`alpha`), which absorbs temperature drift.
- Neither change happens within `min_hold` samples of the previous one (a
  car manoeuvring in or out makes the field swing).
- Occupied -> vacant: deviation below `th_low` for `debounce` samples, or the field
  has clearly left the parked car's signature (|B - car| > th_high) and is
  nearer the baseline than the car (drift accumulated while the car stood
  there) for `settle_samples` samples that agree with each other; their mean
  becomes the new baseline.
  The car signature itself follows slow drift.
- Re-learning: a vacant bay whose deviation stays between the thresholds for
  `stuck_samples` (a car parked in the next bay, an offset jump) takes the
  current field as its new baseline. `relearn()` forces a new learning phase.

RAM: ~15 floats and ints.
"""

LEARNING = 0
VACANT = 1
OCCUPIED = 2


def _dist(ax, ay, az, bx, by, bz):
    dx = ax - bx
    dy = ay - by
    dz = az - bz
    return (dx * dx + dy * dy + dz * dz) ** 0.5


class Detector:
    def __init__(
        self,
        th_high=12.0,
        th_low=6.0,
        debounce=3,
        learn_samples=30,
        alpha=0.02,
        stuck_samples=600,
        min_hold=8,
        settle_samples=10,
    ):
        if th_low >= th_high:
            raise ValueError("th_low must be below th_high")
        self.th_high = th_high
        self.th_low = th_low
        self.debounce = debounce
        self.learn_samples = learn_samples
        self.alpha = alpha
        self.stuck_samples = stuck_samples
        self.min_hold = min_hold
        self._held = min_hold
        self.settle_samples = settle_samples
        self._ax = self._ay = self._az = 0.0
        self.base = (0.0, 0.0, 0.0)
        self.car = (0.0, 0.0, 0.0)
        self.deviation = 0.0
        self.relearn()

    @property
    def occupied(self):
        return 1 if self.state == OCCUPIED else 0

    def relearn(self):
        self.state = LEARNING
        self._n = 0
        self._sx = self._sy = self._sz = 0.0
        self._first = None
        self._count = 0
        self._stuck = 0

    def set_baseline(self, x, y, z):
        self.base = (x, y, z)
        self.state = VACANT
        self._count = 0
        self._stuck = 0

    def _learn(self, x, y, z):
        if self._first is None:
            self._first = (x, y, z)
        elif _dist(x, y, z, self._first[0], self._first[1], self._first[2]) > self.th_low:
            self._n = 0  # the field moved: start again from here
            self._sx = self._sy = self._sz = 0.0
            self._first = (x, y, z)
        self._n += 1
        self._sx += x
        self._sy += y
        self._sz += z
        if self._n >= self.learn_samples:
            n = self._n
            self.set_baseline(self._sx / n, self._sy / n, self._sz / n)
            return True
        return False


    def update(self, x, y, z):
        """Feed one sample; return True when the occupied state changed (or learning ended)."""
        if self.state == LEARNING:
            return self._learn(x, y, z)
        bx, by, bz = self.base
        d = _dist(x, y, z, bx, by, bz)
        self.deviation = d
        if self.state == VACANT:
            return self._vacant(x, y, z, d)
        return self._occupied(x, y, z, d)

    def _vacant(self, x, y, z, d):
        if self._held < self.min_hold:
            self._held += 1
        if d > self.th_high and self._held >= self.min_hold:
            self._stuck = 0
            self._count += 1
            if self._count >= self.debounce:
                self.state = OCCUPIED
                self.car = (x, y, z)
                self._count = 0
                self._held = 0
                return True
            return False
        self._count = 0
        if d < self.th_low:
            self._stuck = 0
            a = self.alpha
            bx, by, bz = self.base
            self.base = (bx + a * (x - bx), by + a * (y - by), bz + a * (z - bz))
        else:
            self._stuck += 1
            if self._stuck >= self.stuck_samples:
                self.set_baseline(x, y, z)
        return False

    def _depart(self, settled):
        self.state = VACANT
        self._count = 0
        self._held = 0
        self._stuck = 0
        if settled is not None:
            self.base = settled
        return True

    def _occupied(self, x, y, z, d):
        cx, cy, cz = self.car
        from_car = _dist(x, y, z, cx, cy, cz)
        if self._held < self.min_hold:
            self._held += 1
            return False
        if d < self.th_low:
            self._count += 1
            if self._count >= self.debounce:
                return self._depart(None)
            return False
        if from_car > self.th_high and from_car > d:
            # Drifted while the car stood there: leave once the field has settled,
            # and take the mean of the settled samples as the new baseline.
            if self._count == 0 or _dist(x, y, z, self._ax, self._ay, self._az) > self.th_low / 2:
                self._count = 0
                self._ax, self._ay, self._az = x, y, z
                self._sx = self._sy = self._sz = 0.0
            self._count += 1
            self._sx += x
            self._sy += y
            self._sz += z
            if self._count >= self.settle_samples:
                n = self._count
                return self._depart((self._sx / n, self._sy / n, self._sz / n))
            return False
        self._count = 0
        if from_car < self.th_low:
            a = self.alpha
            self.car = (cx + a * (x - cx), cy + a * (y - cy), cz + a * (z - cz))
        return False


def make_detector(sample_ms, th_high=12.0, th_low=6.0, debounce=3, learn_samples=30, alpha=0.02):
    """A Detector whose time-based settings (hold 8 s, settle 10 s, stuck 10 min)
    are converted to sample counts for the given sample period."""
    per_s = 1000.0 / sample_ms
    return Detector(
        th_high=th_high,
        th_low=th_low,
        debounce=debounce,
        learn_samples=learn_samples,
        alpha=alpha,
        stuck_samples=max(10, int(600 * per_s)),
        min_hold=max(2, int(8 * per_s)),
        settle_samples=max(3, int(10 * per_s)),
    )
