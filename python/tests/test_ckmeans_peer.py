"""Ckmeans.1d.dp (Wang & Song 2011, through its Python wrapper `ckwrap`) as the peer of `--method exact`: both
find the globally optimal weighted 1-D k-means partition, netquant by its own DP (a Lagrangian search above 2^16
distinct values, 2^20 bins above 2^22). Skipped without ckwrap (`pip install ckwrap`).
"""

from __future__ import annotations

import numpy as np
import pytest

import netquant

ckwrap = pytest.importorskip("ckwrap", reason="ckwrap is not installed: the Ckmeans.1d.dp peer check is skipped")

# (n, k): the layer-by-layer DP, the Lagrangian search past 2^16 distinct values, and the binned search past 2^22.
CASES = [(1031, 2), (4099, 16), (65537, 16), (70001, 256), (2**22 + 5, 16)]


@pytest.mark.parametrize("n,k", CASES)
def test_exact_reaches_the_ckmeans_optimum(rng, n, k):
    w = (rng.standard_t(4, n) * 0.05).astype(np.float32)  # heavy tails, as trained weights have
    h = rng.gamma(0.7, 2.0, n).astype(np.float32)
    r = netquant.quantize(w, h, method="exact", k=k, scope="tensor")
    peer = ckwrap.ckmeans(w.astype(np.float64), k, weights=h.astype(np.float64))
    optimum = float(np.sum(peer.withinss))  # sum of h (w - c)^2 at the weighted means
    ours = r.stats["hw_distortion"] * n     # the report's D is per weight, at the float32 levels
    binned = n > 2**22
    # Never below the optimum (beyond float32 levels' rounding, which only adds), and equal to it but for that
    # rounding; the binned search restricts boundaries to bin edges, documented as close, not exact.
    assert ours >= optimum * (1 - 1e-9)
    assert ours <= optimum * (1 + (1e-6 if binned else 1e-9)), (ours, optimum)
    if not binned:
        np.testing.assert_array_equal(r.indices.ravel(), peer.labels)  # random floats: no tied partitions
        np.testing.assert_array_max_ulp(r.codebook, peer.centers.astype(np.float32), maxulp=1)
