"""Where the hub keeps what it fetches, and the temp-name discipline that keeps it whole.

Everything is first written under a hidden temporary name in the same directory
(``.<name>.tmp-<pid>-<random>``) and renamed into place only when complete, so the cache
never holds a half-written file or directory under its final name. Temporaries left by a
process that was killed are removed by the next process that writes into the same directory.
"""
import os
import re
import shutil
import tempfile

ENV_TY_HOME = "TY_HOME"
ENV_XDG_CACHE_HOME = "XDG_CACHE_HOME"
DEFAULT_CACHE_DIR = "~/.cache"

_TEMP_RE = re.compile(r"^\..*\.tmp-(\d+)-[0-9a-z_]+$")


def get_home():
    """``$TY_HOME`` if set, else ``$XDG_CACHE_HOME/tianyuan`` (default ``~/.cache/tianyuan``)."""
    home = os.environ.get(ENV_TY_HOME)
    if not home:
        home = os.path.join(os.environ.get(ENV_XDG_CACHE_HOME) or DEFAULT_CACHE_DIR, "tianyuan")
    return os.path.abspath(os.path.expanduser(home))


def hub_dir():
    """The directory that holds fetched repositories: ``<home>/hub``."""
    return os.path.join(get_home(), "hub")


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists but belongs to someone else
        return True
    return True


def clean_stale_temps(directory):
    """Removes temporaries in ``directory`` whose writer process no longer exists."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = _TEMP_RE.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def temp_prefix(final_name):
    return f".{final_name}.tmp-{os.getpid()}-"


def make_temp_dir(directory, final_name):
    os.makedirs(directory, exist_ok=True)
    return tempfile.mkdtemp(prefix=temp_prefix(final_name), dir=directory)


def install_dir(src, final, replace):
    """Renames the complete directory ``src`` to ``final``.

    When ``final`` already exists (another process finished first, or a re-fetch), it is kept
    if ``replace`` is false (``src`` is then dropped) and swapped out otherwise: it is renamed
    aside first, so ``final`` is only ever absent for an instant, never half-filled.
    """
    try:
        os.rename(src, final)
        return
    except OSError:
        if not os.path.isdir(final):
            raise
    if not replace:
        shutil.rmtree(src, ignore_errors=True)
        return
    parent, base = os.path.split(final)
    aside = tempfile.mkdtemp(prefix=temp_prefix(base), dir=parent)
    old = os.path.join(aside, "old")
    os.rename(final, old)
    try:
        os.rename(src, final)
    except OSError:
        if not os.path.isdir(final):  # put the old copy back unless a rival installed one
            os.rename(old, final)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
