"""The GIL is released while the engine works: another Python thread keeps running during quantize()."""

from __future__ import annotations

import threading
import time

import numpy as np

import netquant


def test_other_threads_run_during_quantize():
    rng = np.random.default_rng(99)
    w = rng.laplace(0, 0.05, size=400_000).astype(np.float32)
    h = rng.gamma(0.5, 2.0, size=w.size).astype(np.float32)
    window: dict[str, float] = {}
    ticks: list[float] = []

    def work() -> None:
        window["start"] = time.perf_counter()
        netquant.quantize(w, h, method="ecsq", k=64, lam=1e-6, max_iter=40, tol=0.0, backend="cpu")
        window["end"] = time.perf_counter()

    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    during = [x for x in ticks if window["start"] + 0.01 < x < window["end"] - 0.01]
    duration = window["end"] - window["start"]
    if duration < 0.1:
        return  # too fast on this machine to tell; nothing to conclude
    # With the GIL held for the whole call, this thread could not tick at all inside the window.
    assert len(during) >= 5, f"only {len(during)} ticks during a {duration:.3f} s quantize(): GIL not released?"
