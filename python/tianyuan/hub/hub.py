"""``tianyuan.hub``: models published as a ``hubconf.py`` in a repository, and their weights.

MegEngine's API and semantics (``list``, ``load``, ``help``, ``import_module``, ``pretrained``,
``load_serialized_obj_from_url``), with these differences, each the safer choice:

* Weights are loaded with :func:`tianyuan.load`, which refuses pickle files. A MegEngine
  ``.pkl`` is read only when the caller opts in with ``allow_pickle=True`` (on
  :func:`load_serialized_obj_from_url` or :class:`pretrained`); unpickling runs code from the
  file, so do that only for sources you trust.
* Downloads are atomic (temporary file, then rename), time out when the server stops sending
  (:data:`HTTP_READ_TIMEOUT` seconds), are checked against ``Content-Length``, and verify a
  sha256 prefix: the one passed as ``hash_prefix=``, else the one a torch-hub style file name
  carries (``resnet18-5c106cde.pth``: a hyphen, 8 to 64 lowercase hex digits, the extension;
  ``check_hash=False`` turns that off for a name where those digits are no hash).
  MegEngine's own weight names end in ``_<8 hex>.pkl``; MegEngine never checks that suffix
  and does not say what it hashes, so it is not checked here either.
* A repository may also be a local directory or a git URL (see ``_repo``), and ``git_host``
  may carry a scheme and port, so a mirror or a local server can stand in for GitHub.

The cache is ``$TY_HOME`` if set, else ``$XDG_CACHE_HOME/tianyuan`` (``~/.cache/tianyuan``):
repositories under ``hub/``, weights under ``serialized/``.
"""
import builtins
import contextlib
import functools
import hashlib
import importlib.util
import os
import pickle
import re
import sys
import urllib.parse

from . import _cache, _download, _repo
from .exceptions import InvalidRepo

HUBDEPENDENCY = "dependencies"
DEFAULT_GIT_HOST = _repo.DEFAULT_GIT_HOST
DEFAULT_PROTOCOL = _repo.DEFAULT_PROTOCOL
_HASH_IN_NAME = re.compile(r".*-([0-9a-f]{8,64})\.[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)?")
_HEX = re.compile(r"[0-9A-Fa-f]+")

# every repository directory a hubconf was imported from -> the directory's inode then (a
# re-fetched repository is a new directory renamed into place: a new inode)
_loaded_repo_dirs = {}


# ----------------------------------------------------------------------------- hubconf
@contextlib.contextmanager
def _on_sys_path(directory):
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        try:
            sys.path.remove(directory)
        except ValueError:
            pass


def _inside(path, directory):
    try:
        return os.path.commonpath([os.path.abspath(path), directory]) == directory
    except ValueError:
        return False


def _forget_other_repos_modules(repo_dir):
    """Drops from ``sys.modules`` the top-level modules that ``repo_dir`` provides but that
    were imported from another hub repository (or from an earlier copy of this one, replaced
    by ``use_cache=False``), so this repository gets its own ``model.py`` rather than the one
    a previous ``hub.load`` left behind. Modules from anywhere else (installed packages) are
    never touched."""
    provided = set()
    for entry in os.listdir(repo_dir):
        full = os.path.join(repo_dir, entry)
        if entry.endswith(".py") and entry != _repo.HUBCONF:
            provided.add(entry[:-3])
        elif os.path.isfile(os.path.join(full, "__init__.py")):
            provided.add(entry)
    inode = os.stat(repo_dir).st_ino
    others = [d for d, ino in _loaded_repo_dirs.items() if d != repo_dir or ino != inode]
    if not provided or not others:
        return
    for name in builtins.list(sys.modules):
        top = name.partition(".")[0]
        mod = sys.modules.get(name)
        origin = getattr(mod, "__file__", None)
        if top in provided and origin and any(_inside(origin, d) for d in others):
            del sys.modules[name]


def _import_hubconf(repo_dir):
    path = os.path.join(repo_dir, _repo.HUBCONF)
    if not os.path.isfile(path):
        raise InvalidRepo(f"hub: {repo_dir} has no {_repo.HUBCONF}")
    _forget_other_repos_modules(repo_dir)
    _loaded_repo_dirs[repo_dir] = os.stat(repo_dir).st_ino
    spec = importlib.util.spec_from_file_location("hubconf", path)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get("hubconf")
    sys.modules["hubconf"] = module  # some decorators (dataclass) look their module up
    try:
        with _on_sys_path(repo_dir):
            spec.loader.exec_module(module)
    finally:
        if previous is None:
            sys.modules.pop("hubconf", None)
        else:
            sys.modules["hubconf"] = previous
    module.__hub_dir__ = repo_dir
    return module


def _init_hub(repo_info, git_host=DEFAULT_GIT_HOST, use_cache=True, commit=None,
              protocol=DEFAULT_PROTOCOL):
    repo_dir = _repo.resolve(repo_info, git_host, use_cache, commit, protocol)
    return _import_hubconf(repo_dir)


def import_module(repo_info, git_host=DEFAULT_GIT_HOST, use_cache=True, commit=None,
                  protocol=DEFAULT_PROTOCOL):
    """Fetches the repository (see :func:`load`) and returns its ``hubconf.py`` as a module."""
    return _init_hub(repo_info, git_host, use_cache, commit, protocol)


def _entry_names(module):
    return [n for n in dir(module) if not n.startswith("__") and callable(getattr(module, n))]


def _get_entry(module, entry):
    fn = getattr(module, entry, None) if isinstance(entry, str) else None
    if fn is None or entry.startswith("__") or not callable(fn):
        raise RuntimeError(f"Cannot find callable {entry!r} in hubconf.py of "
                           f"{module.__hub_dir__} (its entry points: "
                           f"{', '.join(_entry_names(module)) or 'none'})")
    return fn


def _module_exists(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _check_dependencies(module):
    deps = getattr(module, HUBDEPENDENCY, None) or []
    if isinstance(deps, str):
        deps = [deps]
    with _on_sys_path(module.__hub_dir__):
        missing = [d for d in deps if not _module_exists(d)]
    if missing:
        raise RuntimeError(f"Missing dependencies: {', '.join(missing)} (required by the "
                           f"'{HUBDEPENDENCY}' of {os.path.join(module.__hub_dir__, 'hubconf.py')}"
                           "; install them and retry)")


def list(repo_info, git_host=DEFAULT_GIT_HOST, use_cache=True, commit=None,
         protocol=DEFAULT_PROTOCOL):
    """Lists the entry points of the repository's ``hubconf.py``: its callables whose names do
    not start with ``__``, sorted.

    :param repo_info: ``"owner/name[:ref]"`` on ``git_host`` (ref defaults to ``master``), a git
        URL (``...#ref`` picks a ref), or a local directory holding ``hubconf.py``.
    :param git_host: host of ``owner/name`` repositories (default ``github.com``); may carry
        ``http://`` or ``https://`` and ``:port``.
    :param use_cache: reuse a repository already in the cache (no network access) instead of
        fetching it again.
    :param commit: a commit (or branch/tag) to fetch instead of the ref.
    :param protocol: ``"HTTPS"`` (download the archive) or ``"SSH"`` (``git clone``).
    """
    return _entry_names(_init_hub(repo_info, git_host, use_cache, commit, protocol))


def load(repo_info, entry, *args, git_host=DEFAULT_GIT_HOST, use_cache=True, commit=None,
         protocol=DEFAULT_PROTOCOL, **kwargs):
    """Calls the entry point ``entry`` of the repository's ``hubconf.py`` with ``*args`` and
    ``**kwargs`` (``pretrained=True`` for weights when the entry is decorated with
    :class:`pretrained`) and returns what it returns. The ``dependencies`` list of
    ``hubconf.py`` is checked first: a missing module raises ``RuntimeError`` naming it.
    Repository arguments as in :func:`list`."""
    module = _init_hub(repo_info, git_host, use_cache, commit, protocol)
    fn = _get_entry(module, entry)
    _check_dependencies(module)
    with _on_sys_path(module.__hub_dir__):  # lets the entry import its siblings lazily
        return fn(*args, **kwargs)


def help(repo_info, entry, git_host=DEFAULT_GIT_HOST, use_cache=True, commit=None,
         protocol=DEFAULT_PROTOCOL):
    """Returns the docstring of the entry point ``entry``. Arguments as in :func:`list`."""
    module = _init_hub(repo_info, git_host, use_cache, commit, protocol)
    return _get_entry(module, entry).__doc__


# ----------------------------------------------------------------------------- weights
def _expected_hash(filename, hash_prefix, check_hash=True):
    """(sha256 prefix to verify or None, where it came from) for a download."""
    if hash_prefix is not None:
        if not isinstance(hash_prefix, str) or not _HEX.fullmatch(hash_prefix):
            raise ValueError(f"hub: hash_prefix must be a string of hex digits, got "
                             f"{hash_prefix!r}")
        return hash_prefix.lower(), " (hash_prefix)"
    m = _HASH_IN_NAME.fullmatch(filename) if check_hash else None
    if m is None:
        return None, ""
    return m.group(1), (f" (carried by the file name {filename!r}, torch-hub style; pass "
                        "check_hash=False if those digits are not a sha256 prefix)")


def _cached_name(url):
    base = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    base = re.sub(r"[^A-Za-z0-9_.+-]", "_", base).lstrip(".") or "download"
    # a prefix from the whole URL keeps same-named files from different URLs apart
    return hashlib.sha256(url.encode()).hexdigest()[:6] + "_" + base[-200:], base


def _load_weights(path, url, allow_pickle):
    from ..serialization import load as _safe_load, _looks_like_pickle
    if allow_pickle:
        return _safe_load(path, pickle_module=pickle, allow_pickle=True)
    try:
        return _safe_load(path)
    except ValueError as e:
        with open(path, "rb") as f:
            is_pickle = _looks_like_pickle(f.read(2))
        if not is_pickle:
            raise
        raise ValueError(f"hub: {url} (cached as {path}) is a pickle file, which tianyuan does "
                         "not load by default: unpickling runs code contained in the file. If "
                         "you trust its source, pass allow_pickle=True to "
                         "hub.load_serialized_obj_from_url or hub.pretrained") from e


def load_serialized_obj_from_url(url, model_dir=None, *, hash_prefix=None, check_hash=True,
                                 allow_pickle=False, timeout=None, progress=True):
    """Downloads ``url`` once into ``model_dir`` (default ``<cache>/serialized``) and returns
    the object loaded from it with :func:`tianyuan.load`.

    The cached name is the first 6 hex digits of the URL's sha256, ``_``, and the URL's file
    name (MegEngine's naming); a later call with the same URL reads that file and makes no
    request. ``hash_prefix`` (or, unless ``check_hash=False``, a torch-hub style
    ``name-<hex>.ext`` file name) gives the leading hex digits the file's sha256 must have.
    A failed download (HTTP error, timeout after ``timeout`` seconds of silence, truncated
    body, wrong hash) raises :class:`~tianyuan.hub.exceptions.DownloadError` and leaves
    nothing in the cache. Pickle
    files are refused unless ``allow_pickle=True`` (unsafe: only for sources you trust).
    Progress is drawn on stderr when it is a terminal and ``progress`` is true.
    """
    _download.check_url(url)
    if model_dir is None:
        model_dir = os.path.join(_cache.get_home(), "serialized")
    cached, base = _cached_name(url)
    expected, hint = _expected_hash(base, hash_prefix, check_hash)
    path = os.path.join(os.path.abspath(os.path.expanduser(model_dir)), cached)
    if not os.path.isfile(path):
        _download.download(url, path, timeout=timeout, hash_prefix=expected, progress=progress,
                           hash_hint=hint)
    return _load_weights(path, url, allow_pickle)


class pretrained:
    """Decorator for an entry point that builds a model: it gains a ``pretrained=False``
    keyword, and with ``pretrained=True`` the weights at ``url`` are fetched (once, see
    :func:`load_serialized_obj_from_url`) and loaded with ``model.load_state_dict``.

    ``hash_prefix``, ``check_hash`` and ``allow_pickle`` are passed to
    :func:`load_serialized_obj_from_url`.

    >>> @pretrained("https://example.com/weights/tiny-0123abcd.tyck")  # doctest: +SKIP
    ... def tiny(**kwargs):
    ...     return TinyNet(**kwargs)
    """

    def __init__(self, url, *, hash_prefix=None, check_hash=True, allow_pickle=False):
        _download.check_url(url)
        _expected_hash("", hash_prefix)  # validates it
        self.url, self.hash_prefix, self.check_hash = url, hash_prefix, check_hash
        self.allow_pickle = allow_pickle

    def __call__(self, func):
        @functools.wraps(func)
        def pretrained_model_func(*args, pretrained=False, **kwargs):
            model = func(*args, **kwargs)
            if pretrained:
                weights = load_serialized_obj_from_url(
                    self.url, hash_prefix=self.hash_prefix, check_hash=self.check_hash,
                    allow_pickle=self.allow_pickle)
                model.load_state_dict(weights)
            return model

        pretrained_model_func.url = self.url
        return pretrained_model_func
