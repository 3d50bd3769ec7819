"""op_db rows of the matmul family (see op_db.py)."""
from .op_db import OpInfo, Sample, rand  # noqa: F401

ROWS = []
