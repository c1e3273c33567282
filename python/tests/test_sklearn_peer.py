"""scikit-learn's weighted Lloyd as the peer of netquant's k-means and Hessian-weighted k-means (skipped without
scikit-learn; tools/setup.sh installs Debian's python3-sklearn).

Both sides run Lloyd's algorithm from the same start, netquant's `linear` init (k centres evenly from the least to
the greatest value of positive importance), to a fixed point: KMeans(tol=0) stops only when no label changes, and
netquant with tol=0 only when the objective stops falling. The same partition must come out: equal labels, and
codebooks equal to float32 rounding of scikit-learn's float64 centres (its sample_weight is the importance).
"""

from __future__ import annotations

import numpy as np
import pytest

import netquant

sklearn_cluster = pytest.importorskip("sklearn.cluster", reason="scikit-learn is not installed: the peer check is skipped")


def sklearn_lloyd(w: np.ndarray, h: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted float64 centres and each value's rank among them, from netquant's linear start."""
    w64 = w.astype(np.float64)
    weights = None if h is None else h.astype(np.float64)
    positive = w64 if weights is None else w64[weights > 0]
    start = np.linspace(positive.min(), positive.max(), k).reshape(-1, 1)
    km = sklearn_cluster.KMeans(n_clusters=k, init=start, n_init=1, algorithm="lloyd", tol=0, max_iter=5000)
    km.fit(w64.reshape(-1, 1), sample_weight=weights)
    assert km.n_iter_ < 5000, "scikit-learn did not reach a fixed point"
    centres = km.cluster_centers_.ravel()
    order = np.argsort(centres)
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return centres[order], rank[km.labels_]


# Awkward sizes; each case's data leaves no cluster empty on the way (scikit-learn would move an emptied centre to
# a far point, netquant drops it: a different, documented rule this test does not compare).
CASES = [
    ("hw-kmeans", 4099, 2, "normal"),
    ("hw-kmeans", 20011, 16, "normal"),
    ("hw-kmeans", 65537, 256, "uniform"),
    ("kmeans", 8191, 8, "normal"),
    ("kmeans", 1031, 31, "uniform"),
]


@pytest.mark.parametrize("method,n,k,shape", CASES)
def test_lloyd_fixed_point_matches_sklearn(rng, method, n, k, shape):
    w = (rng.standard_normal(n) * 0.05 if shape == "normal" else rng.uniform(-0.3, 0.2, n)).astype(np.float32)
    h = rng.gamma(0.7, 2.0, n).astype(np.float32)
    r = netquant.quantize(w, h, method=method, k=k, scope="tensor", max_iter=5000, tol=0)
    assert r.stats["converged"]
    assert len(r.codebook) == k, "a cluster emptied: this case no longer tests what it says"
    centres, labels = sklearn_lloyd(w, h if method == "hw-kmeans" else None, k)
    np.testing.assert_array_equal(r.indices.ravel(), labels)
    # netquant rounds its float64 centres to float32 levels once, at the end; the two float64 sums may differ in
    # their last bit (order of additions), which can move a rounding by one float32 step.
    np.testing.assert_array_max_ulp(r.codebook, centres.astype(np.float32), maxulp=1)
