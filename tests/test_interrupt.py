"""Ctrl-C stops a long product: SIGINT during ``spmm.multiply`` raises KeyboardInterrupt soon
after, every thread is idle afterwards, and the next product is right.

Each case runs in a child process (a signal sent to the test runner would stop it). No timing
is asserted: the signal comes after a twentieth of the product's time, and the product must have
stopped early: ``out`` does not hold the finished product (a product that ignored the signal
would finish, and only then would Python raise KeyboardInterrupt).
"""

from __future__ import annotations

import pytest
from conftest import BACKENDS, run_python_json

CHILD = """
import json, os, signal, threading, time
import numpy as np, scipy.sparse as sp
import spmm

backend = {backend!r}
rng = np.random.default_rng(0)
a = sp.random_array((2**18, 2**16), density=24 / 2**16, format="csr", dtype=np.float32,
                    rng=rng)
b = rng.standard_normal((2**16, 48)).astype(np.float32)
operands = {{
    "csr A @ B": (a, b), "csc A @ B": (a.tocsc(), b), "coo A @ B": (a.tocoo(), b),
    "csr X @ W": (b.T.copy(), a.T.tocsr()), "prepared A @ B": (spmm.prepare(a), b),
}}
report = {{}}
for name, (left, right) in operands.items():
    durations = []
    for _ in range(3):  # the shortest of three: a run slowed by other processes would mislead
        start = time.perf_counter()
        expected = spmm.multiply(left, right, backend=backend)
        durations.append(time.perf_counter() - start)
    out = np.full_like(expected, np.nan)
    timer = threading.Timer(min(durations) / 20, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        try:
            spmm.multiply(left, right, backend=backend, out=out)
            outcome = "finished before the signal"
        except KeyboardInterrupt:
            outcome = "interrupted early" if not np.allclose(out, expected) else "interrupted late"
        timer.join()
    except KeyboardInterrupt:
        outcome = "finished before the signal"
    time.sleep(1.0)  # past every spin-wait (the pool's, libgomp's)
    me = os.getpid()
    states = [open(f"/proc/{{me}}/task/{{t}}/stat").read().rsplit(")", 1)[1].split()[0]
              for t in os.listdir(f"/proc/{{me}}/task") if int(t) != me]
    small = sp.random_array((50, 40), density=0.2, format="csr", rng=1)
    x = rng.standard_normal((40, 3))
    right_after = bool(np.allclose(spmm.multiply(small, x, backend=backend), small @ x))
    report[name] = {{"outcome": outcome, "busy_threads": states.count("R"),
                    "next_product_right": right_after}}
print(json.dumps(report))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigint_stops_a_long_product_and_leaves_every_thread_idle(backend):
    report = run_python_json(CHILD.format(backend=backend), {}, timeout=600)
    for name, got in report.items():
        assert got == {"outcome": "interrupted early", "busy_threads": 0,
                       "next_product_right": True}, name
