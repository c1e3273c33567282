"""PyTorch as the peer of the built-in networks: `netquant eval`, `hessian`, `train` and `finetune` against
torch.autograd and torch.optim in float64 on the same weights and images (skipped without torch).

The C++ tests check the same quantities against finite differences and a float64 replay written for them; this one
asks a widely used autograd engine instead, through the CLI a user runs: PyTorch's layer definitions (Conv2d with
stride and padding, overlapping MaxPool2d, Flatten's C-H-W order, cross_entropy's mean), its per-sample gradients
(empirical Fisher), the exact Gauss-Newton diagonal from per-sample Jacobians, torch.optim's SGD and Adam, and
autograd through a codebook lookup for fine-tuning shared values.
"""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import netquant
from conftest import run_cli

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the autograd peer checks are skipped")


def _torch_func():
    """torch.func (PyTorch 2.0 on), or the same four functions from PyTorch 1.13's functorch and
    torch.nn.utils.stateless, as Debian's python3-torch has them."""
    try:
        import torch.func as func
        return func
    except ImportError:
        pass
    functorch = pytest.importorskip("functorch", reason="this PyTorch has neither torch.func nor functorch")
    from types import SimpleNamespace
    from torch.nn.utils import stateless
    return SimpleNamespace(functional_call=stateless.functional_call, vmap=functorch.vmap, grad=functorch.grad,
                           jacrev=functorch.jacrev)


torch_func = _torch_func()

# A net of awkward shapes: a strided, padded convolution, an overlapping pool (kernel 3, stride 2) and a hidden
# layer of 13, so that an off-by-one in any of them shows.
ODD_NET = {
    "name": "odd",
    "input": [1, 28, 28],
    "classes": 10,
    "layers": [
        {"type": "conv2d", "name": "conv1", "out": 6, "kernel": 3, "stride": 2, "padding": 1},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 3, "stride": 2},
        {"type": "conv2d", "name": "conv2", "out": 8, "kernel": 2},
        {"type": "flatten"},
        {"type": "linear", "name": "fc1", "out": 13},
        {"type": "relu"},
        {"type": "linear", "name": "fc2", "out": 10},
    ],
}


def torch_net(model: str) -> "torch.nn.Sequential":
    nn = torch.nn
    if model == "lenet300":
        layers = [("flatten", nn.Flatten()), ("fc1", nn.Linear(784, 300)), ("relu1", nn.ReLU()),
                  ("fc2", nn.Linear(300, 100)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(100, 10))]
    elif model == "lenet5":  # Caffe's LeNet-5: no activation after the convolutions
        layers = [("conv1", nn.Conv2d(1, 20, 5)), ("pool1", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(20, 50, 5)),
                  ("pool2", nn.MaxPool2d(2)), ("flatten", nn.Flatten()), ("fc1", nn.Linear(800, 500)),
                  ("relu", nn.ReLU()), ("fc2", nn.Linear(500, 10))]
    else:
        layers = [("conv1", nn.Conv2d(1, 6, 3, stride=2, padding=1)), ("relu1", nn.ReLU()),
                  ("pool", nn.MaxPool2d(3, stride=2)), ("conv2", nn.Conv2d(6, 8, 2)), ("flatten", nn.Flatten()),
                  ("fc1", nn.Linear(200, 13)), ("relu2", nn.ReLU()), ("fc2", nn.Linear(13, 10))]
    return torch.nn.Sequential(OrderedDict(layers))


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (magic 0x0000 08 <dims>, big-endian sizes), as the MNIST files are."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def make_dataset(directory: Path, rng: np.random.Generator, train: int, test: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten noisy class prototypes, so that a few training steps give a net with confident, non-uniform outputs."""
    prototypes = rng.integers(0, 256, size=(10, 28, 28))
    labels = rng.integers(0, 10, size=train + test)
    noise = rng.integers(-200, 201, size=(train + test, 28, 28))
    images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
    directory.mkdir()
    write_idx(directory / "train-images-idx3-ubyte", images[:train])
    write_idx(directory / "train-labels-idx1-ubyte", labels[:train])
    write_idx(directory / "t10k-images-idx3-ubyte", images[train:])
    write_idx(directory / "t10k-labels-idx1-ubyte", labels[train:])
    return images, labels


def trained_weights(net: "torch.nn.Sequential", images: np.ndarray, labels: np.ndarray, lr: float, steps: int) -> dict[str, np.ndarray]:
    """A few Adam steps in float32, so that the softmax is far from uniform (a flat one hides a wrong Hessian)."""
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(steps):
        batch = slice((step * 32) % len(x), (step * 32) % len(x) + 32)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
        opt.step()
    return {name: p.detach().numpy().copy() for name, p in net.named_parameters()}


@pytest.fixture(params=["lenet300", "lenet5", "odd"])
def setup(request, tmp_path, rng):
    model = request.param
    images, labels = make_dataset(tmp_path / "data", rng, train=301, test=157)
    torch.manual_seed(0)  # the initialization too, so that each case is the same run to run
    net = torch_net(model)
    # The small odd net needs more, larger steps to leave the uniform softmax than the LeNets.
    weights = trained_weights(net, images[:301], labels[:301], lr=1e-2 if model == "odd" else 1e-3,
                              steps=300 if model == "odd" else 40)
    netquant.save_safetensors(tmp_path / "w.safetensors", weights)
    model_arg = model
    if model == "odd":
        (tmp_path / "odd.json").write_text(json.dumps(ODD_NET))
        model_arg = str(tmp_path / "odd.json")
    net64 = torch_net(model).double()
    net64.load_state_dict({n: torch.from_numpy(a.astype(np.float64)) for n, a in weights.items()})
    x = torch.from_numpy((images.astype(np.float32) / np.float32(255)).astype(np.float64)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return dict(model=model_arg, kind=model, dir=tmp_path, net=net64, x=x, y=y, names=list(weights), weights=weights)


def assert_close_per_tensor(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray], what: str) -> None:
    """float32 arithmetic against float64: each entry within 2e-4 of the tensor's largest value, and the tensors
    equal in norm to 1e-4 (a single wrong index, a missing factor or a transposed layout fails both by far)."""
    assert sorted(ours) == sorted(reference), what
    for name, ref in reference.items():
        got = ours[name].astype(np.float64)
        assert got.shape == ref.shape, f"{what} {name}: shape {got.shape} != {ref.shape}"
        scale = np.abs(ref).max()
        assert scale > 0, f"{what} {name}: the reference is all zero, a useless check"
        assert np.abs(got - ref).max() <= 2e-4 * scale, f"{what} {name}: max error {np.abs(got - ref).max() / scale:.3g} of the largest"
        assert abs(np.linalg.norm(got) / np.linalg.norm(ref) - 1) <= 1e-4, f"{what} {name}: norms differ"


def test_eval_matches_torch(cli, setup):
    out = json.loads(run_cli(cli, "eval", "--model", setup["model"], "--weights", setup["dir"] / "w.safetensors",
                             "--data", setup["dir"] / "data", "--json", "--batch", "64", "--quiet").stdout)
    x, y = setup["x"][301:], setup["y"][301:]
    with torch.no_grad():
        logits = setup["net"](x)
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(1) == y).double().mean().item()
    assert out["samples"] == 157
    assert out["loss"] == pytest.approx(loss, rel=1e-5)
    assert 0.05 < loss < 2.0, "the trained net should be confident but not perfect"
    # Every argmax has a margin far above float32 rounding here, so the counts agree exactly.
    margins = logits.topk(2, dim=1).values
    assert (margins[:, 0] - margins[:, 1]).min().item() > 1e-4
    assert out["accuracy"] == pytest.approx(accuracy, abs=1e-12)


def per_sample(setup, samples: int):
    net, names = setup["net"], setup["names"]
    params = {n: p.detach() for n, p in net.named_parameters()}

    def logits_of(p, xi):
        return torch_func.functional_call(net, p, (xi.unsqueeze(0),))[0]

    return params, names, logits_of, setup["x"][:samples], setup["y"][:samples]


def test_fisher_matches_torch_per_sample_gradients(cli, setup):
    samples = 37  # of 301 training images, in batches of 16: two full ones and a partial one
    run_cli(cli, "hessian", "--model", setup["model"], "--weights", str(setup["dir"] / "w.safetensors"), "--data",
            str(setup["dir"] / "data"), "-o", str(setup["dir"] / "f.safetensors"), "--method", "fisher",
            "--samples", str(samples), "--batch", "16")
    params, names, logits_of, x, y = per_sample(setup, samples)

    def loss_of(p, xi, yi):
        return torch.nn.functional.cross_entropy(logits_of(p, xi).unsqueeze(0), yi.unsqueeze(0))

    grads = torch_func.vmap(torch_func.grad(loss_of), in_dims=(None, 0, 0))(params, x, y)
    reference = {n: (grads[n] ** 2).mean(0).numpy() for n in names}
    assert_close_per_tensor(netquant.load_safetensors(setup["dir"] / "f.safetensors"), reference, "fisher")


def ggn_reference(setup, samples: int) -> dict[str, np.ndarray]:
    """diag(J^T H J) averaged over the samples, H = diag(p) - p p^T the softmax cross-entropy's Hessian in the
    logits, J the logits' Jacobian in the parameters (torch.func.jacrev), one sample at a time."""
    params, names, logits_of, x, _ = per_sample(setup, samples)
    total = {n: torch.zeros_like(params[n]) for n in names}
    for xi in x:
        jac = torch_func.jacrev(logits_of)(params, xi)  # name -> [classes, *shape]
        p = torch.softmax(logits_of(params, xi), 0)
        h = torch.diag(p) - torch.outer(p, p)
        for n in names:
            j = jac[n].reshape(len(p), -1)
            total[n] += ((h @ j) * j).sum(0).reshape(params[n].shape)
    return {n: (t / samples).numpy() for n, t in total.items()}


def test_ggn_and_obd_match_torch_gauss_newton(cli, setup):
    samples = 23
    for method in ("ggn", "obd"):
        run_cli(cli, "hessian", "--model", setup["model"], "--weights", str(setup["dir"] / "w.safetensors"),
                "--data", str(setup["dir"] / "data"), "-o", str(setup["dir"] / f"{method}.safetensors"), "--method",
                method, "--samples", str(samples), "--batch", "10")
    reference = ggn_reference(setup, samples)
    assert_close_per_tensor(netquant.load_safetensors(setup["dir"] / "ggn.safetensors"), reference, "ggn")
    # OBD drops the off-diagonal terms on the way back, so it equals the Gauss-Newton diagonal only in the last
    # layer (whose Jacobian rows touch disjoint weights), and differs before it.
    obd = netquant.load_safetensors(setup["dir"] / "obd.safetensors")
    last = [n for n in setup["names"] if n.startswith(setup["names"][-1].split(".")[0] + ".")]
    assert_close_per_tensor({n: obd[n] for n in last}, {n: reference[n] for n in last}, "obd, last layer")
    first = setup["names"][0]
    assert np.abs(obd[first] - reference[first]).max() > 1e-3 * np.abs(reference[first]).max(), \
        "OBD equal to the exact Gauss-Newton diagonal in the first layer too: is it really the OBD recursion?"



def torch_training(setup, dtype, optimizer: str, epochs: int, **hyper) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`epochs` full-batch steps of torch.optim in `dtype` from the same weights: the weights and Adam's
    exp_avg_sq (empty for SGD), as float64."""
    net = torch_net(setup["kind"]).to(dtype)
    net.load_state_dict({n: torch.from_numpy(a).to(dtype) for n, a in setup["weights"].items()})
    x, y = setup["x"][:301].to(dtype), setup["y"][:301]
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(net.parameters(), **hyper)
    for _ in range(epochs):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    weights = {n: p.detach().double().numpy() for n, p in net.named_parameters()}
    state = {n: opt.state[p]["exp_avg_sq"].double().numpy() for n, p in net.named_parameters()} if optimizer == "adam" else {}
    return weights, state


def assert_as_close_as_torch_float32(ours, torch32, torch64, start, what: str, factor: float, share: float) -> None:
    """Training in float32 rounds each weight to float32 after every step, which can take a visible share of a
    small step (LeNet-5's convolutions). So the yardstick is PyTorch's own float32 run, measured against float64 on
    the same data: netquant's error must be as small in norm, within `factor`, and no entry may be off by more than
    `share` of the tensor's largest change (a wrong index, a missing term or a wrong step size fails that by orders
    of magnitude)."""
    assert sorted(ours) == sorted(torch64), what
    for name, ref in torch64.items():
        got = ours[name].astype(np.float64)
        assert got.shape == ref.shape, f"{what} {name}: shape {got.shape} != {ref.shape}"
        change = np.abs(ref - start[name]).max()
        assert change > 1e-4 * np.abs(ref).max(), f"{what} {name}: hardly changed, a useless check"
        ours_error, torch_error = np.linalg.norm(got - ref), np.linalg.norm(torch32[name] - ref)
        assert ours_error <= factor * torch_error + 1e-7 * np.linalg.norm(ref), \
            f"{what} {name}: error norm {ours_error:.3g} against float64, PyTorch's float32 {torch_error:.3g}"
        assert np.abs(got - ref).max() <= share * change, \
            f"{what} {name}: max error {np.abs(got - ref).max():.3g}, the largest change {change:.3g}"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_steps_match_torch_optim(cli, setup, optimizer):
    """Full-batch epochs (--batch 301 of 301 images), so the shuffle cannot change a step: each epoch is one step of
    the mean loss's gradient, which torch.optim takes the same way (SGD with momentum and weight decay; Adam with
    weight decay and its default betas and eps)."""
    epochs, lr, decay = 3, (0.05 if optimizer == "sgd" else 2e-3), 1e-3
    args = ["train", "--model", setup["model"], "--init", str(setup["dir"] / "w.safetensors"), "--data",
            str(setup["dir"] / "data"), "-o", str(setup["dir"] / "t.safetensors"), "--optimizer", optimizer,
            "--epochs", str(epochs), "--batch", "301", "--lr", str(lr), "--weight-decay", str(decay)]
    hyper = dict(lr=lr, weight_decay=decay)
    if optimizer == "sgd":
        args += ["--momentum", "0.8"]
        hyper["momentum"] = 0.8
    else:
        args += ["--adam-state", str(setup["dir"] / "v.safetensors")]
    run_cli(cli, *args)
    weights64, state64 = torch_training(setup, torch.float64, optimizer, epochs, **hyper)
    weights32, state32 = torch_training(setup, torch.float32, optimizer, epochs, **hyper)
    ours = netquant.load_safetensors(setup["dir"] / "t.safetensors")
    # SGD's step is linear in the gradient: the bound is tight. Adam's m / sqrt(v) amplifies the rounding of a
    # gradient that cancels over the batch and changes sign between steps: in one weight of 130 of the odd net's
    # fc2 the two float32 runs are off by 4e-6 and 1.1e-5 (of steps of ~5e-3), so Adam gets 4x and 1%. A missing
    # bias correction, decay term or eps in the wrong place moves every step by 10% or more.
    factor, share = (2, 1e-3) if optimizer == "sgd" else (4, 1e-2)
    assert_as_close_as_torch_float32(ours, weights32, weights64, setup["weights"], f"{optimizer} weights", factor, share)
    if state64:
        zeros = {n: np.zeros_like(v) for n, v in state64.items()}
        assert_as_close_as_torch_float32(netquant.load_safetensors(setup["dir"] / "v.safetensors"), state32, state64,
                                         zeros, "adam exp_avg_sq", factor, share)


def torch_finetune(setup, codes: dict, dtype, optimizer: str, epochs: int, average: bool, **hyper) -> dict[str, np.ndarray]:
    """Full-batch steps on the shared values of a global codebook with the assignment fixed, by autograd through
    the lookup: each level's gradient is the sum of its members' (divided by their count when `average`), pruned
    weights stay 0. The weights after the steps, as float64."""
    values = {n: c.dequantize() for n, c in codes.items()}
    kept = {n: np.ones(c.codes.shape, bool) if c.pruned_code is None else c.codes != c.pruned_code for n, c in codes.items()}
    levels = np.unique(np.concatenate([values[n][kept[n]] for n in codes]))
    member = {n: np.searchsorted(levels, values[n]).clip(0, len(levels) - 1) for n in codes}
    count = sum(np.bincount(member[n][kept[n]], minlength=len(levels)) for n in codes)
    shared = torch.nn.Parameter(torch.from_numpy(levels.astype(np.float64)).to(dtype))
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)([shared], **hyper)
    net = torch_net(setup["kind"]).to(dtype)
    x, y = setup["x"][:301].to(dtype), setup["y"][:301]
    index = {n: torch.from_numpy(member[n]) for n in codes}
    mask = {n: torch.from_numpy(kept[n]).to(dtype) for n in codes}

    def weights():
        return {n: shared[index[n]] * mask[n] for n in codes}

    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(torch_func.functional_call(net, weights(), (x,)), y)
        loss.backward()
        if average:
            shared.grad /= torch.from_numpy(np.maximum(count, 1)).to(dtype)
        opt.step()
    with torch.no_grad():
        return {n: w.double().numpy() for n, w in weights().items()}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_finetune_matches_torch_through_the_lookup(cli, setup, optimizer):
    """`netquant finetune` on a global codebook (one set of levels for every tensor, biases included) with 30% of
    the weights pruned, in full-batch epochs, against autograd through the lookup: Adam on the members' mean
    gradient (the default), SGD with momentum on their sum (--sum-gradients, Deep Compression's rule)."""
    d = setup["dir"]
    run_cli(cli, "quantize", str(d / "w.safetensors"), "-o", str(d / "q.nq"), "--method", "kmeans", "--k", "16",
            "--prune", "0.3")
    epochs = 3
    args = ["finetune", "--model", setup["model"], "--weights", str(d / "q.nq"), "--data", str(d / "data"), "-o",
            str(d / "ft.nq"), "--epochs", str(epochs), "--batch", "301"]
    if optimizer == "adam":
        args += ["--lr", "1e-3"]
        hyper, average = dict(lr=1e-3), True
    else:
        args += ["--optimizer", "sgd", "--lr", "1e-3", "--momentum", "0.9", "--sum-gradients"]
        hyper, average = dict(lr=1e-3, momentum=0.9), False
    run_cli(cli, *args)
    codes = netquant.load_codes(d / "q.nq")
    assert sorted(codes) == sorted(setup["names"]) and all(isinstance(c, netquant.Codes) for c in codes.values())
    start = netquant.load(d / "q.nq")
    ref64 = torch_finetune(setup, codes, torch.float64, optimizer, epochs, average, **hyper)
    ref32 = torch_finetune(setup, codes, torch.float32, optimizer, epochs, average, **hyper)
    ours = netquant.load(d / "ft.nq")
    factor, share = (2, 1e-3) if optimizer == "sgd" else (4, 1e-2)
    assert_as_close_as_torch_float32(ours, ref32, ref64, start, f"finetune {optimizer}", factor, share)
    for name, c in codes.items():  # the assignment and the pruned zeros stayed
        if c.pruned_code is not None:
            assert np.all(ours[name][c.codes == c.pruned_code] == 0)
