"""Counts the ops the op-table suites run (op_coverage.py): the dispatcher hook is on only
while a module of this folder runs; each process writes what it saw to $TY_OP_COVERAGE_DIR."""
import os

import pytest

from tianyuan import _C

from .op_coverage import RECORDER


@pytest.fixture(scope="module", autouse=True)
def _count_ops():
    _C._coverage_start()
    yield
    _C._coverage_stop()


@pytest.fixture(scope="session", autouse=True)
def _save_op_coverage():
    yield
    directory = os.environ.get("TY_OP_COVERAGE_DIR")
    if directory:
        RECORDER.save(directory, os.environ.get("PYTEST_XDIST_WORKER", "main") + f"-{os.getpid()}")


@pytest.fixture
def cov():
    return RECORDER
