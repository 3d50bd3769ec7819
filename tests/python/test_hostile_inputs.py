"""Regression tests for the hostile-input findings of issue 8 (item 7): each test feeds what an
attacker or a careless caller would and checks for a clear error or the correct value."""
import io
import os

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F


# ---- 1. load refuses non-regular files and checks sizes before reading the body -------------

def test_load_refuses_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "ckpt.fifo"
    os.mkfifo(fifo)  # no writer: a blocking open or read would hang forever
    with pytest.raises(ValueError, match="not a regular file"):
        ty.load(str(fifo))


def test_load_refuses_dev_zero_path_and_file_object():
    with pytest.raises(ValueError, match="/dev/zero is not a regular file"):
        ty.load("/dev/zero")
    with open("/dev/zero", "rb") as fh:
        with pytest.raises(ValueError, match="not a regular file"):
            ty.load(fh)


def _checkpoint_bytes():
    buf = io.BytesIO()
    ty.save({"w": ty.Tensor([1.0, 2.0])}, buf)
    return buf.getvalue()


class _CountingReader(io.RawIOBase):
    """An endless stream of zero bytes after ``head`` that counts what was read."""

    def __init__(self, head):
        self.head, self.taken = head, 0

    def readable(self):
        return True

    def readinto(self, b):
        n = len(b)
        chunk = (self.head + bytes(n))[:n]
        self.head = self.head[n:]
        b[:n] = chunk
        self.taken += n
        return n


def test_load_checks_declared_sizes_before_reading_the_body(tmp_path):
    raw = _checkpoint_bytes()
    huge_header = raw[:16] + (1 << 40).to_bytes(8, "little") + raw[24:]
    path = tmp_path / "lying.ckpt"
    path.write_bytes(huge_header)
    with pytest.raises(ValueError, match="header length 1099511627776 exceeds"):
        ty.load(str(path))
    huge_data = raw[:24] + (1 << 40).to_bytes(8, "little") + raw[32:]
    path.write_bytes(huge_data)
    with pytest.raises(ValueError, match="truncated .header says"):
        ty.load(str(path))
    # An endless stream with a foreign magic is rejected after reading the prefix only.
    stream = _CountingReader(b"NOTACKPT")
    with pytest.raises(ValueError, match="bad magic"):
        ty.load(io.BufferedReader(stream, buffer_size=64))
    assert stream.taken <= 64
