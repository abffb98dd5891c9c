"""MicroPython side of run.mjs: the parking detector's RAM and its cost per sample.

run.mjs reports the heap one Detector holds after gc.collect() (after it has
run, so its floats are its own objects), in separate top-level calls because
the WebAssembly port only reclaims garbage between them. The detector is fed 2400 samples of a generated trace (an empty bay, cars arriving
and leaving, noise) held in preallocated arrays, and prints the time per
sample (time.ticks_us) and the heap allocated per sample with the collector
off. MicroPython boxes every float result, so the allocation is not zero:
it is short-lived garbage, no container grows.
"""

import gc
import time
from array import array

import magtraces
from parking.detector import make_detector

N = 2400


def _trace():
    sc = magtraces.Scenario("ram", N, seed=7).add_visits(6, 120, 300, 60, start_s=60)
    xs, ys, zs = array("f", bytes(4 * N)), array("f", bytes(4 * N)), array("f", bytes(4 * N))
    i = 0
    for x, y, z in sc.samples():
        xs[i], ys[i], zs[i] = x, y, z
        i += 1
    return xs, ys, zs, len(sc.truth())


def run(trace):
    """Feed the trace to a new detector; print the time and garbage per sample; return the detector."""
    xs, ys, zs, events = trace
    det = make_detector(1000)
    changes = 0
    gc.collect()
    gc.disable()
    a0 = gc.mem_alloc()
    t0 = time.ticks_us()
    for i in range(N):
        if det.update(xs[i], ys[i], zs[i], 25.0):
            changes += 1
    dt = time.ticks_diff(time.ticks_us(), t0)
    a1 = gc.mem_alloc()
    gc.enable()
    print("PARKING per_sample_us=%d alloc_per_sample=%d changes=%d events=%d" % (dt // N, (a1 - a0) // N, changes, events))
    return det


TRACE = _trace()  # run.mjs then takes the heap, calls run(TRACE) and takes it again, each a top-level call
