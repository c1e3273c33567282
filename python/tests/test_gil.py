"""The GIL is released while the engine works: another Python thread keeps running during quantize() and
quantize_model() and compress()."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import netquant


def _ticks_during_quantize(w: np.ndarray, h: np.ndarray, call: str) -> tuple[int, float]:
    """Runs quantize() (or quantize_model() / compress() of {"w": w}) on a thread while this one ticks every
    millisecond; the ticks inside the call and its length."""
    window: dict[str, float] = {}
    ticks: list[float] = []

    def work() -> None:
        window["start"] = time.perf_counter()
        args = dict(method="ecsq", k=64, lam=1e-6, max_iter=40, tol=0.0, backend="cpu")
        if call == "quantize":
            netquant.quantize(w, h, **args)
        else:
            getattr(netquant, call)({"w": w}, {"w": h}, **args)
        window["end"] = time.perf_counter()

    t = threading.Thread(target=work)
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    during = [x for x in ticks if window["start"] + 0.01 < x < window["end"] - 0.01]
    return len(during), window["end"] - window["start"]


@pytest.mark.parametrize("call", ["quantize", "quantize_model", "compress"])
def test_other_threads_run_during_quantize(call):
    rng = np.random.default_rng(99)
    # The call must last long enough for ticks to count: the input grows until it does (a fast machine), so the
    # assertion below always runs.
    size = 400_000
    while True:
        w = rng.laplace(0, 0.05, size=size).astype(np.float32)
        h = rng.gamma(0.5, 2.0, size=w.size).astype(np.float32)
        during, duration = _ticks_during_quantize(w, h, call)
        if duration >= 0.2 or size >= 25_600_000:
            break
        size *= 4
    assert duration >= 0.1, f"{call}() of {size} weights took only {duration:.3f} s: nothing to measure"
    # With the GIL held for the whole call, this thread could not tick at all inside the window.
    assert during >= 5, f"only {during} ticks during a {duration:.3f} s {call}(): GIL not released?"
