#!/usr/bin/env python3
"""Peer figures for the Dynamics benchmark (`cargo xtask bench`): ReservoirPy and plain NumPy on
the same tasks as the CLI contract, timed in one run on this machine.

    pip install reservoirpy==0.4.2 numpy
    python3 tests/bench/peer_dynamics.py      # prints one JSON object
"""
import json
import time

import numpy as np
from reservoirpy.datasets import mackey_glass
from reservoirpy.nodes import Reservoir, Ridge
from reservoirpy.observables import nrmse, rsquare


def esn():
    x = mackey_glass(10_000).ravel()
    x = 2 * (x - x.min()) / (x.max() - x.min()) - 1
    u, y = x[:-1].reshape(-1, 1), x[1:].reshape(-1, 1)
    t0 = time.perf_counter()
    res = Reservoir(500, sr=0.9, lr=0.3, input_scaling=1.0, seed=42)
    ro = Ridge(ridge=1e-7)
    states = res.run(u[:7000])
    ro.fit(states[100:5000], y[100:5000])
    pred = ro.run(states[5000:7000])
    secs = time.perf_counter() - t0
    return {"nrmse": float(nrmse(y[5000:7000], pred)), "r2": float(rsquare(y[5000:7000], pred)), "seconds": secs}


def memory_capacity():
    rng = np.random.default_rng(7)
    k_max, warm, train, test = 50, 200, 4000, 1000
    u = rng.uniform(-1, 1, size=(warm + train + test, 1))
    t0 = time.perf_counter()
    res = Reservoir(100, sr=1.0, lr=1.0, input_scaling=0.1, input_connectivity=1.0, seed=1)
    s = res.run(u)
    tgt = np.stack([np.roll(u[:, 0], k) for k in range(1, k_max + 1)], axis=1)
    ro = Ridge(ridge=1e-4)
    ro.fit(s[warm:warm + train], tgt[warm:warm + train])
    p = ro.run(s[warm + train:])
    t = tgt[warm + train:]
    mc_k = [float(np.corrcoef(t[:, k], p[:, k])[0, 1] ** 2) for k in range(k_max)]
    return {"mc": sum(mc_k), "seconds": time.perf_counter() - t0}


def izhikevich():
    # Izhikevich (2003), the published MATLAB loop in NumPy. Timed from the network's draw, as
    # the CLI's "seconds" is (its set-up draws the same 1000 x 1000 weights).
    t0 = time.perf_counter()
    rng = np.random.default_rng(1)
    ne, ni = 800, 200
    re, ri = rng.random(ne), rng.random(ni)
    a = np.r_[0.02 * np.ones(ne), 0.02 + 0.08 * ri]
    b = np.r_[0.2 * np.ones(ne), 0.25 - 0.05 * ri]
    c = np.r_[-65 + 15 * re**2, -65 * np.ones(ni)]
    d = np.r_[8 - 6 * re**2, 2 * np.ones(ni)]
    S = np.c_[0.5 * rng.random((ne + ni, ne)), -rng.random((ne + ni, ni))]
    v = -65 * np.ones(ne + ni)
    u = b * v
    spikes = np.zeros(ne + ni)
    for _ in range(1000):
        I = np.r_[5 * rng.standard_normal(ne), 2 * rng.standard_normal(ni)]
        fired = v >= 30
        spikes += fired
        v[fired] = c[fired]
        u[fired] += d[fired]
        I += S[:, fired].sum(axis=1)
        v += 0.5 * (0.04 * v**2 + 5 * v + 140 - u + I)
        v += 0.5 * (0.04 * v**2 + 5 * v + 140 - u + I)
        u += a * (b * v - u)
    secs = time.perf_counter() - t0
    return {"spikes": int(spikes.sum()), "rate_exc_hz": float(spikes[:ne].mean()), "rate_inh_hz": float(spikes[ne:].mean()), "seconds": secs}


print(json.dumps({"esn_reservoirpy": esn(), "memory_capacity_reservoirpy": memory_capacity(), "izhikevich_numpy": izhikevich()}))
