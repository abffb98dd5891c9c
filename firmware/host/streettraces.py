"""Physically modelled magnetometer traces of a street parking bay, with ground truth.

CPython only (host tools and tests). Every number below is either a physical
constant with its source or a choice of ours, marked "chosen" with the reason.

The model
---------
Field at the sensor = Earth's field + the field of every magnetic dipole of
every vehicle near the bay, seen through an imperfect, temperature-dependent
QMC5883L, sampled once per second as `parking/app.py` does.

- Earth's field at Taipei (25.03 N, 121.56 E), NOAA/NCEI World Magnetic Model
  2025 (https://www.ngdc.noaa.gov/geomag/calculators/magcalc.shtml): total
  intensity about 44.5 uT, inclination about 36 deg (down), declination about
  -4.5 deg. The bay's heading (azimuth of its long axis) is uniform in
  [0, 360) deg; the sensor is mounted flat (README) with a random yaw in the
  bay and a tilt of up to 3 deg (chosen: hand installation in a cored hole).
- A vehicle is a rigid body carrying a cluster of point dipoles (engine
  block, axles, floor pan, exhaust/tank; a bus has one per 1.5 m of chassis).
  Each dipole has a permanent moment fixed to the body (it turns with the
  vehicle) and an induced moment along Earth's field (soft iron: it does
  not turn). Field of a dipole m at offset r: B = mu0/(4 pi) (3 (m.r^) r^ - m) / r^3,
  i.e. 0.1 uT * m[A m^2] / r[m]^3. Moments are chosen so that a parked car
  over the sensor gives 15-100 uT, a scooter 4-25 uT and a high-chassis
  vehicle 5-25 uT (the ranges in-ground sensor papers report, e.g. Zhang et
  al., "A vehicle detection algorithm based on wireless magnetic sensor
  networks", and the 2-50 uT "signature" figures in Honeywell AN218; exact
  values chosen).
- Vehicles drive real paths (keyframes of position and yaw at walking or
  driving speed, linearly interpolated each second): reverse-in and head-in
  parallel parking, head-in and reverse-in perpendicular parking, pull-out,
  small corrections and pauses. So the field swings in direction and size
  during a manoeuvre, and the parked signature depends on where exactly
  (+-0.5 m, +-6 deg) the driver stopped.
- Neighbour bays (parallel: 6 m ahead and behind; perpendicular: 2.5 m, or 1 m
  for scooter bays, to each side) get their own visits with the same paths.
  Lane traffic passes at 4-14 m/s in both directions; some of it queues at a
  red light beside the bay for 20-90 s (chosen: a signal cycle of 90-120 s).
- The sensor's own temperature follows the road (air temperature with a daily
  cycle plus sun on the surface, first-order lag of 40 min, chosen for a
  potted sensor 5 cm under asphalt). A parked vehicle shades it: while the
  bay is occupied the sun term drops to 25 %. The chip reports that
  temperature plus an uncalibrated offset (+-3 degC), in 0.01 degC steps.
- Sensor errors (chosen; the QMC5883L datasheet gives 2 mG = 0.2 uT field
  resolution and +-8 G range at 3000 LSB/G, which the driver uses):
  per-axis hard-iron installation offset N(0, 3 uT); per-axis gain 0.97-1.03;
  offset tempco +-0.08 uT/degC plus a curvature of +-0.0015 uT/degC^2 (so
  a linear temperature model is not exact); gain tempco -0.12..+0.04 %/degC;
  white noise 0.12-0.35 uT per axis (0.8-1.5 in the noisy family); spikes
  (EMI, a single sample 20-200 uT off) and failed reads (the driver returns
  None), a few I2C hangs of 5-30 s; readings beyond +-8 G are flagged
  overflow by the chip and refused by the driver (None); quantisation to
  1/30 uT.
- Device life: glitch reboots (watchdog, brown-out: 2-60 s off, the saved
  baseline survives), re-installations (flash wiped, 1-5 min off, sometimes
  with a car on the bay), maintenance (battery swap, 5-20 min off, bay
  empty because the technician works on it; a new battery's steel can moves
  the hard-iron offset by 3-15 uT), and installation with a car present.

What it does not model: other metal in the road (manhole covers, rebar) beyond
a constant offset, trams and power lines (only white noise), pedestrians with
magnets, snow, vehicles straddling two bays, a car swap with no empty second
in between, a sensor knocked loose (tilt change without a reboot).

Ground truth: the bay is occupied from the moment its vehicle stops (end of
the arrival manoeuvre) to the moment it starts to pull out.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field

EARTH_UT = 44.5
INCLINATION_DEG = 36.0
DECLINATION_DEG = -4.5
SENSOR_DEPTH_M = 0.05
LSB_UT = 100.0 / 3000.0  # QMC5883L, 8 G range: 3000 LSB per gauss
RANGE_UT = 800.0
DAY_S = 86400

# Body-frame dipoles: (along m, lateral m, height above ground m, permanent A m^2 lo..hi,
# induced A m^2 per uT of Earth's field lo..hi). Chosen (see the module docstring).
CAR = (
    (1.30, 0.0, 0.45, 40.0, 120.0, 0.8, 1.6),  # engine block
    (1.35, 0.0, 0.30, 10.0, 30.0, 0.1, 0.3),  # front axle
    (-1.35, 0.0, 0.30, 10.0, 30.0, 0.1, 0.3),  # rear axle
    (-0.80, 0.0, 0.30, 4.0, 15.0, 0.2, 0.4),  # floor pan
    (0.00, 0.0, 0.30, 4.0, 15.0, 0.2, 0.4),
    (0.80, 0.0, 0.30, 4.0, 15.0, 0.2, 0.4),
    (-1.00, 0.3, 0.30, 3.0, 10.0, 0.05, 0.15),  # exhaust, tank
)
SCOOTER = (
    (-0.15, 0.0, 0.30, 6.0, 15.0, 0.15, 0.3),  # engine and swing arm, under the seat
    (0.30, 0.0, 0.30, 2.0, 6.0, 0.05, 0.12),  # frame, floorboard, battery
    (0.75, 0.0, 0.35, 0.5, 2.0, 0.01, 0.04),  # front fork
)
KINDS: dict[str, tuple[tuple[float, ...], ...]] = {
    "car": CAR,
    "scooter": SCOOTER,
    # a van: longer, a little higher, 1.5 x the steel
    "van": tuple((a * 1.15, b, c + 0.05, lo * 1.5, hi * 1.5, il * 1.5, ih * 1.5) for a, b, c, lo, hi, il, ih in CAR),
    # a high chassis (SUV, pick-up): 18 cm more clearance, 1.4 x the steel
    "high": tuple((a * 1.05, b, c + 0.18, lo * 1.4, hi * 1.4, il * 1.4, ih * 1.4) for a, b, c, lo, hi, il, ih in CAR),
    "bus": tuple((-5.25 + 1.5 * i, 0.0, 0.6, 60.0, 200.0, 2.0, 5.0) for i in range(8)),
}
LENGTH_M = {"car": 4.5, "scooter": 1.9, "van": 5.2, "high": 4.8, "bus": 12.0}


@dataclass(frozen=True)
class Variant:
    """The generator with some of its chosen numbers changed: another generator's physics, for
    robustness runs (`parkscore.py --variant moment=0.6,offset_ut=10`). The default is the generator
    documented above, sample for sample. Each field scales or replaces one choice of ours."""

    moment: float = 1.0  # every vehicle's dipole moments (permanent and induced) times this
    offset_ut: float = 3.0  # sd of the per-axis hard-iron installation offset, uT
    tempco: float = 1.0  # the offset's and the gain's temperature coefficients times this
    noise: float = 1.0  # the white noise times this
    tilt_deg: float = 3.0  # the largest installation tilt
    depth_m: float = SENSOR_DEPTH_M  # sensor below the road surface
    lane: float = 1.0  # lane traffic (passing and queuing) times this

    @classmethod
    def parse(cls, text: str) -> Variant:
        """`name=value,...` over the fields above; a clear error for anything else."""
        names = list(cls.__dataclass_fields__)
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep or name not in names:
                raise ValueError(f"{part!r}: expected name=value with name one of {', '.join(names)}")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{part!r}: {value!r} is not a number") from None
            if not math.isfinite(number) or number < 0:
                raise ValueError(f"{part!r}: must be a finite number >= 0")
            values[name] = number
        return cls(**values)


DEFAULT = Variant()


@dataclass
class Dipole:
    along: float
    lateral: float
    height: float
    perm: tuple[float, float, float]  # body frame
    induced: tuple[float, float, float]  # bay frame (along Earth's field)


@dataclass
class Vehicle:
    """A vehicle with its dipoles and a path: keyframes (t s, u m, v m, yaw rad) in the bay frame."""

    kind: str
    dipoles: list[Dipole]
    keys: list[tuple[float, float, float, float]] = field(default_factory=list)
    depth: float = SENSOR_DEPTH_M  # of the sensor under the road, m
    _times: list[float] = field(default_factory=list)
    _cache_pose: tuple[float, float, float] | None = None
    _cache_field: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def span(self) -> tuple[float, float]:
        return self.keys[0][0], self.keys[-1][0]

    def pose(self, t: float) -> tuple[float, float, float]:
        if not self._times:
            self._times = [k[0] for k in self.keys]
        i = bisect_right(self._times, t)
        if i <= 0:
            return self.keys[0][1:]
        if i >= len(self.keys):
            return self.keys[-1][1:]
        t0, u0, v0, y0 = self.keys[i - 1]
        t1, u1, v1, y1 = self.keys[i]
        f = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
        return (u0 + f * (u1 - u0), v0 + f * (v1 - v0), y0 + f * (y1 - y0))

    def field_at_sensor(self, t: float) -> tuple[float, float, float]:
        pose = self.pose(t)
        if pose == self._cache_pose:
            return self._cache_field
        u, v, yaw = pose
        c, s = math.cos(yaw), math.sin(yaw)
        bx = by = bz = 0.0
        for d in self.dipoles:
            # dipole position relative to the sensor (bay frame, w up)
            rx = u + c * d.along - s * d.lateral
            ry = v + s * d.along + c * d.lateral
            rz = d.height + self.depth
            px, py, pz = d.perm
            mx = c * px - s * py + d.induced[0]
            my = s * px + c * py + d.induced[1]
            mz = pz + d.induced[2]
            r2 = rx * rx + ry * ry + rz * rz
            r = math.sqrt(r2)
            k = 0.1 / (r2 * r)
            dot = (mx * rx + my * ry + mz * rz) / r2
            # field at the sensor from a dipole at +r is the same as at -r from the dipole
            bx += k * (3.0 * dot * rx - mx)
            by += k * (3.0 * dot * ry - my)
            bz += k * (3.0 * dot * rz - mz)
        self._cache_pose = pose
        self._cache_field = (bx, by, bz)
        return self._cache_field


def earth_in_bay(heading_deg: float) -> tuple[float, float, float]:
    """Earth's field in the bay frame (u along the bay, v to its left, w up), uT."""
    inc, dec, psi = (math.radians(a) for a in (INCLINATION_DEG, DECLINATION_DEG, heading_deg))
    n = EARTH_UT * math.cos(inc) * math.cos(dec)
    e = EARTH_UT * math.cos(inc) * math.sin(dec)
    down = EARTH_UT * math.sin(inc)
    return (n * math.cos(psi) + e * math.sin(psi), n * math.sin(psi) - e * math.cos(psi), -down)


def make_vehicle(rng: random.Random, kind: str, earth: tuple[float, float, float], moment: float = 1.0) -> Vehicle:
    dips = []
    for along, lateral, height, lo, hi, ilo, ihi in KINDS[kind]:
        m = rng.uniform(lo, hi) * moment
        dx, dy, dz = _unit(rng)
        k = rng.uniform(ilo, ihi) * moment
        dips.append(
            Dipole(along, lateral, height, (m * dx, m * dy, m * dz), (k * earth[0], k * earth[1], k * earth[2]))
        )
    return Vehicle(kind, dips)


def _unit(rng: random.Random) -> tuple[float, float, float]:
    while True:
        x, y, z = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-1, 1)
        n = math.sqrt(x * x + y * y + z * z)
        if 0.1 < n <= 1.0:
            return (x / n, y / n, z / n)


# ---- paths ---------------------------------------------------------------------------


class PathBuilder:
    """Keyframes from waypoints (u, v, yaw) reached at a speed, with pauses."""

    def __init__(self, t: float, u: float, v: float, yaw: float) -> None:
        self.keys = [(t, u, v, yaw)]

    @property
    def t(self) -> float:
        return self.keys[-1][0]

    def to(self, u: float, v: float, yaw: float, speed: float) -> PathBuilder:
        _, u0, v0, _ = self.keys[-1]
        dist = math.hypot(u - u0, v - v0)
        self.keys.append((self.t + max(1.0, dist / speed), u, v, yaw))
        return self

    def pause(self, s: float) -> PathBuilder:
        _, u, v, y = self.keys[-1]
        self.keys.append((self.t + s, u, v, y))
        return self


@dataclass
class Layout:
    """The street around the bay: 'parallel' (kerb-side bays) or 'perpendicular' (bay ends on the lane)."""

    kind: str
    spacing: float  # distance between bay centres (along u for parallel, along v for perpendicular)
    lane: float  # lane centre: v for parallel, u for perpendicular

    def neighbour_shift(self, side: int) -> tuple[float, float]:
        return (side * self.spacing, 0.0) if self.kind == "parallel" else (0.0, side * self.spacing)


def arrival_path(rng: random.Random, lay: Layout, t_park: float, park: tuple[float, float, float]) -> PathBuilder:
    """Keyframes ending at `park` (u, v, yaw); the first keyframe is far away in the lane."""
    pu, pv, py = park
    style = rng.random()
    if lay.kind == "parallel":
        lane = lay.lane
        if style < 0.7:  # reverse-in: overtake the bay, stop, back in with the tail swinging
            p = PathBuilder(0.0, -70.0, lane, 0.0).to(7.0 + rng.uniform(0, 1.5), lane + 0.4, 0.0, rng.uniform(5, 9))
            p.pause(rng.uniform(1, 5)).to(3.5, -1.7, 0.38, 1.2).to(1.2, -0.6, 0.25, 0.8)
            p.to(pu - 0.3, pv, py + 0.05, 0.5)
            if rng.random() < 0.4:  # a correction forwards and back
                p.pause(rng.uniform(1, 3)).to(pu + 0.5, pv, py, 0.4).pause(1).to(pu, pv, py, 0.3)
            else:
                p.to(pu, pv, py, 0.3)
        else:  # head-in into a long gap
            p = PathBuilder(0.0, -70.0, lane, 0.0).to(-6.5, lane, 0.0, rng.uniform(5, 9))
            p.to(-2.8, -1.5, 0.35, 2.0).to(pu - 0.6, pv - 0.1, py + 0.08, 1.0).to(pu, pv, py, 0.4)
    else:
        lane = lay.lane
        if style < 0.6:  # head-in
            p = PathBuilder(0.0, lane, -70.0, math.pi / 2).to(lane, -4.5, math.pi / 2, rng.uniform(4, 8))
            p.to(lane + 1.4, -1.5, math.pi / 4, 1.8).to(pu - 2.2, pv - 0.2, py + 0.08, 1.0).to(pu, pv, py, 0.5)
        else:  # reverse-in: pass the bay, back in
            p = PathBuilder(0.0, lane, -70.0, math.pi / 2).to(lane, 4.5, math.pi / 2, rng.uniform(4, 8))
            p.pause(rng.uniform(1, 4)).to(lane + 1.3, 1.6, 0.75 * math.pi, 1.0)
            p.to(pu - 2.2, pv + 0.2, math.pi - 0.06, 0.8).to(pu, pv, math.pi + py, 0.4)
    shift = t_park - p.t
    p.keys = [(t + shift, u, v, y) for t, u, v, y in p.keys]
    return p


def departure_path(rng: random.Random, lay: Layout, p: PathBuilder, t_start: float) -> None:
    """Append a pull-out starting at t_start from the vehicle's parked pose."""
    _, pu, pv, py = p.keys[-1]
    p.keys.append((t_start, pu, pv, py))
    if lay.kind == "parallel":
        lane = lay.lane
        p.to(pu - 0.5, pv, py, 0.4).pause(rng.uniform(0, 2)).to(2.4, -1.3, 0.4, 1.3)
        p.to(6.0, lane, 0.1, 3.0).to(70.0, lane, 0.0, rng.uniform(6, 10))
    elif abs(py) < 1.0:  # parked head-in: reverse out, then drive on
        lane = lay.lane
        p.to(pu - 1.8, pv + 0.3, 0.15, 0.7).to(lane + 0.6, 2.0, math.pi / 3, 1.0)
        p.pause(rng.uniform(0.5, 2)).to(lane, 6.0, math.pi / 2, 2.5).to(lane, 70.0, math.pi / 2, rng.uniform(6, 10))
    else:  # parked reverse-in: drive out forwards
        lane = lay.lane
        p.to(pu - 2.4, pv + 0.3, math.pi - 0.25, 1.0).to(lane + 0.5, 2.2, 0.7 * math.pi, 1.5)
        p.to(lane, 6.0, math.pi / 2, 3.0).to(lane, 70.0, math.pi / 2, rng.uniform(6, 10))


def passing_path(rng: random.Random, lay: Layout, t0: float, queue_s: float) -> PathBuilder:
    """A lane vehicle driving past (either direction); with queue_s > 0 it stands beside the bay."""
    speed = rng.uniform(4, 14)
    forward = rng.random() < 0.6
    off = rng.gauss(0, 0.3) + (0.0 if forward else -3.5)
    sign = 1.0 if forward else -1.0
    if lay.kind == "parallel":
        lane = lay.lane + off

        def at(s: float) -> tuple[float, float, float]:
            return (sign * s, lane, 0.0 if forward else math.pi)
    else:
        lane = lay.lane + off  # the far lane is further from the bays

        def at(s: float) -> tuple[float, float, float]:
            return (lane, sign * s, math.pi / 2 if forward else -math.pi / 2)

    p = PathBuilder(t0, *at(-80.0))
    if queue_s > 0:
        stop = rng.uniform(-9, 9)
        p.to(*at(stop - 12.0), speed).to(*at(stop), 2.0).pause(queue_s).to(*at(stop + 8.0), 2.5)
    p.to(*at(80.0), speed)
    return p


# ---- the sensor ------------------------------------------------------------------------


@dataclass
class Sensor:
    """Hard and soft errors of one installed QMC5883L (see the module docstring for the ranges)."""

    rot: tuple[tuple[float, float, float], ...]
    offset: list[float]
    off_lin: tuple[float, float, float]
    off_quad: tuple[float, float, float]
    gain: tuple[float, float, float]
    gain_tc: float
    noise: float
    chip_t_offset: float

    @classmethod
    def draw(cls, rng: random.Random, noise: float, variant: Variant = DEFAULT) -> Sensor:
        yaw = rng.uniform(0, 2 * math.pi)
        tilt = math.radians(rng.uniform(0, variant.tilt_deg))
        tilt_dir = rng.uniform(0, 2 * math.pi)
        rot = _rotation(yaw, tilt, tilt_dir)
        tc = variant.tempco
        return cls(
            rot,
            [rng.gauss(0, variant.offset_ut) for _ in range(3)],
            (rng.uniform(-0.08, 0.08) * tc, rng.uniform(-0.08, 0.08) * tc, rng.uniform(-0.08, 0.08) * tc),
            (rng.uniform(-0.0015, 0.0015) * tc, rng.uniform(-0.0015, 0.0015) * tc, rng.uniform(-0.0015, 0.0015) * tc),
            (rng.uniform(0.97, 1.03), rng.uniform(0.97, 1.03), rng.uniform(0.97, 1.03)),
            rng.uniform(-0.0012, 0.0004) * tc,
            noise,
            rng.uniform(-3, 3),
        )

    def read(self, rng: random.Random, b: tuple[float, float, float], temp: float) -> tuple[float, float, float] | None:
        dt = temp - 25.0
        out = [0.0, 0.0, 0.0]
        g = 1.0 + self.gain_tc * dt
        for i in range(3):
            r = self.rot[i]
            v = r[0] * b[0] + r[1] * b[1] + r[2] * b[2]
            v = v * self.gain[i] * g + self.offset[i] + self.off_lin[i] * dt + self.off_quad[i] * dt * dt
            v += rng.gauss(0, self.noise)
            if abs(v) > RANGE_UT:
                return None  # the chip sets OVL; the driver refuses the sample
            out[i] = round(v / LSB_UT) * LSB_UT
        return (out[0], out[1], out[2])


def _rotation(yaw: float, tilt: float, tilt_dir: float) -> tuple[tuple[float, float, float], ...]:
    """Bay frame -> sensor frame: a yaw about w, then a small tilt about a horizontal axis."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    rz = ((cy, sy, 0.0), (-sy, cy, 0.0), (0.0, 0.0, 1.0))
    ax, ay = math.cos(tilt_dir), math.sin(tilt_dir)
    c, s = math.cos(tilt), math.sin(tilt)
    # Rodrigues rotation about (ax, ay, 0)
    rt = (
        (c + ax * ax * (1 - c), ax * ay * (1 - c), ay * s),
        (ax * ay * (1 - c), c + ay * ay * (1 - c), -ax * s),
        (-ay * s, ax * s, c),
    )
    def row(i: int) -> tuple[float, float, float]:
        a, b, c = (sum(rt[i][k] * rz[k][j] for k in range(3)) for j in range(3))
        return (float(a), float(b), float(c))

    return (row(0), row(1), row(2))


# ---- scenarios -------------------------------------------------------------------------


@dataclass
class Family:
    """What a scenario family varies; every trace of the family draws the rest from its seed."""

    name: str
    days: float
    layout: str = "parallel"
    kinds: tuple[tuple[str, float], ...] = (("car", 0.8), ("van", 0.1), ("high", 0.1))
    stay_s: tuple[float, float] = (600.0, 7200.0)
    gap_s: tuple[float, float] = (120.0, 3600.0)
    lane_per_h: float = 30.0
    queue_share: float = 0.1
    bus_share: float = 0.05
    neighbours: bool = True
    noise: tuple[float, float] = (0.12, 0.35)
    spikes: float = 1e-4
    fails: float = 1e-3
    hangs_per_day: float = 0.5
    temp_mean: tuple[float, float] = (22.0, 30.0)
    sun: tuple[float, float] = (5.0, 15.0)
    glitch_per_day: float = 0.0
    wipe_per_day: float = 0.0
    maint_per_day: float = 0.0
    start_occupied: float = 0.0  # probability that the bay holds a car at installation
    long_stays: int = 0  # this many stays of 1-3 days


FAMILIES: tuple[Family, ...] = (
    Family("cars_parallel", 1.0),
    Family("perpendicular_neighbours", 1.0, layout="perpendicular", lane_per_h=15.0),
    Family("scooters", 1.0, layout="scooter", kinds=(("scooter", 1.0),), stay_s=(300.0, 5400.0), lane_per_h=40.0),
    Family("high_chassis_vans", 1.0, kinds=(("high", 0.6), ("van", 0.4))),
    Family("bus_bay", 1.0, kinds=(("bus", 0.7), ("van", 0.3)), stay_s=(300.0, 3600.0), bus_share=0.2, neighbours=False),
    Family("busy_lane_queues", 1.0, lane_per_h=400.0, queue_share=0.25, bus_share=0.12),
    Family("quick_turnover", 0.5, stay_s=(120.0, 600.0), gap_s=(20.0, 300.0), lane_per_h=120.0),
    Family("long_stays_heat", 3.0, stay_s=(3600.0, 14400.0), gap_s=(600.0, 7200.0), temp_mean=(15.0, 34.0),
           sun=(12.0, 22.0), long_stays=2),
    Family("reboots_maintenance", 1.0, glitch_per_day=8.0, maint_per_day=2.0, wipe_per_day=1.0),
    Family("install_with_car", 1.0, start_occupied=1.0, wipe_per_day=2.0),
    Family("noisy_sensor", 1.0, noise=(0.8, 1.5), spikes=2e-3, fails=1e-2, hangs_per_day=6.0),
)


@dataclass
class Trace:
    """One seeded trace: per-second samples, the device's power and boots, and the truth."""

    family: str
    seed: int
    n: int
    x: array[float] = field(default_factory=lambda: array("d"))
    y: array[float] = field(default_factory=lambda: array("d"))
    z: array[float] = field(default_factory=lambda: array("d"))
    temp: array[float] = field(default_factory=lambda: array("d"))
    ok: bytearray = field(default_factory=bytearray)  # 1: a sample; 0: failed read or refused
    powered: bytearray = field(default_factory=bytearray)
    truth: bytearray = field(default_factory=bytearray)
    boots: dict[int, bool] = field(default_factory=dict)  # first sample after power-up -> baseline kept

    def events(self) -> list[tuple[int, int]]:
        out = []
        for i in range(1, self.n):
            if self.truth[i] != self.truth[i - 1]:
                out.append((i, self.truth[i]))
        return out


def _pick(rng: random.Random, kinds: tuple[tuple[str, float], ...]) -> str:
    r = rng.random() * sum(w for _, w in kinds)
    for k, w in kinds:
        r -= w
        if r <= 0:
            return k
    return kinds[-1][0]


def _layout(fam: Family) -> Layout:
    if fam.layout == "parallel":
        return Layout("parallel", 6.0, -3.0)
    if fam.layout == "perpendicular":
        return Layout("perpendicular", 2.5, -5.5)
    return Layout("perpendicular", 1.0, -4.0)  # scooter bays: 1 m wide, the lane 3 m from the bay end


def _visits(
    rng: random.Random, fam: Family, lay: Layout, earth: tuple[float, float, float], n: int, shift: tuple[float, float],
    start_occupied: bool, long_stays: int, moment: float,
) -> tuple[list[Vehicle], list[tuple[int, int]]]:
    """Vehicles using one bay (shifted by `shift`), and their parked spans (sample indices)."""
    vehicles, spans = [], []
    t = 0.0 if start_occupied else rng.uniform(60, 900)
    long_left = long_stays
    first = True
    while True:
        kind = _pick(rng, fam.kinds)
        big = kind == "bus"
        park = (rng.uniform(-0.5, 0.5) * (2.0 if big else 1.0), rng.uniform(-0.3, 0.3), math.radians(rng.gauss(0, 3)))
        if lay.kind == "perpendicular" and lay.spacing < 2.0:
            park = (rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2), math.radians(rng.gauss(0, 4)))
        if long_left and rng.random() < 0.5:
            stay = rng.uniform(86400, 3 * 86400) * min(1.0, fam.days / 3.0)
            long_left -= 1
        else:
            stay = math.exp(rng.uniform(math.log(fam.stay_s[0]), math.log(fam.stay_s[1])))
        if t + stay + 300 >= n:
            break
        v = make_vehicle(rng, kind, earth, moment)
        if first and start_occupied:
            turned = lay.kind != "parallel" and rng.random() < 0.4  # backed in before the sensor was installed
            p = PathBuilder(-1.0, park[0], park[1], park[2] + (math.pi if turned else 0.0))
            t_park = -1.0
        else:
            p = arrival_path(rng, lay, t, park)
            t_park = t
        departure_path(rng, lay, p, t_park + stay)
        du, dv = shift
        v.keys = [(kt, u + du, vv + dv, y) for kt, u, vv, y in p.keys]
        vehicles.append(v)
        spans.append((max(0, math.ceil(t_park)), int(t_park + stay)))
        t = v.span()[1] + math.exp(rng.uniform(math.log(fam.gap_s[0]), math.log(fam.gap_s[1])))
        first = False
    return vehicles, spans


def generate(fam: Family, seed: int, variant: Variant = DEFAULT) -> Trace:
    """The trace of one family for one seed (deterministic), from the generator or a variant of it."""
    rng = random.Random(seed * 7919 + sum(map(ord, fam.name)))
    n = int(fam.days * DAY_S)
    lay = _layout(fam)
    heading = rng.uniform(0, 360)
    earth = earth_in_bay(heading)
    sensor = Sensor.draw(rng, rng.uniform(*fam.noise) * variant.noise, variant)
    own, spans = _visits(rng, fam, lay, earth, n, (0.0, 0.0), rng.random() < fam.start_occupied, fam.long_stays,
                         variant.moment)
    others: list[Vehicle] = []
    if fam.neighbours:
        for side in (-1, 1):
            nb, _ = _visits(rng, fam, lay, earth, n, lay.neighbour_shift(side), rng.random() < 0.5, 0, variant.moment)
            others += nb
    t = 0.0
    rate = fam.lane_per_h * variant.lane / 3600.0
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= n:
            break
        kind = "bus" if rng.random() < fam.bus_share else _pick(rng, (("car", 0.75), ("van", 0.15), ("high", 0.1)))
        queue = rng.uniform(20, 90) if rng.random() < fam.queue_share else 0.0
        v = make_vehicle(rng, kind, earth, variant.moment)
        v.keys = passing_path(rng, lay, t, queue).keys
        others.append(v)
    for v in own + others:
        v.depth = variant.depth_m
    tr = Trace(fam.name, seed, n)
    tr.truth = bytearray(n)
    for a, b in spans:
        tr.truth[a:b] = b"\x01" * (b - a)
    steps = _power(rng, fam, tr, spans)
    _render(rng, fam, tr, own + others, earth, sensor, steps)
    return tr


def _power(
    rng: random.Random, fam: Family, tr: Trace, spans: list[tuple[int, int]]
) -> list[tuple[int, tuple[float, float, float]]]:
    """Power cuts and boots; returns the hard-iron offset steps of maintenance (done in an empty bay)."""
    n = tr.n
    tr.powered = bytearray(b"\x01" * n)
    tr.boots = {0: False}
    steps: list[tuple[int, tuple[float, float, float]]] = []
    plans = []
    for per_day, kind in ((fam.glitch_per_day, "glitch"), (fam.wipe_per_day, "wipe"), (fam.maint_per_day, "maint")):
        for _ in range(round(per_day * fam.days)):
            plans.append((rng.uniform(600, n - 1800), kind))
    for at, kind in sorted(plans):
        start = int(at)
        if kind == "maint":  # the technician needs the bay empty: move to the middle of a long enough gap
            gaps = [(a, b) for a, b in _gaps(spans, n) if b - a > 1800]
            if not gaps:
                continue
            a, b = min(gaps, key=lambda g: abs((g[0] + g[1]) / 2 - at))
            start = int((a + b) / 2 - 600)
        off = {"glitch": rng.uniform(2, 60), "wipe": rng.uniform(60, 300), "maint": rng.uniform(300, 1200)}[kind]
        end = min(n - 1, start + int(off))
        if any(not tr.powered[i] for i in (start, end)):
            continue
        tr.powered[start:end] = bytes(end - start)
        tr.boots[end] = kind != "wipe"
        if kind == "maint":
            m = rng.uniform(3, 15)
            ux, uy, uz = _unit(rng)
            steps.append((end, (m * ux, m * uy, m * uz)))
    return steps


def _gaps(spans: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    out, last = [], 0
    for a, b in spans:
        out.append((last, a - 120))
        last = b + 120
    out.append((last, n))
    return out


def _render(rng: random.Random, fam: Family, tr: Trace, vehicles: list[Vehicle], earth: tuple[float, float, float],
            sensor: Sensor, steps: list[tuple[int, tuple[float, float, float]]]) -> None:
    n = tr.n
    days = math.ceil(fam.days) + 1
    t_mean = [rng.uniform(*fam.temp_mean) for _ in range(days)]
    t_amp = [rng.uniform(3, 7) for _ in range(days)]
    sun = [rng.uniform(*fam.sun) * (0.3 if rng.random() < 0.25 else 1.0) for _ in range(days)]
    hour0 = rng.uniform(0, 24)
    spans = sorted((v.span()[0], v.span()[1], v) for v in vehicles)
    active: list[Vehicle] = []
    nxt = 0
    hang_until = -1
    p_hang = fam.hangs_per_day / DAY_S
    temp = t_mean[0] - 2.0
    k = 1.0 - math.exp(-1.0 / 2400.0)
    tr.ok = bytearray(n)
    for i in range(n):
        while steps and steps[0][0] <= i:
            s = steps.pop(0)[1]
            for a in range(3):
                sensor.offset[a] += s[a]
        hour = (hour0 + i / 3600.0) % 24
        day = int((hour0 + i / 3600.0) // 24)
        air = t_mean[day] + t_amp[day] * math.cos(2 * math.pi * (hour - 15) / 24)
        solar = max(0.0, math.sin(math.pi * (hour - 6) / 12)) * sun[day] * (0.25 if tr.truth[i] else 1.0)
        temp += k * (air + solar - temp)
        while nxt < len(spans) and spans[nxt][0] <= i:
            active.append(spans[nxt][2])
            nxt += 1
        bx, by, bz = earth
        keep = []
        for v in active:
            if v.span()[1] < i:
                continue
            keep.append(v)
            f = v.field_at_sensor(float(i))
            bx += f[0]
            by += f[1]
            bz += f[2]
        active = keep
        chip_t = round((temp + sensor.chip_t_offset) * 100) / 100.0
        tr.temp.append(chip_t)
        sample = sensor.read(rng, (bx, by, bz), temp)
        if rng.random() < fam.spikes and sample is not None:
            m = rng.uniform(20, 200)
            ux, uy, uz = _unit(rng)
            sample = (sample[0] + m * ux, sample[1] + m * uy, sample[2] + m * uz)
        if i < hang_until or rng.random() < fam.fails:
            sample = None
        elif rng.random() < p_hang:
            hang_until = i + int(rng.uniform(5, 30))
        if sample is None:
            tr.x.append(0.0)
            tr.y.append(0.0)
            tr.z.append(0.0)
        else:
            tr.ok[i] = 1
            tr.x.append(sample[0])
            tr.y.append(sample[1])
            tr.z.append(sample[2])


def seed_set(base: int, per_family: int = 2, variant: Variant = DEFAULT) -> list[Trace]:
    """All families, `per_family` traces each, seeds base, base+1, ..."""
    return [generate(f, base + j, variant) for f in FAMILIES for j in range(per_family)]
