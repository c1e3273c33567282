#!/usr/bin/python3
"""Peer timings for bench/run_cpu_bench.sh: scikit-learn KMeans and FAISS Clustering with sample weights on the
same synthetic data as bench_quant (Student-t weights, gamma importance; not bit-identical RNG, same laws), and
Ckmeans.1d.dp (the `ckwrap` wrapper, from pip) for the exact optimum. Prints `peer=... n=... k=... ms_per_iter=...`
lines (`seconds=` alone for ckmeans)."""
import sys
import time

import numpy as np


def data(n):
    rng = np.random.default_rng(42)
    w = (0.02 * rng.standard_t(3.0, n)).astype(np.float32)
    h = (rng.gamma(0.7, 2.0, n) + 1e-3).astype(np.float32)
    return w, h


def sklearn_ms(n, k, iters):
    from sklearn.cluster import KMeans
    w, h = data(n)
    init = np.linspace(w.min(), w.max(), k).reshape(-1, 1)
    km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=iters, algorithm="lloyd", tol=0)
    t0 = time.perf_counter()
    km.fit(w.reshape(-1, 1), sample_weight=h)
    dt = time.perf_counter() - t0
    return 1e3 * dt / max(1, km.n_iter_), km.n_iter_, dt


def faiss_ms(n, k, iters):
    import faiss
    w, h = data(n)
    cp = faiss.ClusteringParameters()
    cp.niter = iters
    cp.max_points_per_centroid = 1 << 30
    cp.min_points_per_centroid = 1
    cl = faiss.Clustering(1, k, cp)
    index = faiss.IndexFlatL2(1)
    t0 = time.perf_counter()
    cl.train(w.reshape(-1, 1), index, h)
    dt = time.perf_counter() - t0
    return 1e3 * dt / iters, iters, dt


def ckmeans_s(n, k):
    """Ckmeans.1d.dp's weighted optimum (its fastest, 'linear' method): the peer of `--method exact`."""
    import ckwrap
    w, h = data(n)
    t0 = time.perf_counter()
    ckwrap.ckmeans(w.astype(np.float64), k, weights=h.astype(np.float64), method="linear")
    return time.perf_counter() - t0


def main():
    # Every case times the same number of iterations as netquant's (50 by default): a short fit would fold
    # sklearn's fixed set-up cost into each iteration and inflate the ratio.
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    cases = [(10_000_000, 16, iters), (1_000_000, 256, iters), (1_000_000, 16, iters)]
    for n, k, iters in cases:
        try:
            ms, it, dt = sklearn_ms(n, k, iters)
            print(f"peer=sklearn n={n} k={k} iterations={it} ms_per_iter={ms:.2f} seconds={dt:.3f}", flush=True)
        except ImportError as e:
            print(f"peer=sklearn missing ({e}); apt-get install python3-sklearn", flush=True)
        try:
            ms, it, dt = faiss_ms(n, k, iters)
            print(f"peer=faiss n={n} k={k} iterations={it} ms_per_iter={ms:.2f} seconds={dt:.3f}", flush=True)
        except ImportError as e:
            print(f"peer=faiss missing ({e}); continuing without it", flush=True)
    for n in (100_000, 1_000_000):
        try:
            print(f"peer=ckmeans n={n} k=256 seconds={ckmeans_s(n, 256):.3f}", flush=True)
        except ImportError as e:
            print(f"peer=ckmeans missing ({e}); pip install ckwrap for the exact method's peer", flush=True)
            break


if __name__ == "__main__":
    main()
