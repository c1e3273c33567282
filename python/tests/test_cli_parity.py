"""Python and the `netquant` CLI run the same engine: on the same safetensors inputs and seed, the CLI's outputs
equal the Python API's bitwise (the CLI binary comes from $NETQUANT_CLI, set by tools/test.sh)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import netquant
from conftest import importance, run_cli, weights


def has_command(cli: str, name: str) -> bool:
    return subprocess.run([cli, name, "--help"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def model_files(rng, tmp_path):
    model = {"fc1.weight": weights(rng, (40, 30)), "fc1.bias": weights(rng, (40,)),
             "fc2.weight": weights(rng, (10, 40)).astype(np.float16)}
    imp = {n: importance(rng, a.shape) for n, a in model.items()}
    netquant.save_safetensors(tmp_path / "model.safetensors", model)
    netquant.save_safetensors(tmp_path / "imp.safetensors", imp)
    return model, imp, tmp_path


def test_sweep_csv_identical(cli, model_files):
    model, imp, tmp = model_files
    # pow2 reads its exponents per sign from --k, int its grid bits (without --bits), on both sides.
    args = dict(method="ecsq,hw-kmeans,pow2,int", lambdas="1e-6:1e-3:4", ks="2,4,8", k=16, scope="global", seed=5)
    rows = netquant.sweep(netquant.load_safetensors(tmp / "model.safetensors"),
                          netquant.load_safetensors(tmp / "imp.safetensors"), backend="cpu",
                          csv_path=tmp / "py.csv", **args)
    run_cli(cli, "sweep", str(tmp / "model.safetensors"), "-o", str(tmp / "cli.csv"), "--importance",
            str(tmp / "imp.safetensors"), "--method", args["method"], "--lambdas", args["lambdas"], "--k",
            args["ks"], "--k-max", "16", "--scope", "global", "--seed", "5", "--backend", "cpu", "--quiet")
    assert (tmp / "py.csv").read_bytes() == (tmp / "cli.csv").read_bytes()
    assert len(rows) == 13
    pow2 = [r for r in rows if r["method"] == "pow2"]
    assert [r["knob"] for r in pow2] == [2, 4, 8]
    for r in pow2:  # {±a·2^-e}, e < k: at most 2k levels, and each point its own
        assert r["clusters"] <= 2 * r["knob"]
    assert len({r["hw_distortion"] for r in pow2}) == 3
    assert [r["knob"] for r in rows if r["method"] == "int"] == [2, 4, 8]


@pytest.mark.parametrize("method,flags,kwargs", [
    ("hw-kmeans", ["--k", "8", "--init", "kmeans++"], dict(k=8, init="kmeans++")),
    ("ecsq", ["--k", "16", "--lambda", "1e-5"], dict(k=16, lam=1e-5)),
    ("uniform", ["--k", "9", "--prune", "0.25"], dict(k=9, prune=0.25)),
    ("int", ["--bits", "3", "--scope", "row"], dict(bits=3, scope="row")),
    ("pow2", ["--k", "4", "--skip-1d"], dict(k=4, skip_1d=True)),
])
def test_quantize_then_decompress_identical(cli, model_files, method, flags, kwargs):
    if not has_command(cli, "quantize"):
        pytest.fail("the CLI has no `quantize` command")
    model, imp, tmp = model_files
    run_cli(cli, "quantize", str(tmp / "model.safetensors"), "-o", str(tmp / "cli.nq"), "--importance",
            str(tmp / "imp.safetensors"), "--method", method, "--seed", "11", "--backend", "cpu", "--quiet", *flags)
    run_cli(cli, "decompress", str(tmp / "cli.nq"), "-o", str(tmp / "cli.safetensors"), "--quiet")
    cli_out = netquant.load_safetensors(tmp / "cli.safetensors")
    py = netquant.quantize_model(netquant.load_safetensors(tmp / "model.safetensors"),
                                 netquant.load_safetensors(tmp / "imp.safetensors"), method=method, seed=11,
                                 backend="cpu", **kwargs)
    assert set(cli_out) == set(model)
    for name in model:
        a, b = cli_out[name], py.dequantized[name]
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{name}: CLI and Python differ"
    # The codes layout: the CLI's file holds what load_codes gives.
    run_cli(cli, "decompress", str(tmp / "cli.nq"), "-o", str(tmp / "codes.safetensors"), "--codes", "--quiet")
    cli_codes = netquant.load_safetensors(tmp / "codes.safetensors")
    meta = netquant.safetensors_metadata(tmp / "codes.safetensors")
    assert meta["netquant.layout"] == "codes" and meta["netquant.method"] == method
    for name, c in netquant.load_codes(tmp / "cli.nq").items():
        if isinstance(c, np.ndarray):
            assert np.array_equal(cli_codes[name].view(np.uint8), c.view(np.uint8)), name
            continue
        assert np.array_equal(cli_codes[name + ".codes"], c.codes) and cli_codes[name + ".codes"].dtype == c.codes.dtype
        assert np.array_equal(cli_codes[name + ".codebook"].view(np.uint8), c.codebook.view(np.uint8)), name
        assert int(meta[name + ".problem_size"]) == c.problem_size
        assert meta.get(name + ".pruned_code") == (None if c.pruned_code is None else str(c.pruned_code))
    # The same .nq bytes from Python.
    netquant.save(tmp / "py.nq", netquant.load_safetensors(tmp / "model.safetensors"),
                  netquant.load_safetensors(tmp / "imp.safetensors"), method=method, seed=11, backend="cpu",
                  **kwargs)
    assert (tmp / "py.nq").read_bytes() == (tmp / "cli.nq").read_bytes()


def test_single_array_matches_cli(cli, rng, tmp_path):
    # netquant.quantize(w) on one array == the CLI on a one-tensor safetensors file (scope row included).
    if not has_command(cli, "quantize"):
        pytest.fail("the CLI has no `quantize` command")
    w, h = weights(rng, (24, 50)), importance(rng, (24, 50))
    netquant.save_safetensors(tmp_path / "w.safetensors", {"w": w})
    netquant.save_safetensors(tmp_path / "h.safetensors", {"w": h})
    for scope in ("global", "row"):
        r = netquant.quantize(w, h, method="ecsq", k=8, lam=1e-6, scope=scope, seed=3, backend="cpu")
        run_cli(cli, "quantize", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "w_deq.safetensors"),
                "--importance", str(tmp_path / "h.safetensors"), "--method", "ecsq", "--k", "8", "--lambda", "1e-6",
                "--scope", scope, "--seed", "3", "--backend", "cpu", "--quiet")
        out = netquant.load_safetensors(tmp_path / "w_deq.safetensors")["w"]
        assert np.array_equal(out.view(np.uint32), r.dequantized.view(np.uint32)), scope


def test_prune_matches_cli_and_quantize(cli, model_files):
    """netquant.prune and `netquant prune` write the same bytes; the zeros are the fraction of the smallest h·w²
    (brute force), every other value and dtype is the input's, and quantize_model with the same prune prunes
    exactly those zeros."""
    model, imp, tmp = model_files
    out = netquant.prune(model, imp, fraction=0.45, backend="cpu")
    run_cli(cli, "prune", str(tmp / "model.safetensors"), "--importance", str(tmp / "imp.safetensors"),
            "--prune", "0.45", "--backend", "cpu", "-o", str(tmp / "pruned.safetensors"), "-q")
    cli_out = netquant.load_safetensors(tmp / "pruned.safetensors")
    scores, zeros = [], 0
    for name, w in model.items():
        assert out[name].dtype == w.dtype and out[name].shape == w.shape
        assert out[name].tobytes() == cli_out[name].tobytes(), name
        pruned = (out[name] == 0) & (w != 0)
        assert np.array_equal(out[name][~pruned], w[~pruned]), name
        zeros += int(pruned.sum())
        s = imp[name].astype(np.float64) * w.astype(np.float32).astype(np.float64) ** 2
        scores.append((s[pruned], s[~pruned]))
    total = sum(w.size for w in model.values())
    assert zeros == int(np.floor(0.45 * total))
    assert max(p.max() for p, _ in scores if p.size) <= min(k.min() for _, k in scores if k.size)
    again = netquant.quantize_model(out, imp, method="hw-kmeans", k=4, prune=0.45, backend="cpu")
    for name, t in again.tensors.items():
        assert np.array_equal(t.indices == -1, (out[name] == 0) & (model[name] != 0)), name
