"""PyTorch round trip: state_dict + Adam's exp_avg_sq -> .nq -> back into a model (skipped without torch)."""

from __future__ import annotations

import numpy as np
import pytest

import netquant


def test_state_dict_round_trip(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: the state_dict round trip is skipped")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(64, 20), torch.randint(0, 4, (64,))
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    params = dict(model.named_parameters())
    importance = {n: opt.state[p]["exp_avg_sq"] for n, p in params.items()}
    stats = netquant.save(tmp_path / "m.nq", params, importance, method="ecsq", k=16, lam=1e-6,
                          importance_transform="sqrt", backend="cpu")
    assert stats["ratio_file"] > 1.0

    restored = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    back = netquant.load(tmp_path / "m.nq")
    restored.load_state_dict({n: torch.from_numpy(a) for n, a in back.items()})
    direct = netquant.quantize_model(params, importance, method="ecsq", k=16, lam=1e-6,
                                     importance_transform="sqrt", backend="cpu")
    for n, p in restored.named_parameters():
        assert np.array_equal(p.detach().numpy(), direct.dequantized[n])
        assert len(np.unique(p.detach().numpy())) <= 16


class _TorchLikeParameter:
    """What save() and quantize_model() see of a torch.nn.Parameter, without torch: requires_grad, detach(), and a
    detached tensor that exports its memory through DLPack (as a CPU torch tensor does)."""

    def __init__(self, a: np.ndarray):
        self._a, self.requires_grad = a, True

    def detach(self) -> np.ndarray:  # a NumPy array speaks DLPack, as a detached CPU tensor does
        return self._a


def test_state_dict_layout_round_trip_without_torch(tmp_path):
    # The same round trip as above on a state_dict of the same Sequential's layout ([out, in] weights, biases),
    # with Adam-like second moments as importance: the CI machines have no PyTorch.
    rng = np.random.default_rng(3)
    shapes = {"0.weight": (16, 20), "0.bias": (16,), "2.weight": (4, 16), "2.bias": (4,)}
    arrays = {n: rng.normal(0, 0.2, s).astype(np.float32) for n, s in shapes.items()}
    params = {n: _TorchLikeParameter(a) for n, a in arrays.items()}
    importance = {n: (rng.gamma(0.5, 1e-4, s)).astype(np.float32) for n, s in shapes.items()}
    stats = netquant.save(tmp_path / "m.nq", params, importance, method="ecsq", k=16, lam=1e-6,
                          importance_transform="sqrt", backend="cpu")
    assert stats["ratio_file"] > 1.0
    back = netquant.load(tmp_path / "m.nq")
    assert list(back) == list(shapes)  # a state_dict's order
    direct = netquant.quantize_model(arrays, importance, method="ecsq", k=16, lam=1e-6,
                                     importance_transform="sqrt", backend="cpu")
    for n, s in shapes.items():
        assert back[n].shape == s and back[n].dtype == np.float32
        assert np.array_equal(back[n], direct.dequantized[n])
        assert len(np.unique(back[n])) <= 16
