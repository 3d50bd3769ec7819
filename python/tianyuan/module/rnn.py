"""Recurrent layers built from F ops: LSTMCell, GRUCell, LSTM, GRU (gate order as in
MegEngine/PyTorch: LSTM i, f, g, o; GRU r, z, n)."""
import math

import numpy as np

from . import init
from ._utils import linear, need, param_filled
from .module import Module
from ..tensor import Tensor


def _zeros(n, h, like):
    return Tensor(np.zeros((n, h), dtype=np.float32))


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    from .. import functional as F
    gates = linear(x, w_ih, b_ih) + linear(h, w_hh, b_hh)
    hs = h.shape[-1]
    i = F.sigmoid(gates[:, 0:hs])
    f = F.sigmoid(gates[:, hs:2 * hs])
    g = F.tanh(gates[:, 2 * hs:3 * hs])
    o = F.sigmoid(gates[:, 3 * hs:4 * hs])
    c2 = f * c + i * g
    return o * F.tanh(c2), c2


def _gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    from .. import functional as F
    gi = linear(x, w_ih, b_ih)
    gh = linear(h, w_hh, b_hh)
    hs = h.shape[-1]
    r = F.sigmoid(gi[:, 0:hs] + gh[:, 0:hs])
    z = F.sigmoid(gi[:, hs:2 * hs] + gh[:, hs:2 * hs])
    nn = F.tanh(gi[:, 2 * hs:] + r * gh[:, 2 * hs:])
    return (1 - z) * nn + z * h


class _CellBase(Module):
    _gates = 1

    def __init__(self, input_size, hidden_size, bias=True, **kwargs):
        super().__init__(**kwargs)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        g = self._gates * hidden_size
        self.weight_ih = param_filled(self, (g, input_size), 0.0)
        self.weight_hh = param_filled(self, (g, hidden_size), 0.0)
        if bias:
            self.bias_ih = param_filled(self, (g,), 0.0)
            self.bias_hh = param_filled(self, (g,), 0.0)
        else:
            self.bias_ih = None
            self.bias_hh = None
        self.reset_parameters()

    def reset_parameters(self):
        """Every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k)

    def _module_info_string(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class LSTMCell(_CellBase):
    """One LSTM step: ``forward(x, hx=None) -> (h, c)`` with x (N, input_size) and hx an
    (h, c) pair of (N, hidden_size) (zeros when None). weight_ih (4H, in), weight_hh (4H, H).

    >>> import tianyuan.module as M
    >>> M.LSTMCell(3, 5).weight_ih.shape
    (20, 3)
    """
    _gates = 4

    def forward(self, x, hx=None):
        if hx is None:
            z = _zeros(x.shape[0], self.hidden_size, x)
            hx = (z, z)
        return _lstm_step(x, hx[0], hx[1], self.weight_ih, self.weight_hh, self.bias_ih,
                          self.bias_hh)


class GRUCell(_CellBase):
    """One GRU step: ``forward(x, hx=None) -> h``. weight_ih (3H, in), weight_hh (3H, H).

    >>> import tianyuan.module as M
    >>> M.GRUCell(3, 5).weight_hh.shape
    (15, 5)
    """
    _gates = 3

    def forward(self, x, hx=None):
        if hx is None:
            hx = _zeros(x.shape[0], self.hidden_size, x)
        return _gru_step(x, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class _RNNBase(Module):
    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, **kwargs):
        super().__init__(**kwargs)
        if proj_size:
            raise NotImplementedError("proj_size is not supported")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        nd = 2 if bidirectional else 1
        g = self._gates * hidden_size
        for layer in range(num_layers):
            in_sz = input_size if layer == 0 else hidden_size * nd
            for d in range(nd):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                setattr(self, "weight_ih" + sfx, param_filled(self, (g, in_sz), 0.0))
                setattr(self, "weight_hh" + sfx, param_filled(self, (g, hidden_size), 0.0))
                if bias:
                    setattr(self, "bias_ih" + sfx, param_filled(self, (g,), 0.0))
                    setattr(self, "bias_hh" + sfx, param_filled(self, (g,), 0.0))
        self.reset_parameters()

    def reset_parameters(self):
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -k, k)

    def _weights(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        return (getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx),
                getattr(self, "bias_ih" + sfx, None), getattr(self, "bias_hh" + sfx, None))

    def _run(self, x, hx):
        """x (T, N, in) -> (output (T, N, nd*H), [final state per layer*direction])."""
        from .. import functional as F
        stack = need("stack", type(self).__name__) if hasattr(F, "stack") else None
        concat = need("concat", type(self).__name__)
        nd = 2 if self.bidirectional else 1
        t_len = x.shape[0]
        finals = []
        inp = x
        for layer in range(self.num_layers):
            outs_dir = []
            for d in range(nd):
                w = self._weights(layer, d)
                state = hx[layer * nd + d]
                steps = [None] * t_len
                order = range(t_len - 1, -1, -1) if d else range(t_len)
                for t in order:
                    state = self._step(inp[t], state, w)
                    steps[t] = state[0] if isinstance(state, tuple) else state
                finals.append(state)
                if stack is not None:
                    outs_dir.append(stack(steps, 0))
                else:
                    outs_dir.append(concat([F.expand_dims(s, 0) for s in steps], 0))
            inp = outs_dir[0] if nd == 1 else concat(outs_dir, 2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                inp = need("dropout", type(self).__name__)(inp, self.dropout, training=True)
        return inp, finals

    def _module_info_string(self):
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class LSTM(_RNNBase):
    """A multi-layer LSTM. ``forward(x, hx=None) -> (output, (h_n, c_n))``; x is (T, N, in)
    ((N, T, in) with batch_first), h_n and c_n (num_layers * num_directions, N, H).
    Parameters are named weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}
    (suffix ``_reverse`` for the backward direction).

    >>> import tianyuan.module as M
    >>> M.LSTM(3, 4, num_layers=2).weight_ih_l1.shape
    (16, 4)
    """
    _gates = 4

    def _step(self, x, state, w):
        return _lstm_step(x, state[0], state[1], *w)

    def forward(self, x, hx=None):
        from .. import functional as F
        if self.batch_first:
            x = x.transpose(1, 0, 2)
        nd = 2 if self.bidirectional else 1
        n = x.shape[1]
        if hx is None:
            z = _zeros(n, self.hidden_size, x)
            states = [(z, z)] * (self.num_layers * nd)
        else:
            h0, c0 = hx
            states = [(h0[i], c0[i]) for i in range(self.num_layers * nd)]
        out, finals = self._run(x, states)
        if self.batch_first:
            out = out.transpose(1, 0, 2)
        h_n = F.concat([F.expand_dims(s[0], 0) for s in finals], 0)
        c_n = F.concat([F.expand_dims(s[1], 0) for s in finals], 0)
        return out, (h_n, c_n)


class GRU(_RNNBase):
    """A multi-layer GRU. ``forward(x, hx=None) -> (output, h_n)``; shapes as in LSTM.

    >>> import tianyuan.module as M
    >>> M.GRU(3, 4).weight_hh_l0.shape
    (12, 4)
    """
    _gates = 3

    def _step(self, x, state, w):
        return _gru_step(x, state, *w)

    def forward(self, x, hx=None):
        from .. import functional as F
        if self.batch_first:
            x = x.transpose(1, 0, 2)
        nd = 2 if self.bidirectional else 1
        n = x.shape[1]
        if hx is None:
            states = [_zeros(n, self.hidden_size, x)] * (self.num_layers * nd)
        else:
            states = [hx[i] for i in range(self.num_layers * nd)]
        out, finals = self._run(x, states)
        if self.batch_first:
            out = out.transpose(1, 0, 2)
        h_n = F.concat([F.expand_dims(s, 0) for s in finals], 0)
        return out, h_n


_NONLINEAR = ("tanh", "relu")


def _check_nonlinearity(name, nonlinearity):
    if nonlinearity not in _NONLINEAR:
        raise ValueError(f"{name}: nonlinearity must be one of {_NONLINEAR}, got "
                         f"{nonlinearity!r}")
    return nonlinearity


def _rnn_step(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    from .. import functional as F
    pre = linear(x, w_ih, b_ih) + linear(h, w_hh, b_hh)
    return F.tanh(pre) if nonlinearity == "tanh" else F.relu(pre)


class RNNCell(_CellBase):
    """One Elman RNN step: ``h' = act(x @ weight_ih.T + bias_ih + h @ weight_hh.T +
    bias_hh)`` with act tanh or relu; ``forward(x, hx=None) -> h'`` (hx zeros when None).

    >>> import tianyuan.module as M
    >>> M.RNNCell(3, 5, nonlinearity="relu").weight_ih.shape
    (5, 3)
    """
    _gates = 1

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", **kwargs):
        self.nonlinearity = _check_nonlinearity("RNNCell", nonlinearity)
        super().__init__(input_size, hidden_size, bias, **kwargs)

    def forward(self, x, hx=None):
        if hx is None:
            hx = _zeros(x.shape[0], self.hidden_size, x)
        return _rnn_step(x, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh,
                         self.nonlinearity)


class RNN(_RNNBase):
    """A multi-layer Elman RNN (tanh or relu). ``forward(x, hx=None) -> (output, h_n)``;
    shapes and parameter names as in :class:`GRU`.

    >>> import tianyuan.module as M
    >>> M.RNN(3, 4, num_layers=2).weight_ih_l1.shape
    (4, 4)
    """
    _gates = 1

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, **kwargs):
        self.nonlinearity = _check_nonlinearity("RNN", nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, **kwargs)

    def _step(self, x, state, w):
        return _rnn_step(x, state, *w, self.nonlinearity)

    forward = GRU.forward
