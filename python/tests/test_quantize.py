"""netquant.quantize / quantize_model: results are consistent with an independent float64 oracle, every scope
works, and same inputs + seed give bitwise-identical results."""

from __future__ import annotations

import numpy as np
import pytest

import netquant
from conftest import importance, weights

REPORT_KEYS = {"params", "clusters", "hw_distortion", "mse", "entropy_bits_per_weight", "fixed_bits_per_weight",
               "ratio_fixed", "ratio_entropy", "lambda", "seconds", "huffman_bits_per_weight", "ratio_huffman",
               "ratio_file"}


def oracle_stats(w: np.ndarray, h: np.ndarray | None, deq: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    w64, d64 = w.astype(np.float64).ravel(), deq.astype(np.float64).ravel()
    h64 = np.ones_like(w64) if h is None else h.astype(np.float64).ravel()
    _, counts = np.unique(idx.ravel(), return_counts=True)
    p = counts / counts.sum()
    return {"hw_distortion": float(np.mean(h64 * (d64 - w64) ** 2)), "mse": float(np.mean((d64 - w64) ** 2)),
            "entropy_bits_per_weight": float(-(p * np.log2(p)).sum()), "clusters": int(len(counts))}


@pytest.mark.parametrize("method,kwargs", [("ecsq", {"k": 16, "lam": 1e-4}), ("hw-kmeans", {"k": 8}),
                                           ("kmeans", {"bits": 3}), ("uniform", {"k": 12}), ("exact", {"k": 5})])
@pytest.mark.parametrize("shape", [(257,), (31, 17), (3, 5, 7)])
def test_result_matches_oracle(rng, method, kwargs, shape):
    w, h = weights(rng, shape), importance(rng, shape)
    r = netquant.quantize(w, h, method=method, backend="cpu", **kwargs)
    assert r.dequantized.shape == w.shape and r.dequantized.dtype == np.float32
    assert r.indices is not None and r.indices.shape == w.shape and r.indices.dtype == np.int32
    cb = r.codebook
    assert cb.dtype == np.float32 and np.all(np.diff(cb) > 0), "codebook sorted ascending, no duplicates"
    assert np.array_equal(r.dequantized, cb[r.indices]), "dequantized == codebook[indices]"
    assert REPORT_KEYS <= set(r.stats)
    assert r.stats["params"] == w.size
    o = oracle_stats(w, h, r.dequantized, r.indices)  # hw_distortion weighs by h for every method given it
    assert r.stats["clusters"] == o["clusters"] <= (kwargs.get("k") or 2 ** kwargs.get("bits", 4))
    assert r.stats["hw_distortion"] == pytest.approx(o["hw_distortion"], rel=1e-5, abs=1e-12)
    assert r.stats["mse"] == pytest.approx(o["mse"], rel=1e-5, abs=1e-12)
    assert r.stats["entropy_bits_per_weight"] == pytest.approx(o["entropy_bits_per_weight"], rel=1e-6, abs=1e-9)
    assert r.stats["ratio_huffman"] > 1.0 and r.stats["huffman_bits_per_weight"] > 0


def test_hw_kmeans_is_locally_optimal(rng):
    # Oracle: at a Lloyd fixed point every center is the importance-weighted mean of its members, and every
    # value sits at its nearest center.
    w, h = weights(rng, (2000,)), importance(rng, (2000,))
    r = netquant.quantize(w, h, method="hw-kmeans", k=6, max_iter=1000, tol=0.0, backend="cpu")
    cb = r.codebook.astype(np.float64)
    for j in range(len(cb)):
        m = r.indices == j
        assert cb[j] == pytest.approx(np.sum(h[m] * w[m], dtype=np.float64) / np.sum(h[m], dtype=np.float64),
                                      rel=1e-5)
    nearest = np.argmin(np.abs(w.astype(np.float64)[:, None] - cb[None, :]), axis=1)
    assert np.mean(nearest == r.indices) > 0.999


def test_deterministic_bitwise(rng):
    w, h = weights(rng, (64, 33)), importance(rng, (64, 33))
    a = netquant.quantize(w, h, method="hw-kmeans", k=16, init="kmeans++", seed=7, backend="cpu")
    b = netquant.quantize(w, h, method="hw-kmeans", k=16, init="kmeans++", seed=7, backend="cpu")
    assert np.array_equal(a.dequantized.view(np.uint32), b.dequantized.view(np.uint32))
    assert np.array_equal(a.indices, b.indices)


def test_more_lambda_fewer_bits(rng):
    w, h = weights(rng, (4096,)), importance(rng, (4096,))
    lo = netquant.quantize(w, h, method="ecsq", k=32, lam=1e-7, backend="cpu")
    hi = netquant.quantize(w, h, method="ecsq", k=32, lam=1e-3, backend="cpu")
    assert hi.stats["entropy_bits_per_weight"] < lo.stats["entropy_bits_per_weight"]
    assert hi.stats["hw_distortion"] >= lo.stats["hw_distortion"]


@pytest.mark.parametrize("scope,problems", [("row", 9), ("group:40", 6), ("tensor", 1)])
def test_scopes(rng, scope, problems):
    w = weights(rng, (9, 25))
    r = netquant.quantize(w, method="hw-kmeans", k=4, scope=scope, backend="cpu")
    assert len(r.codebooks) == problems
    flat_idx, flat_deq = r.indices.ravel(), r.dequantized.ravel()
    for i in range(w.size):
        assert flat_deq[i] == r.codebooks[i // r.problem_size][flat_idx[i]]
    if problems > 1:
        with pytest.raises(ValueError, match="codebooks"):
            _ = r.codebook


def test_prune_sets_exact_zeros(rng):
    w = weights(rng, (1000,))
    r = netquant.quantize(w, method="hw-kmeans", k=8, prune=0.5, backend="cpu")
    pruned = r.indices == -1
    assert r.stats["pruned"] == pruned.sum() >= 450
    assert np.all(r.dequantized[pruned] == 0)
    # The smallest |w| (no importance) are the pruned ones.
    assert np.abs(w[pruned]).max() <= np.abs(w[~pruned]).min()


def test_float16_and_float64_inputs(rng):
    w32 = weights(rng, (300,))
    r16 = netquant.quantize(w32.astype(np.float16), method="hw-kmeans", k=4, backend="cpu")
    assert r16.dequantized.shape == (300,)
    assert r16.dequantized.dtype in (np.float16, np.float32)
    r64 = netquant.quantize(w32.astype(np.float64), method="hw-kmeans", k=4, backend="cpu")
    r32 = netquant.quantize(w32, method="hw-kmeans", k=4, backend="cpu")
    assert r64.dequantized.dtype == np.float32  # float64 is converted to a float32 copy first
    assert np.array_equal(r64.dequantized, r32.dequantized)


def test_outputs_own_engine_buffers(rng):
    r = netquant.quantize(weights(rng, (50,)), method="kmeans", k=4, backend="cpu")
    for a in (r.dequantized, r.indices, r.codebook):
        assert a.flags.writeable and a.flags.c_contiguous
        assert not a.flags.owndata and a.base is not None  # a capsule owning the C++ buffer: no copy made


def test_quantize_model_global_codebook(rng):
    model = {"fc1.weight": weights(rng, (30, 20)), "fc1.bias": weights(rng, (30,)),
             "fc2.weight": weights(rng, (10, 30))}
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    r = netquant.quantize_model(model, imp, method="hw-kmeans", k=8, backend="cpu")
    assert len(r.codebooks) == 1 and list(r.dequantized) == list(model)
    for name, a in model.items():
        t = r.tensors[name]
        assert r.dequantized[name].shape == a.shape
        assert np.array_equal(r.dequantized[name], r.codebooks[0][t.indices])
    assert r.stats["params"] == sum(a.size for a in model.values())


def test_target_bits(rng):
    w, h = weights(rng, (5000,)), importance(rng, (5000,))
    r = netquant.quantize(w, h, method="ecsq", k=32, target_bits=2.0, backend="cpu")
    # The search stops within 0.5% of the target (README "Targets"); 1% leaves room for the rate's steps.
    assert r.stats["entropy_bits_per_weight"] == pytest.approx(2.0, rel=0.01)


def test_methods_table():
    names = {m["name"] for m in netquant.methods()}
    assert {"kmeans", "hw-kmeans", "exact", "uniform", "ecsq", "binary", "ternary", "pow2", "int",
            "wentropy"} <= names


def test_sweep_rows(rng):
    model = {"a": weights(rng, (40, 30)), "b": weights(rng, (100,))}
    rows = netquant.sweep(model, method="ecsq,hw-kmeans", lambdas=[1e-6, 1e-4, 1e-3], ks=[2, 4], k=16,
                          backend="cpu")
    assert [r["method"] for r in rows] == ["ecsq"] * 3 + ["hw-kmeans"] * 2
    assert [r["knob_name"] for r in rows] == ["lambda"] * 3 + ["k"] * 2
    assert [r["index"] for r in rows] == list(range(5))
    assert rows[3]["clusters"] <= 2 and rows[4]["clusters"] <= 4
    assert rows[0]["accuracy"] is None
    assert rows[0]["entropy_bits_per_weight"] >= rows[2]["entropy_bits_per_weight"]
    auto = netquant.sweep(model, method="ecsq", k=8, backend="cpu")
    assert len(auto) == 16


def _llm_like(rng):
    # Awkward sizes, a float16 tensor, 1-D norms: embeddings, LM head and norms are what a user keeps in float.
    model = {"model.embed_tokens.weight": weights(rng, (37, 11)),
             "model.layers.0.q_proj.weight": weights(rng, (23, 11)),
             "model.layers.0.input_layernorm.weight": weights(rng, (11,)).astype(np.float16),
             "model.layers.1.mlp.up_proj.weight": weights(rng, (19, 11)).astype(np.float16),
             "model.norm.weight": weights(rng, (11,)),
             "lm_head.weight": weights(rng, (37, 11))}
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    return model, imp


_EXCLUDED = {"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight",
             "lm_head.weight"}


@pytest.mark.parametrize("scope", ["global", "row"])
@pytest.mark.parametrize("filters", [{"exclude": "embed|lm_head|norm"}, {"include": r"layers\.\d+\.(q_proj|mlp)"}])
def test_name_filters_equal_the_reduced_model(rng, scope, filters):
    # Oracle: the same call on the model without the deselected tensors; an importance without them is accepted.
    model, imp = _llm_like(rng)
    kept = {n: a for n, a in model.items() if n not in _EXCLUDED}
    kept_imp = {n: a for n, a in imp.items() if n not in _EXCLUDED}
    args = dict(method="ecsq", k=12, lam=2e-5, scope=scope, prune=0.2, backend="cpu")
    want = netquant.quantize_model(kept, kept_imp, **args)
    got = netquant.quantize_model(model, kept_imp, **args, **filters)
    assert len(got.codebooks) == len(want.codebooks)
    for a, b in zip(got.codebooks, want.codebooks):
        assert a.tobytes() == b.tobytes()
    assert list(got.tensors) == list(model)  # the input's order
    for name, a in model.items():
        t = got.tensors[name]
        if name in _EXCLUDED:
            assert not t.quantized and t.indices is None
            assert got.dequantized[name].dtype == a.dtype and got.dequantized[name].tobytes() == a.tobytes()
        else:
            assert t.quantized and np.array_equal(t.indices, want.tensors[name].indices)
            assert t.first_codebook == want.tensors[name].first_codebook
            assert got.dequantized[name].tobytes() == want.dequantized[name].tobytes()
            assert t.stats["hw_distortion"] == want.tensors[name].stats["hw_distortion"]
    assert got.stats["hw_distortion"] == want.stats["hw_distortion"]
    assert got.stats["params"] == sum(a.size for a in model.values())
    # The .nq file carries the deselected tensors raw: it decodes to their input bits and to the oracle's values.
    data = netquant.compress(model, kept_imp, **args, **filters)
    back = netquant.decompress(data)
    assert all(back[n].tobytes() == model[n].tobytes() for n in _EXCLUDED)
    assert all(back[n].tobytes() == want.dequantized[n].tobytes() for n in kept)


def test_name_filters_prune_and_sweep(rng):
    model, imp = _llm_like(rng)
    kept = {n: a for n, a in model.items() if n not in _EXCLUDED}
    got = netquant.prune(model, imp, fraction=0.4, exclude="embed|lm_head|norm", backend="cpu")
    want = netquant.prune(kept, imp, fraction=0.4, backend="cpu")
    for name, a in model.items():
        expect = a if name in _EXCLUDED else want[name]
        assert got[name].dtype == a.dtype and got[name].tobytes() == expect.tobytes(), name
    rows = netquant.sweep(model, imp, method="hw-kmeans", ks=[3, 6], exclude="embed|lm_head|norm", backend="cpu")
    reduced = netquant.sweep(kept, imp, method="hw-kmeans", ks=[3, 6], backend="cpu")
    assert [r["exclude"] for r in rows] == ["embed|lm_head|norm"] * 2 and rows[0]["include"] == ""
    assert [r["hw_distortion"] for r in rows] == [r["hw_distortion"] for r in reduced]
    assert [r["clusters"] for r in rows] == [r["clusters"] for r in reduced]


def test_name_filter_errors(rng):
    model, imp = _llm_like(rng)
    with pytest.raises(netquant.NetquantValueError, match=r"--include '\(q_proj' is not a valid regular expression \(RE2 syntax\)"):
        netquant.quantize_model(model, include="(q_proj", backend="cpu")
    with pytest.raises(netquant.NetquantValueError, match=r"--exclude '\.' leaves no tensor to quantize"):
        netquant.quantize_model(model, imp, exclude=".", backend="cpu")
    with pytest.raises(netquant.NetquantValueError, match="leaves no tensor"):
        netquant.prune(model, fraction=0.3, include="^embed")
    with pytest.raises(TypeError, match="include"):
        netquant.quantize(model["lm_head.weight"], include="lm_head")
    with pytest.raises(TypeError, match="exclude"):
        netquant.quantize_model(model, exclude=["embed"])
    # None and "" mean no filter.
    a = netquant.quantize_model(model, imp, method="hw-kmeans", k=4, exclude=None, backend="cpu")
    b = netquant.quantize_model(model, imp, method="hw-kmeans", k=4, include="", backend="cpu")
    assert all(t.quantized for t in a.tensors.values()) and a.codebooks[0].tobytes() == b.codebooks[0].tobytes()


@pytest.mark.parametrize("scope", ["row", "tensor", "group:29"])
def test_batch_weights_stream_the_same_model(rng, scope):
    # Oracle: the model taken at once (the default on this small model); waves of one tensor, or a few, must give
    # the same codebooks, indices and statistics, pruning (the streamed selection) included.
    model, imp = _llm_like(rng)
    args = dict(method="hw-kmeans", k=6, scope=scope, prune=0.3, backend="cpu", importance_transform="sqrt")
    want = netquant.quantize_model(model, imp, **args)
    for batch in (1, 300):
        got = netquant.quantize_model(model, imp, **args, batch_weights=batch)
        assert [a.tobytes() for a in got.codebooks] == [b.tobytes() for b in want.codebooks]
        for name in model:
            assert np.array_equal(got.tensors[name].indices, want.tensors[name].indices), name
        assert got.stats["hw_distortion"] == want.stats["hw_distortion"]
        assert got.stats["pruned"] == want.stats["pruned"]
    with pytest.raises(netquant.NetquantValueError, match="batch_weights"):
        netquant.quantize_model(model, imp, **args, batch_weights=-1)
    pruned = netquant.prune(model, imp, fraction=0.4, importance_transform="sqrt", backend="cpu")
    streamed = netquant.prune(model, imp, fraction=0.4, importance_transform="sqrt", backend="cpu", batch_weights=1)
    assert all(streamed[n].tobytes() == pruned[n].tobytes() for n in model)


def test_shared_lambda_rate_allocation(rng):
    # One lam for every row's codebook, searched for the model's rate: the oracle is the model quantized at that lam
    # with no target (the same indices and codebooks), and the model's entropy per weight recomputed here from the
    # indices, row by row, must be the target.
    model = {"hot": weights(rng, (9, 70)), "cold": weights(rng, (11, 40))}
    imp = {"hot": 100.0 * importance(rng, (9, 70)), "cold": 0.01 * importance(rng, (11, 40))}
    args = dict(method="ecsq", k=16, scope="row", backend="cpu")
    got = netquant.quantize_model(model, imp, **args, target_bits=1.5, rate_allocation="shared-lambda")
    lam = got.stats["lambda"]
    assert lam > 0 and all(t.stats["lambda"] == lam for t in got.tensors.values())
    bits = 0.0
    for name, a in model.items():
        for row in got.tensors[name].indices.reshape(a.shape[0], -1):
            _, counts = np.unique(row, return_counts=True)
            bits -= float((counts * np.log2(counts / counts.sum())).sum())
    assert bits / sum(a.size for a in model.values()) == pytest.approx(1.5, rel=0.005)
    fixed = netquant.quantize_model(model, imp, **args, lam=lam)
    assert [a.tobytes() for a in got.codebooks] == [b.tobytes() for b in fixed.codebooks]
    for name in model:
        assert np.array_equal(got.tensors[name].indices, fixed.tensors[name].indices), name
    # The important rows get the bits.
    assert got.tensors["hot"].stats["entropy_bits_per_weight"] > got.tensors["cold"].stats["entropy_bits_per_weight"]
    with pytest.raises(netquant.NetquantValueError, match="ecsq"):
        netquant.quantize_model(model, imp, method="uniform", k=16, scope="row", target_bits=1.5,
                                rate_allocation="shared-lambda", backend="cpu")
    with pytest.raises(netquant.NetquantValueError, match="rate allocation"):
        netquant.quantize_model(model, imp, **args, target_bits=1.5, rate_allocation="even")


def test_target_size_fits_the_file_in_its_budget(rng):
    # A budget on the .nq file: the oracle is the file's own length (compress's bytes), and the model at the lam it
    # reports with no budget (the same bytes); one level per row is the least any lam gives, below it an error.
    model = {"hot": weights(rng, (9, 70)), "cold": weights(rng, (11, 40)), "bias": weights(rng, (9,))}
    imp = {name: s * importance(rng, a.shape) for (name, a), s in zip(model.items(), (100.0, 0.01, 1.0))}
    args = dict(method="ecsq", k=16, scope="row", backend="cpu")
    top = len(netquant.compress(model, imp, **args))
    floor = len(netquant.compress(model, imp, **args, lam=1e9))
    budget = (top + floor) // 2
    data = netquant.compress(model, imp, **args, target_size=budget)
    assert floor < len(data) <= budget
    got = netquant.quantize_model(model, imp, **args, target_size=budget)
    lam = got.stats["lambda"]
    n = sum(a.size for a in model.values())
    assert lam > 0 and got.stats["ratio_file"] == pytest.approx(4 * n / len(data), rel=1e-12)
    assert netquant.compress(model, imp, **args, lam=lam) == data
    # The same budget as a ratio of float32 bytes to file bytes.
    assert len(netquant.compress(model, imp, **args, target_file_ratio=4 * n / budget)) <= budget
    with pytest.raises(netquant.NetquantValueError, match="out of reach"):
        netquant.compress(model, imp, **args, target_size=floor - 1)
    with pytest.raises(netquant.NetquantValueError, match="ecsq"):
        netquant.compress(model, imp, method="uniform", k=16, scope="row", target_size=budget, backend="cpu")
    with pytest.raises(netquant.NetquantValueError, match="not both"):
        netquant.compress(model, imp, **args, target_size=budget, target_file_ratio=8.0)
    with pytest.raises(ValueError, match="sweep takes no target_size"):
        netquant.sweep(model, imp, method="ecsq", lambdas=[1e-4], target_size=budget, backend="cpu")


def test_float64_importance_is_converted(rng):
    # quantize() takes a float64 importance as a float32 copy, as it takes float64 weights and as quantize_model does.
    w, h = weights(rng, (30, 20)), importance(rng, (30, 20))
    want = netquant.quantize(w, h, method="hw-kmeans", k=8, backend="cpu")
    got = netquant.quantize(w, h.astype(np.float64), method="hw-kmeans", k=8, backend="cpu")
    assert np.array_equal(got.indices, want.indices) and got.codebook.tobytes() == want.codebook.tobytes()
    model = netquant.quantize_model({"w": w}, {"w": h.astype(np.float64)}, method="hw-kmeans", k=8, backend="cpu")
    assert model.codebooks[0].tobytes() == want.codebook.tobytes()


def test_exact_histogram_bins_reach_the_engine(rng):
    # Binned, exact is optimal over the bins only: no better than exact over the values, and at 8 bins worse.
    w = weights(rng, (50, 40))
    exact = netquant.quantize(w, method="exact", k=4, backend="cpu")
    binned = netquant.quantize(w, method="exact", k=4, exact_histogram_bins=8, backend="cpu")
    assert binned.stats["hw_distortion"] > exact.stats["hw_distortion"]
    with pytest.raises(netquant.NetquantValueError, match="exact_histogram_bins must be >= 0"):
        netquant.quantize(w, method="exact", k=4, exact_histogram_bins=-1)


def test_bits_give_k_as_two_to_the_bits(rng):
    # bits=b is k=2**b for the k-methods (as the CLI's --bits).
    w = weights(rng, (30, 20))
    for method in ("kmeans", "hw-kmeans", "uniform"):
        for bits in (1, 3):
            a = netquant.quantize(w, method=method, bits=bits, backend="cpu")
            b = netquant.quantize(w, method=method, k=2**bits, backend="cpu")
            assert a.dequantized.tobytes() == b.dequantized.tobytes(), (method, bits)
            assert method == "uniform" or a.stats["clusters"] == 2**bits, (method, bits)


def test_default_k_is_the_engines(rng, tmp_path):
    # k left out is the engine's 16 (the docstring's default), in quantize and in the .nq file alike.
    w = weights(rng, (30, 20))
    for method in ("hw-kmeans", "ecsq"):
        want = netquant.quantize(w, method=method, k=16, backend="cpu")
        assert netquant.quantize(w, method=method, backend="cpu").dequantized.tobytes() == want.dequantized.tobytes()
        assert netquant.decompress(netquant.compress({"w": w}, method=method))["w"].tobytes() == want.dequantized.tobytes()


def test_int_symmetric_false_uses_the_whole_grid(rng):
    # Non-negative weights: a symmetric 2-bit grid spends half its levels below 0; an asymmetric one uses all 4.
    w = np.abs(weights(rng, (20, 30)))
    sym = netquant.quantize(w, method="int", bits=2, backend="cpu")
    asym = netquant.quantize(w, method="int", bits=2, int_symmetric=False, backend="cpu")
    assert sym.stats["clusters"] <= 2 < asym.stats["clusters"] == 4


def test_iterations_and_convergence_are_reported(rng):
    # One Lloyd step with tol 0 cannot have converged; a free run converges well before 1000.
    w = weights(rng, (20, 30))
    one = netquant.quantize(w, method="hw-kmeans", k=8, max_iter=1, tol=0.0, backend="cpu")
    assert one.stats["iterations"] == 1 and one.stats["converged"] is False
    done = netquant.quantize(w, method="hw-kmeans", k=8, max_iter=1000, tol=0.0, backend="cpu")
    assert 1 < done.stats["iterations"] < 1000 and done.stats["converged"] is True


def test_model_codebooks_by_tensor(rng):
    # Row scope: each tensor's codebooks follow the previous tensor's (first_codebook, num_problems), and looking
    # its indices up in them gives its dequantized values (a 1-D tensor: one codebook per value).
    model = {"a": weights(rng, (6, 10)), "b": weights(rng, (4, 5)), "c": weights(rng, (9,))}
    r = netquant.quantize_model(model, method="hw-kmeans", k=3, scope="row", backend="cpu")
    first = 0
    for name, a in model.items():
        t = r.tensors[name]
        rows = a.shape[0] if a.ndim > 1 else a.size
        assert (t.first_codebook, t.num_problems, t.problem_size) == (first, rows, a.size // rows), name
        books = r.codebooks[t.first_codebook:t.first_codebook + t.num_problems]
        flat = t.indices.ravel()
        looked_up = np.array([books[i // t.problem_size][flat[i]] for i in range(a.size)], dtype=np.float32)
        assert looked_up.tobytes() == r.dequantized[name].ravel().tobytes(), name
        first += t.num_problems
    assert first == len(r.codebooks)


def test_sweep_marks_duplicate_points(rng):
    # A lam so large that one level is left, twice: the second point is the first's solution again.
    rows = netquant.sweep({"w": weights(rng, (20, 30))}, method="ecsq", lambdas=[10.0, 100.0, 1e-6], k=8,
                          backend="cpu")
    assert [r["duplicate"] for r in rows] == [False, True, False]
    assert [r["clusters"] for r in rows][:2] == [1, 1]


def test_normalize_makes_ecsq_independent_of_the_importance_scale(rng):
    # Oracle: J = D + lam*H weighs D by h, so without a transform 1000*h is another problem (far more bits at the
    # same lam); normalized, h and 1000*h are the same problem.
    w, h = weights(rng, (40, 50)), importance(rng, (40, 50))
    args = dict(method="ecsq", k=16, lam=1e-3, backend="cpu")
    a = netquant.quantize(w, h, importance_transform="normalize", **args)
    b = netquant.quantize(w, 1000 * h, importance_transform="normalize", **args)
    raw = netquant.quantize(w, 1000 * h, **args)
    assert (a.indices == b.indices).mean() > 0.99
    assert b.stats["entropy_bits_per_weight"] == pytest.approx(a.stats["entropy_bits_per_weight"], rel=1e-3)
    assert raw.stats["entropy_bits_per_weight"] > b.stats["entropy_bits_per_weight"] + 1


def test_prune_skip_1d_and_batch_weights(rng):
    # Oracle for skip_1d=True: the bias left whole, the rest pruned as the model without it; batch_weights (which
    # never changes the result) is still the engine's argument, checked there.
    m = {"w": weights(rng, (8, 16)), "b": weights(rng, (16,))}
    kept = netquant.prune(m, fraction=0.5, skip_1d=True, backend="cpu")
    assert kept["b"].tobytes() == m["b"].tobytes()
    want = netquant.prune({"w": m["w"]}, fraction=0.5, backend="cpu")
    assert kept["w"].tobytes() == want["w"].tobytes() and (kept["w"] == 0).sum() == 64
    with pytest.raises(netquant.NetquantValueError, match="batch_weights must be >= 0"):
        netquant.prune(m, fraction=0.5, batch_weights=-1)
