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
