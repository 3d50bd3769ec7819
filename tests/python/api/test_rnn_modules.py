"""M.RNNCell / M.RNN against a NumPy Elman recurrence."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.module as M
from tianyuan.autodiff import GradManager


def _np_step(x, h, cell, act):
    pre = x @ cell["wi"].T + cell["bi"] + h @ cell["wh"].T + cell["bh"]
    return np.tanh(pre) if act == "tanh" else np.maximum(pre, 0)


def _params(m, sfx=""):
    g = lambda n: getattr(m, n + sfx).numpy()  # noqa: E731
    return {"wi": g("weight_ih"), "wh": g("weight_hh"), "bi": g("bias_ih"), "bh": g("bias_hh")}


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_rnn_cell_matches_numpy(act):
    cell = M.RNNCell(3, 5, nonlinearity=act)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    h = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    ref = _np_step(x, h, _params(cell), act)
    np.testing.assert_allclose(cell(ty.tensor(x), ty.tensor(h)).numpy(), ref, rtol=1e-5,
                               atol=1e-6)
    zero = _np_step(x, np.zeros((4, 5), np.float32), _params(cell), act)
    np.testing.assert_allclose(cell(ty.tensor(x)).numpy(), zero, rtol=1e-5, atol=1e-6)


def test_bidirectional_two_layer_rnn_matches_numpy_and_trains():
    rnn = M.RNN(3, 4, num_layers=2, nonlinearity="tanh", batch_first=True, bidirectional=True)
    x = np.random.default_rng(2).standard_normal((2, 5, 3)).astype(np.float32)
    out, h_n = rnn(ty.tensor(x))
    inp = x.transpose(1, 0, 2)
    finals = []
    for layer in range(2):
        dirs = []
        for d, sfx in enumerate(("", "_reverse")):
            p = _params(rnn, f"_l{layer}{sfx}")
            h = np.zeros((2, 4), np.float32)
            steps = [None] * 5
            for t in (range(4, -1, -1) if d else range(5)):
                h = _np_step(inp[t], h, p, "tanh")
                steps[t] = h
            finals.append(h)
            dirs.append(np.stack(steps))
        inp = np.concatenate(dirs, 2)
    np.testing.assert_allclose(out.numpy(), inp.transpose(1, 0, 2), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h_n.numpy(), np.stack(finals), rtol=1e-5, atol=1e-5)
    gm = GradManager().attach(rnn.parameters())
    with gm:
        gm.backward(rnn(ty.tensor(x))[0].sum())
    assert all(p.grad is not None and np.abs(p.grad.numpy()).sum() > 0
               for p in rnn.parameters())
    with pytest.raises(ValueError, match="nonlinearity"):
        M.RNN(3, 4, nonlinearity="gelu")
