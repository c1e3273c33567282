"""Arguments a user can get wrong: each is refused naming the parameter, before any work, as the CLI refuses the
same option (the findings of an audit of the Python API: each used to be accepted, misread or a crash)."""

from __future__ import annotations

import decimal
import fractions
import os

import numpy as np
import pytest

import netquant
from conftest import importance, weights


def test_numbers_are_numbers(rng):
    w = weights(rng, (8, 16))
    # float("0.1") would take the text; a bool would pass as 0 or 1.
    for kwargs, name in [({"lam": "0.1"}, "lam"), ({"target_bits": "2"}, "target_bits"), ({"prune": True}, "prune"),
                         ({"method": "uniform", "step": "a"}, "step"), ({"tol": None}, "tol")]:
        with pytest.raises(TypeError, match=f"^{name}: expected a number"):
            netquant.quantize(w, **kwargs)
    # NumPy numbers are numbers, and so is anything float() takes as one.
    r = netquant.quantize(w, k=np.int64(4), lam=np.float32(1e-3), prune=np.float64(0.1))
    assert r.stats["lambda"] == pytest.approx(1e-3, rel=1e-6)
    for lam in (fractions.Fraction(1, 1000), decimal.Decimal("0.001"), np.array(1e-3)):
        assert netquant.quantize(w, k=4, lam=lam).stats["lambda"] == pytest.approx(1e-3, rel=1e-6)
    with pytest.raises(TypeError, match="^lambdas: expected a number"):
        netquant.sweep({"w": w}, method="ecsq", lambdas=["0.1"])


def test_flags_and_names_take_their_own_types(rng):
    m = {"w": weights(rng, (8, 16)), "b": weights(rng, (16,))}
    with pytest.raises(TypeError, match="^skip_1d: expected True or False"):
        netquant.prune(m, fraction=0.5, skip_1d="no")  # "no" is truthy: it used to skip the bias
    with pytest.raises(TypeError, match="^fraction: expected a number"):
        netquant.prune(m, fraction="0.5")
    with pytest.raises(TypeError, match="^importance_transform: expected a str"):
        netquant.prune(m, fraction=0.5, importance_transform=None)
    with pytest.raises(TypeError, match="^backend: expected a str"):
        netquant.quantize(m["w"], backend=3)
    with pytest.raises(TypeError, match="^int_symmetric: expected True or False"):
        netquant.quantize(m["w"], method="int", bits=4, int_symmetric=1)
    # The oracle for skip_1d=False: the bias is pruned with the rest, and the same with a NumPy bool.
    pruned = netquant.prune(m, fraction=0.5, skip_1d=np.False_)
    assert (pruned["b"] == 0).any()


def test_tolerance_must_be_finite_and_non_negative(rng):
    w = weights(rng, (40,))
    for tol in (float("nan"), -1.0, float("inf")):
        with pytest.raises(netquant.NetquantValueError, match="tol must be finite"):
            netquant.quantize(w, tol=tol)


def test_one_rate_goal_at_a_time(rng):
    w = weights(rng, (30, 40))
    for kwargs in [{"target_bits": 2.0, "target_ratio": 10.0}, {"lam": 0.5, "target_bits": 2.0},
                   {"lam": 1e-4, "target_size": 1000}]:
        with pytest.raises(ValueError, match="give one of lam, target_bits"):
            netquant.quantize(w, method="ecsq", **kwargs)
    # 0 is "none" for each goal, as on the command line.
    assert netquant.quantize(w, method="ecsq", lam=1e-4, target_bits=0).stats["lambda"] == 1e-4
    # λ is ECSQ's (another method would ignore it).
    with pytest.raises(ValueError, match=r"lam applies to method ecsq only \(method hw-kmeans\)"):
        netquant.quantize(w, method="hw-kmeans", lam=1e-4)
    # The step is uniform's, and a target searches it.
    with pytest.raises(ValueError, match="step applies to method uniform only"):
        netquant.quantize(w, method="ecsq", step=0.1)
    with pytest.raises(ValueError, match="give step or a target rate"):
        netquant.quantize(w, method="uniform", step=0.1, target_bits=2.0)
    # An infinite goal is no goal to search for (target_ratio=inf used to mean "no target": 32/inf = 0).
    with pytest.raises(netquant.NetquantValueError, match="target ratio must be finite"):
        netquant.quantize(w, method="ecsq", target_ratio=float("inf"))
    with pytest.raises(netquant.NetquantValueError, match="target bits must be finite"):
        netquant.quantize(w, method="uniform", target_bits=float("inf"))  # an internal assertion before


def test_paths_with_a_null_byte_are_refused(rng, tmp_path):
    src = tmp_path / "model.safetensors"
    netquant.save_safetensors(src, {"w": np.arange(16, dtype=np.float32).reshape(4, 4)})
    before = src.read_bytes()
    bad = str(src) + "\0.nq"  # the engine reads C strings: this named model.safetensors itself
    with pytest.raises(ValueError, match="embedded null byte"):
        netquant.save(bad, netquant.load_safetensors(src), k=2)
    for read in (netquant.load, netquant.load_safetensors, netquant.safetensors_metadata, netquant.load_codes):
        with pytest.raises(ValueError, match="embedded null byte"):
            read(bad)
    assert src.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_outputs_named_for_another_kind_of_file_are_refused(rng, tmp_path):
    """save writes .nq only; sweep's CSV never lands on a name a model or a data set goes by."""
    w = weights(rng, (6, 5))
    model = tmp_path / "m.safetensors"
    netquant.save_safetensors(model, {"w": w})
    before = model.read_bytes()
    with pytest.raises(ValueError, match="save writes a .nq file"):
        netquant.save(tmp_path / "a.txt", {"w": w}, k=2)
    for name in ("m.safetensors", "x.nq", "x.npy", "t10k-labels-idx1-ubyte", "x.gz"):
        with pytest.raises(ValueError, match="named like a model or a data set"):
            netquant.sweep({"w": w}, method="kmeans", ks=[2], csv_path=tmp_path / name)
    with pytest.raises(ValueError, match="named like a model or a data set"):
        netquant.sweep({"w": w}, method="kmeans", ks=[2], csv_path=tmp_path / "m.safetensors.index.json")
    assert model.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
    netquant.save(tmp_path / "UPPER.NQ", {"w": w}, k=2)  # the engine reads .NQ as .nq
    assert netquant.load(tmp_path / "UPPER.NQ")["w"].shape == (6, 5)


def test_progress_switch_takes_a_bool():
    netquant.set_progress(False)
    netquant.set_progress(True)
    with pytest.raises(TypeError):
        netquant.set_progress("no")


def test_bytes_paths_any_name_the_file_system_takes(rng, tmp_path):
    w = weights(rng, (4, 6))
    path = os.fsencode(tmp_path) + b"/model\xff.nq"  # not UTF-8: only a bytes path names it
    netquant.save(path, {"w": w}, k=4)
    np.testing.assert_array_equal(netquant.load(path)["w"], netquant.quantize(w, k=4).dequantized)


def test_sweep_csv_through_a_symbolic_link_writes_its_target(rng, tmp_path):
    (tmp_path / "real").mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "real" / "target.csv")
    rows = netquant.sweep({"w": weights(rng, (9, 9))}, method="hw-kmeans", ks=[2, 4], csv_path=link)
    assert link.is_symlink()  # not replaced by a file of its own
    text = (tmp_path / "real" / "target.csv").read_text()
    assert text.count("\n") == 1 + len(rows) and text.startswith("index,method")
    assert sorted(os.listdir(tmp_path / "real")) == ["target.csv"]  # no temporary left behind


def test_metadata_values_must_be_text(rng, tmp_path):
    with pytest.raises(TypeError, match="^metadata: keys and values must be str"):
        netquant.save_safetensors(tmp_path / "x.safetensors", {"w": weights(rng, (3,))}, {"epoch": 3})
    assert not (tmp_path / "x.safetensors").exists()


def test_integer_importance_is_a_type_error_everywhere(rng, tmp_path):
    w = weights(rng, (6, 5))
    h = np.ones((6, 5), dtype=np.int32)
    with pytest.raises(TypeError):
        netquant.quantize(w, h)
    for call in (lambda: netquant.quantize_model({"w": w}, {"w": h}), lambda: netquant.save(tmp_path / "m.nq",
                                                                                              {"w": w}, {"w": h})):
        with pytest.raises(TypeError, match="^importance: tensor 'w': dtype int32"):
            call()
    assert not (tmp_path / "m.nq").exists()
    # The importance of a tensor the model holds as integers (a state_dict's num_batches_tracked) is never read.
    model = {"w": w, "bn.num_batches_tracked": np.array(7)}
    got = netquant.quantize_model(model, {"w": np.ones_like(w), "bn.num_batches_tracked": np.array(1)}, k=4)
    np.testing.assert_array_equal(got.dequantized["w"], netquant.quantize(w, k=4).dequantized)


def test_normalize_takes_importances_of_any_scale(rng):
    # The scale n / sum(h) of importances near 1e-39 is beyond float32; the normalized values are not. Oracle:
    # normalize makes the answer independent of a common factor.
    w = weights(rng, (8, 16))
    h = importance(rng, (8, 16))
    want = netquant.quantize(w, h, method="hw-kmeans", k=4, importance_transform="normalize")
    for factor in (1e-39, 1e-30, 1e20):  # 1e-39: subnormal float32 values, a scale of about 1e39
        got = netquant.quantize(w, (h.astype(np.float64) * factor).astype(np.float32), method="hw-kmeans", k=4,
                                importance_transform="normalize")
        np.testing.assert_allclose(got.codebooks[0], want.codebooks[0], rtol=1e-5)
        assert (got.indices == want.indices).mean() > 0.99


def test_pow2_sweep_defaults_to_exponents_per_sign(rng):
    m = {"w": weights(rng, (20, 20))}
    rows = netquant.sweep(m, method="pow2")  # bits 1:8 would ask for k = 256 exponents, beyond pow2's 32
    assert [r["knob"] for r in rows] == [float(k) for k in range(1, 9)]


def test_threads_beyond_the_runtime_are_refused():
    before = netquant.num_threads()
    with pytest.raises(netquant.NetquantValueError, match="is too many"):
        netquant.set_num_threads(100000)  # it used to crash the interpreter on the next parallel loop
    assert netquant.num_threads() == before


def test_sweep_lambdas_need_a_lambda_method(rng):
    with pytest.raises(ValueError, match="^lambdas: apply to ecsq"):
        netquant.sweep({"w": weights(rng, (10, 10))}, method="hw-kmeans", lambdas=[1e-5])


def test_an_importance_transform_needs_an_importance(rng, tmp_path):
    w = weights(rng, (6, 7))
    for call in (lambda: netquant.quantize(w, importance_transform="sqrt"),
                 lambda: netquant.quantize_model({"w": w}, importance_transform="normalize"),
                 lambda: netquant.prune({"w": w}, fraction=0.5, importance_transform="sqrt"),
                 lambda: netquant.save(tmp_path / "m.nq", {"w": w}, importance_transform="sqrt"),
                 lambda: netquant.compress({"w": w}, importance_transform="sqrt"),
                 lambda: netquant.sweep({"w": w}, method="hw-kmeans", ks=[2], importance_transform="sqrt")):
        with pytest.raises(ValueError, match="transforms an importance"):
            call()
    assert not (tmp_path / "m.nq").exists()
    netquant.quantize(w, importance_transform="none")  # the default, spelled out


def test_target_size_has_the_cli_range(rng):
    with pytest.raises(ValueError, match="^target_size: 9223372036854775808 is outside"):
        netquant.compress({"w": weights(rng, (10,))}, method="ecsq", target_size=2**63)


def test_numpy_bools_are_not_whole_numbers(rng):
    # operator.index(numpy.True_) is 1 (with only a DeprecationWarning): refused as a Python bool is.
    w = weights(rng, (8, 16))
    for kwargs in (dict(k=np.True_), dict(seed=np.False_), dict(max_iter=np.True_)):
        with pytest.raises(TypeError, match="expected an integer, got a bool"):
            netquant.quantize(w, method="hw-kmeans", **kwargs)


def test_bits_has_the_cli_range(rng):
    # As the CLI's --bits: 1..24 (bits=0 would ask for k = 1).
    w = weights(rng, (8, 16))
    for bits in (0, -1, 25):
        with pytest.raises(ValueError, match=f"^bits must be in 1..24, got {bits}$"):
            netquant.quantize(w, method="hw-kmeans", bits=bits)
    assert netquant.quantize(w, method="hw-kmeans", bits=1).stats["clusters"] <= 2


def test_metadata_keys_must_be_text(rng, tmp_path):
    # Keys as values: named, not pybind11's "incompatible function arguments".
    with pytest.raises(TypeError, match="^metadata: keys and values must be str"):
        netquant.save_safetensors(tmp_path / "x.safetensors", {"w": weights(rng, (3,))}, {3: "epoch"})
    assert not (tmp_path / "x.safetensors").exists()


def test_name_filters_refuse_falsy_non_text(rng):
    # Only None and "" mean no filter; an empty list, 0, False or b"" are refused as a non-empty list is.
    model = {"w": weights(rng, (6, 5))}
    for kwargs in (dict(include=[]), dict(exclude=0), dict(include=False), dict(exclude=b"")):
        with pytest.raises(TypeError, match="expected a regular expression"):
            netquant.quantize_model(model, **kwargs)


def test_save_needs_the_dot_of_nq(rng, tmp_path):
    # "modelnq" ends in nq but is no .nq file.
    with pytest.raises(ValueError, match="save writes a .nq file"):
        netquant.save(tmp_path / "modelnq", {"w": weights(rng, (4, 4))}, k=2)
    assert not (tmp_path / "modelnq").exists()


def test_a_negative_file_ratio_is_refused(rng):
    # Not silently "no budget".
    with pytest.raises(netquant.NetquantValueError, match="target_file_ratio"):
        netquant.compress({"w": weights(rng, (20, 30))}, method="ecsq", target_file_ratio=-2.0)
