"""utils.module_stats: per-layer parameters, FLOPs, activations, receptive fields, tables."""
import io

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.module as M
from tianyuan.utils import module_stats as ms


class Net(M.Module):
    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(3, 8, 3, stride=2, padding=1)          # 8x8 -> 4x4
        self.bn = M.BatchNorm2d(8)
        self.relu = M.ReLU()
        self.pool = M.MaxPool2d(2)                                   # 4x4 -> 2x2
        self.gap = M.AdaptiveAvgPool2d(1)
        self.fc = M.Linear(8, 5)
        self.scale = ty.Parameter(np.ones((5,), np.float32))         # not in a hooked layer

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(self.gap(x).reshape(x.shape[0], -1)) * self.scale


def test_totals_and_rows_against_hand_counts():
    net = Net()
    net.train()
    net.bn.eval()
    total, details = ms.module_stats(net, input_shapes=(2, 3, 8, 8), logging_to_stdout=False)
    conv = 2 * 8 * 4 * 4 * (3 * 9 + 1)
    bn = 2 * 8 * 4 * 4 * 7
    pool = 2 * 8 * 2 * 2 * 4
    gap = 2 * 8 * 1 * 1 * 4
    fc = 2 * 5 * (8 + 1)
    assert total.flops == conv + bn + pool + gap + fc
    rows = {r["name"]: r for r in details.flops}
    assert rows["conv"]["flops_num"] == conv and rows["fc"]["flops_num"] == fc
    assert rows["conv"]["output_shapes"] == [(2, 8, 4, 4)]
    assert rows["total"]["flops"] == ms.sizeof_fmt(total.flops, suffix="OPs")
    dims = 8 * 3 * 9 + 8 + 8 + 8 + 5 * 8 + 5 + 5
    assert total.param_dims == dims and total.param_size == dims * 4
    names = [r["name"] for r in details.params]
    assert names == ["conv-w", "conv-b", "bn-w", "bn-b", "fc-w", "fc-b", "scale", "total"]
    acts = 2 * 8 * 4 * 4 * 2 + 2 * 8 * 2 * 2 + 2 * 8 + 2 * 5
    assert total.act_dims == acts and total.act_size == acts * 4
    # the modes are given back, each its own
    assert net.training and net.conv.training and not net.bn.training


def test_adaptive_pool_counts_uneven_windows():
    m = M.AdaptiveAvgPool2d((2, 3))
    _, details = ms.module_stats(m, input_shapes=(1, 1, 5, 7), logging_to_stdout=False)
    # rows: windows [0,3) [2,5) -> 6; cols: [0,3) [2,5) [4,7) -> 9
    assert details.flops[0]["flops_num"] == 6 * 9


def test_shared_parameter_counted_once_and_custom_registration():
    class Scale(M.Module):
        def __init__(self):
            super().__init__()
            self.weight = ty.Parameter(np.full((4,), 2.0, np.float32))

        def forward(self, x):
            return x * self.weight

    lin = M.Linear(4, 4, bias=False)
    net = M.Sequential(lin, lin, Scale())
    ms.register_hook_module(Scale)
    try:
        ms.register_flops(Scale)(lambda mod, i, o: 11)
        total, details = ms.module_stats(net, inputs=np.ones((3, 4), np.float32),
                                         logging_to_stdout=False)
    finally:
        ms.hook_modules.remove(Scale)
        del ms._calc_flops_dict[Scale]
    assert total.param_dims == 16 + 4
    assert total.flops == 2 * (3 * 4 * 4) + 11
    assert [r["name"] for r in details.params][:2] == ["0-w", "2-w"]
    with pytest.raises(TypeError):
        ms.register_hook_module(3)


def test_receptive_field_and_tables_logged():
    net = M.Sequential(M.Conv2d(1, 2, 3), M.Conv2d(2, 2, 3, stride=2), M.MaxPool2d(2),
                       M.Conv2d(2, 2, 3))
    stream = io.StringIO()
    ty.set_log_file(stream)
    ms.enable_receptive_field()
    try:
        _, details = ms.module_stats(net, input_shapes=(1, 1, 32, 32))
    finally:
        ms.disable_receptive_field()
        from tianyuan import logger as L
        h = L._state["file_handlers"].pop()
        for lg in L._state["loggers"]:
            lg.removeHandler(h)
    rf = [r["receptive_field"] for r in details.flops[:-1]]
    stride = [r["stride"] for r in details.flops[:-1]]
    assert rf == [(3, 3), (5, 5), (7, 7), (15, 15)]
    assert stride == [(1, 1), (2, 2), (4, 4), (4, 4)]
    text = stream.getvalue()
    for title in ("param stats", "flops stats", "activations stats", "summary",
                  "receptive_field", "total_flops"):
        assert title in text


def test_helpers():
    assert ms.sizeof_fmt(1536) == "1.500 KiB"
    assert ms.sizeof_fmt(2500, suffix="OPs") == "2.500 KOPs"
    assert ms.get_dtype_bit("float16") == 16 and ms.get_dtype_bit("int8") == 8
    assert ms.dict2table([{"a": 1}], ["a", "b"]) == [["a", "b"], [1, ""]]
    with pytest.raises(ValueError, match="input_shapes"):
        ms.module_stats(M.Identity())
    m = M.BatchMatMulActivation(2, 3, 4)
    total, _ = ms.module_stats(m, input_shapes=(2, 3, 5), logging_to_stdout=False)
    assert total.flops == 2 * 4 * 5 * (3 + 1)
