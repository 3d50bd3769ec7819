"""A stand-in ``megengine`` package: importing it turns tianyuan's MegEngine alias on and hands
back tianyuan itself (importlib returns what ``sys.modules["megengine"]`` holds after this
runs).

It is found only where its parent directory is on the path: ``python -m tianyuan.compat`` puts
it on ``PYTHONPATH`` for the processes a program starts (multiprocessing's spawn and
forkserver, subprocesses), and a user may put it there to alias a whole environment without a
runner: ``export PYTHONPATH=$(python -m tianyuan.compat --shim-path):$PYTHONPATH``. Putting it
there is the decision to use tianyuan under MegEngine's name, so it does not look for a real
MegEngine behind it."""
from tianyuan.compat._alias import megengine_alias

megengine_alias(force=True)
