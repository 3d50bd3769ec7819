import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# TY_PYTHON_DIR: another copy of the package (make test-py-asan: the sanitizer build's)
sys.path.insert(0, os.environ.get("TY_PYTHON_DIR") or os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def dtr_restored():
    """DTR off and its settings back as they were after the test (the DTR test files use it
    for every test: pytestmark = pytest.mark.usefixtures("dtr_restored"))."""
    from tianyuan import dtr
    saved = (dtr.eviction_threshold, dtr.evictee_minimum_size, dtr.enable_sqrt_sampling)
    yield
    dtr.disable()
    dtr.eviction_threshold, dtr.evictee_minimum_size, dtr.enable_sqrt_sampling = saved
