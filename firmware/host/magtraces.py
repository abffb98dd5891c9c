"""Simple synthetic magnetometer traces with ground-truth parking events.

Used by the host runner's fake QMC5883L and by the detector's cost figure
under MicroPython (tests_mpy/ram_parking.py), so it sticks to what both
runtimes have: a seeded linear congruential generator and Box-Muller for
Gaussian noise, no `random`. It scales fixed vectors up and down; the
detector is scored on the physically modelled traces of streettraces.py.

A trace is a list of (x, y, z) samples in uT plus a list of true events
(sample index, occupied 0/1).
"""

import math

EARTH = (30.0, -20.1, -26.2)  # Taipei, flat sensor: 36 uT horizontal, 26.2 uT down (44.5 uT, 36 deg)


class Rng:
    def __init__(self, seed):
        self.state = seed & 0x7FFFFFFF or 1
        self._spare = None

    def random(self):
        self.state = (1103515245 * self.state + 12345) & 0x7FFFFFFF
        return self.state / 2147483648.0

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.random()

    def gauss(self, sigma):
        if self._spare is not None:
            v = self._spare
            self._spare = None
            return v * sigma
        u1 = max(self.random(), 1e-12)
        u2 = self.random()
        r = math.sqrt(-2.0 * math.log(u1))
        self._spare = r * math.sin(2 * math.pi * u2)
        return r * math.cos(2 * math.pi * u2) * sigma

    def vector(self, lo, hi):
        """A random direction with magnitude in [lo, hi]."""
        while True:
            x, y, z = self.uniform(-1, 1), self.uniform(-1, 1), self.uniform(-1, 1)
            n = math.sqrt(x * x + y * y + z * z)
            if 0.2 < n <= 1.0:
                m = self.uniform(lo, hi) / n
                return (x * m, y * m, z * m)


class Scenario:
    """Builds one trace: a list of visits (start, end, signature) plus disturbances."""

    def __init__(self, name, seconds, period_s=1, seed=1, noise=0.5, drift=0.0, spikes=0.0):
        self.name = name
        self.period_s = period_s
        self.n = int(seconds // period_s)
        self.rng = Rng(seed)
        self.noise = noise
        self.drift = drift
        self.spikes = spikes
        self.visits = []  # (start_idx, end_idx, (dx,dy,dz), ramp_samples)
        self.neighbours = []

    def add_visits(self, count, min_stay_s, max_stay_s, min_gap_s, lo=15.0, hi=70.0, start_s=120):
        rng = self.rng
        t = start_s
        for _ in range(count):
            t += rng.uniform(min_gap_s, min_gap_s * 3)
            stay = rng.uniform(min_stay_s, max_stay_s)
            if (t + stay + 120) >= self.n * self.period_s:
                break
            self.visits.append((int(t / self.period_s), int((t + stay) / self.period_s), rng.vector(lo, hi)))
            t += stay
        return self

    def add_neighbours(self, count, lo=2.0, hi=5.0):
        rng = self.rng
        for _ in range(count):
            a = rng.uniform(60, self.n * self.period_s - 600)
            b = a + rng.uniform(300, 3600)
            self.neighbours.append((int(a / self.period_s), int(b / self.period_s), rng.vector(lo, hi)))
        return self

    def truth(self):
        events = []
        for start, end, _ in self.visits:
            events.append((start, 1))
            events.append((end, 0))
        return events

    def samples(self):
        """Yield (x, y, z) one sample at a time (no big lists on small devices)."""
        rng = self.rng
        ramp = max(1, int(6 / self.period_s))
        ex, ey, ez = EARTH
        for i in range(self.n):
            x, y, z = ex, ey, ez
            if self.drift:
                phase = 2 * math.pi * i * self.period_s / 86400.0
                x += self.drift * math.sin(phase)
                y += self.drift * 0.6 * math.sin(phase + 1.0)
                z += self.drift * 0.8 * math.cos(phase)
            for start, end, (dx, dy, dz) in self.visits:
                f = _presence(i, start, end, ramp, rng)
                if f:
                    x += dx * f
                    y += dy * f
                    z += dz * f
            for start, end, (dx, dy, dz) in self.neighbours:
                f = _presence(i, start, end, ramp, rng)
                if f:
                    x += dx * f
                    y += dy * f
                    z += dz * f
            s = self.noise
            x += rng.gauss(s)
            y += rng.gauss(s)
            z += rng.gauss(s)
            if self.spikes and rng.random() < self.spikes:
                v = rng.vector(20.0, 60.0)
                x += v[0]
                y += v[1]
                z += v[2]
            yield (x, y, z)


def _presence(i, start, end, ramp, rng):
    """0..1: how much of the car's field is present at sample i (ramps wobble)."""
    if i < start - ramp or i > end + ramp:
        return 0.0
    if i < start:
        return rng.uniform(0.0, 0.7)  # manoeuvring in: the field swings
    if i > end:
        return rng.uniform(0.0, 0.4)  # driving away
    return 1.0
