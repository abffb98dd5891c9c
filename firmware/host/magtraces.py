"""Synthetic magnetometer traces with ground-truth parking events.

Used by the detector tests (on CPython and under MicroPython) and by the host
runner's fake QMC5883L, so it sticks to what both runtimes have: a seeded
linear congruential generator and Box-Muller for Gaussian noise, no `random`.

A trace is a list of (x, y, z) samples in uT plus a list of true events
(sample index, occupied 0/1). Scenarios: arrivals and departures, drift over a
day, a car in the next bay, heavy noise with spikes, a long stay while the
temperature drifts, quick turnover.
"""

# ruff: noqa: SIM113 - also runs under MicroPython (kept portable)

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


def suite():
    """The detection test suite: a list of Scenario objects."""
    return [
        Scenario("arrivals_departures", 4 * 3600, seed=11).add_visits(16, 180, 1200, 120),
        Scenario("drift_over_a_day", 24 * 3600, period_s=5, seed=23, drift=6.0).add_visits(30, 600, 5400, 600),
        Scenario("car_in_next_bay", 4 * 3600, seed=37).add_visits(10, 300, 1800, 300).add_neighbours(6),
        Scenario("noise_and_spikes", 3 * 3600, seed=41, noise=1.2, spikes=0.003).add_visits(14, 180, 1200, 120),
        Scenario("long_stay_with_drift", 24 * 3600, period_s=10, seed=53, drift=8.0).add_visits(
            3, 5 * 3600, 9 * 3600, 1800
        ),
        Scenario("quick_turnover", 2 * 3600, seed=67).add_visits(20, 60, 400, 15, start_s=60),
        Scenario("weak_cars", 3 * 3600, seed=79, noise=0.7).add_visits(14, 180, 1200, 120, lo=13.0, hi=22.0),
    ]


def score(truth, detected, window, early=2):
    """Match true events to detections (same state, from `early` samples before
    the event, while the car manoeuvres, to `window` samples after).

    Returns (matched, false_events): every detection is used at most once;
    a detection not matching any true event is a false event (a flap).
    """
    used = [False] * len(detected)
    matched = 0
    for t_idx, state in truth:
        for j in range(len(detected)):
            d_idx, d_state = detected[j]
            if not used[j] and d_state == state and t_idx - early <= d_idx <= t_idx + window:
                used[j] = True
                matched += 1
                break
    false_events = 0
    for u in used:
        if not u:
            false_events += 1
    return matched, false_events


def run_detector(detector, scenario, window_s=60):
    """Run `detector` over the scenario; return (true_events, matched, false_events)."""
    detected = []
    idx = 0
    for x, y, z in scenario.samples():
        was_learning = detector.state == 0
        changed = detector.update(x, y, z)
        if changed and not was_learning:
            detected.append((idx, detector.occupied))
        idx += 1
    truth = scenario.truth()
    early = max(1, int(8 / scenario.period_s))
    matched, false_events = score(truth, detected, max(3, int(window_s / scenario.period_s)), early)
    return len(truth), matched, false_events
