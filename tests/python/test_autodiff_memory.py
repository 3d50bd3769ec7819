"""The eager tape holds what backward needs and nothing more, from the allocator's counters:
saved tensors whose values no gradient rule reads are kept as shapes only, and backward frees
each node's saved tensors and output gradients as soon as its rule has run. The bounds are
counted in activations (one layer's output) from the tensor sizes; the tape before this
kept every op's inputs and outputs and every gradient of the pass (about 3x and 6x them).
(A rule that reads a tensor the tape did not keep fails with an error naming the flag: the
op table's gradient tests, run under the tape, check every row's facts.)"""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M

N, W, LAYERS = 256, 64, 8
ACT = N * W * 4  # bytes of one layer's float32 output


class _DeepMLP(M.Module):
    def __init__(self):
        super().__init__()
        self.layers = [M.Linear(W, W) for _ in range(LAYERS)]

    def forward(self, x):
        for lin in self.layers:
            x = F.relu(lin(x))
        return x


def _step_peaks(model, x):
    """(live bytes after forward, peak of forward, peak of backward), each above what lived
    before the step (parameters, data, the gradients of an earlier step)."""
    gm = ty.autodiff.GradManager().attach(model.parameters())
    ty.reset_max_memory_stats()
    base = ty.get_allocated_memory()
    with gm:
        loss = model(x).sum()
        fwd_live = ty.get_allocated_memory() - base
        fwd_peak = ty.get_max_allocated_memory() - base
        ty.reset_max_memory_stats()
        gm.backward(loss)
    bwd_peak = ty.get_max_allocated_memory() - base
    return fwd_live, fwd_peak, bwd_peak


def test_deep_mlp_keeps_one_activation_per_layer():
    ty.random.seed(0)
    model = _DeepMLP()
    x = ty.tensor(np.random.default_rng(0).standard_normal((N, W)).astype(np.float32))
    _step_peaks(model, x)  # the first step creates the parameters' .grad
    fwd_live, fwd_peak, bwd_peak = _step_peaks(model, x)
    # relu keeps its output (which is also the next matmul's input); the matmul output and
    # the bias add's output are read by no rule
    assert fwd_live <= LAYERS * ACT + ACT // 8, (fwd_live, ACT)
    assert fwd_peak <= fwd_live + 2 * ACT, (fwd_peak, fwd_live, ACT)
    # backward adds only the gradients in flight: the output gradient of the node running,
    # its input gradients and the weight gradients, accumulated into the existing .grad
    assert bwd_peak <= fwd_live + 3 * ACT, (bwd_peak, fwd_live, ACT)


def test_saved_tensors_go_as_backward_passes_them():
    """Backward's peak in a chain of relus stays near the forward's live set (the gradients of
    the nodes already run are freed, and so are their saved outputs)."""
    x = ty.Parameter(np.random.default_rng(1).standard_normal((N, W)).astype(np.float32))
    gm = ty.autodiff.GradManager().attach([x])
    ty.reset_max_memory_stats()
    base = ty.get_allocated_memory()
    with gm:
        y = x
        for _ in range(LAYERS):
            y = F.relu(y * 1.5)  # mul by a constant keeps nothing for x's gradient
        loss = y.sum()
        del y
        fwd_live = ty.get_allocated_memory() - base
        ty.reset_max_memory_stats()
        gm.backward(loss)
    bwd_peak = ty.get_max_allocated_memory() - base
    assert fwd_live <= LAYERS * ACT + ACT // 8, (fwd_live, ACT)
    assert bwd_peak <= fwd_live + 3 * ACT, (bwd_peak, fwd_live, ACT)
    np.testing.assert_array_equal(x.grad.numpy() > 0, x.numpy() > 0)

