"""Helpers over a module tree."""
import contextlib

__all__ = ["set_module_mode_safe"]


@contextlib.contextmanager
def set_module_mode_safe(module, training=False):
    """Puts every submodule of ``module`` in training (or eval) mode for the block and gives
    each back its own previous mode afterwards, even on an exception; yields ``module``."""
    saved = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        yield module
    finally:
        for m, mode in saved:
            m.training = mode
