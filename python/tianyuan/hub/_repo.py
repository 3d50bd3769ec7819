"""Turning a ``repo_info`` into a local directory that holds ``hubconf.py``.

Three kinds of repository:

* a **local directory** (a path, or a ``str`` naming an existing directory with a
  ``hubconf.py``): used in place, nothing is copied;
* a **git URL** (``https://...``, ``ssh://...``, ``file://...``, ``git@host:path``, or anything
  ending in ``.git``), cloned with the system ``git``; a ref (branch, tag or commit) comes from
  ``commit=`` or a ``#ref`` suffix;
* ``"owner/name[:ref]"`` on ``git_host`` (MegEngine's form; the ref defaults to ``master``).
  With ``protocol="HTTPS"`` the archive ``<git_host>/<owner>/<name>/archive/<commit or ref>.zip``
  is downloaded; ``git_host`` may carry a scheme and port (``"http://127.0.0.1:8000"``), so a
  mirror or a test server can stand in for GitHub. With ``protocol="SSH"`` it is cloned from
  ``git@<git_host>:<owner>/<name>.git``.

Fetched repositories live in ``<cache>/hub/<readable name>_<hash>``; with ``use_cache=True`` an
existing copy is reused without any network access, with ``use_cache=False`` it is fetched
again and swapped in whole.
"""
import hashlib
import os
import re
import shutil
import stat
import subprocess
import urllib.parse

from . import _cache, _download
from .exceptions import (GitCheckoutError, GitPullError, InvalidGitHost, InvalidProtocol,
                         InvalidRepo)

HUBCONF = "hubconf.py"
DEFAULT_GIT_HOST = "github.com"
DEFAULT_BRANCH_NAME = "master"
DEFAULT_PROTOCOL = "HTTPS"
PROTOCOLS = ("HTTPS", "SSH")

_NAME = r"[A-Za-z0-9_.-]+"
_REF = r"[A-Za-z0-9_.][A-Za-z0-9_./+-]*"
_OWNER_NAME_RE = re.compile(rf"({_NAME})/({_NAME})(?::({_REF}))?")
_REF_RE = re.compile(_REF)
_HOST_RE = re.compile(r"(?:(https?)://)?"
                      r"([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                      r"(?::(\d{1,5}))?/?")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_RE = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:")
MAX_ARCHIVE_MEMBERS = 100000
# Unpacked bytes a repository archive may declare (a zip bomb is refused before writing).
MAX_ARCHIVE_BYTES = 4 << 30


def _short_hash(*parts):
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:12]


def _safe(text):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:60]


def _check_ref(ref, what):
    if ref is not None and (not isinstance(ref, str) or not _REF_RE.fullmatch(ref)
                            or ".." in ref):
        raise InvalidRepo(f"hub: {what} {ref!r} is not a valid branch, tag or commit name")
    return ref


def _is_git_url(text):
    return bool(_SCHEME_RE.match(text) or _SCP_RE.match(text)) or text.endswith(".git")


def _is_local(text):
    path = os.path.expanduser(text)
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, HUBCONF))


def resolve(repo_info, git_host=DEFAULT_GIT_HOST, use_cache=True, commit=None,
            protocol=DEFAULT_PROTOCOL):
    """Returns the absolute directory of the repository (fetching it if needed)."""
    if protocol not in PROTOCOLS:
        raise InvalidProtocol(f"hub: invalid protocol {protocol!r}; the value should be one of "
                              f"{', '.join(PROTOCOLS)}")
    if isinstance(repo_info, os.PathLike):
        repo_info = os.fspath(repo_info)
        if isinstance(repo_info, bytes):
            repo_info = os.fsdecode(repo_info)
        return _local(repo_info, commit)
    if not isinstance(repo_info, str) or not repo_info:
        raise InvalidRepo(f"hub: repo_info must be a non-empty string or path, got "
                          f"{repo_info!r}")
    if _is_git_url(repo_info) and not _is_local(repo_info):
        url, _, ref = repo_info.partition("#")
        ref = _check_ref(commit or ref or None, "ref")
        return _fetch_git(url, ref, use_cache)
    if _is_local(repo_info):
        return _local(repo_info, commit)
    m = _OWNER_NAME_RE.fullmatch(repo_info)
    if not m or m.group(1) in (".", "..") or m.group(2) in (".", ".."):
        if os.path.isdir(os.path.expanduser(repo_info)):
            raise InvalidRepo(f"hub: the directory {repo_info!r} has no {HUBCONF}")
        raise InvalidRepo(f"hub: repo_info {repo_info!r} is neither a directory with a "
                          f"{HUBCONF}, a git URL, nor 'owner/name[:ref]'")
    owner, name, ref = m.group(1), m.group(2), m.group(3) or DEFAULT_BRANCH_NAME
    _check_ref(ref, "ref")
    _check_ref(commit, "commit")
    if protocol == "SSH":
        host = _parse_host(git_host, allow_scheme=False)[1]
        url = f"git@{host}:{owner}/{name}.git"
        return _fetch_git(url, commit or ref, use_cache)
    return _fetch_archive(git_host, owner, name, ref, commit, use_cache)


def _local(path, commit):
    if commit is not None:
        raise InvalidRepo(f"hub: commit={commit!r} does not apply to the local directory "
                          f"{path!r} (check the ref out there, or pass a git URL)")
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise InvalidRepo(f"hub: {path!r} is not a directory")
    return path


def _parse_host(git_host, allow_scheme=True):
    m = _HOST_RE.fullmatch(git_host) if isinstance(git_host, str) else None
    if not m or (m.group(1) and not allow_scheme) or (m.group(3) and int(m.group(3)) > 65535):
        raise InvalidGitHost(f"hub: git_host {git_host!r} is malformed (expected a host name "
                             "or address, optionally with http:// or https:// and :port)")
    scheme = m.group(1) or "https"
    netloc = m.group(2) + (f":{m.group(3)}" if m.group(3) else "")
    return scheme, netloc


# ----------------------------------------------------------------------------- archives
def _fetch_archive(git_host, owner, name, ref, commit, use_cache):
    scheme, netloc = _parse_host(git_host)
    target = commit or ref
    url = (f"{scheme}://{netloc}/{owner}/{name}/archive/"
           f"{urllib.parse.quote(target, safe='/')}.zip")
    key = f"{_safe(owner)}_{_safe(name)}_{_safe(target)}_{_short_hash(url)}"

    def build(work):
        zip_path = os.path.join(work, "archive.zip")
        _download.download(url, zip_path)
        out = os.path.join(work, "tree")
        _extract_zip(zip_path, out, url)
        os.unlink(zip_path)
        entries = os.listdir(out)
        if len(entries) == 1 and os.path.isdir(os.path.join(out, entries[0])):
            return os.path.join(out, entries[0])  # GitHub's "<name>-<ref>/" top folder
        return out

    return _fetch_into(key, use_cache, build)


def _extract_zip(zip_path, out, url):
    import zipfile  # loaded only when an archive is fetched
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ARCHIVE_MEMBERS:
                raise InvalidRepo(f"hub: the archive from {url} has {len(infos)} members "
                                  f"(limit {MAX_ARCHIVE_MEMBERS})")
            for info in infos:
                _check_member(info, url)
            total = sum(info.file_size for info in infos)
            if total > MAX_ARCHIVE_BYTES:
                raise InvalidRepo(f"hub: the archive from {url} unpacks to {total} bytes "
                                  f"(limit {MAX_ARCHIVE_BYTES})")
            zf.extractall(out)
    except zipfile.BadZipFile as e:
        raise InvalidRepo(f"hub: the archive from {url} is not a valid zip file ({e})") from None


def _check_member(info, url):
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise InvalidRepo(f"hub: the archive from {url} has an unsafe member path {name!r}")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise InvalidRepo(f"hub: the archive from {url} has a symbolic link {name!r} "
                          "(refused: links could point outside the repository)")


# ----------------------------------------------------------------------------- git
def _git_env():
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"  # fail instead of waiting for a password
    return env


def _git(args, error, what):
    try:
        p = subprocess.run(["git", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=_git_env())
    except OSError as e:
        raise GitPullError(f"hub: could not run git: {e}") from None
    if p.returncode:
        msg = p.stderr.decode("utf-8", "replace").strip()
        raise error(f"hub: {what} failed (git exit status {p.returncode}): {msg}")


def _fetch_git(url, ref, use_cache):
    if url.startswith("-"):
        raise InvalidRepo(f"hub: {url!r} is not a git URL")
    if shutil.which("git") is None:
        raise GitPullError(f"hub: cloning {url} needs the system 'git', which is not on PATH")
    base = _safe(os.path.basename(url.rstrip("/")).removesuffix(".git")) or "repo"
    key = f"git_{base}_{_safe(ref) if ref else 'HEAD'}_{_short_hash(url, ref or '')}"

    def build(work):
        dst = os.path.join(work, "tree")
        if ref is None:
            _git(["clone", "--quiet", "--depth", "1", "--", url, dst], GitPullError,
                 f"cloning {url}")
        else:
            try:  # a branch or tag: a shallow clone is enough
                _git(["clone", "--quiet", "--depth", "1", "--branch", ref, "--", url, dst],
                     GitPullError, f"cloning {url} at {ref}")
            except GitPullError:  # a commit: full clone, then check it out
                shutil.rmtree(dst, ignore_errors=True)
                _git(["clone", "--quiet", "--no-checkout", "--", url, dst], GitPullError,
                     f"cloning {url}")
                _git(["-C", dst, "-c", "advice.detachedHead=false", "checkout", "--quiet",
                      "--detach", ref, "--"], GitCheckoutError,
                     f"checking out {ref!r} in {url}")
        shutil.rmtree(os.path.join(dst, ".git"), ignore_errors=True)
        return dst

    return _fetch_into(key, use_cache, build)


def _fetch_into(key, use_cache, build):
    root = _cache.hub_dir()
    final = os.path.join(root, key)
    if use_cache and os.path.isdir(final):
        return final
    os.makedirs(root, exist_ok=True)
    _cache.clean_stale_temps(root)
    work = _cache.make_temp_dir(root, key)
    try:
        tree = build(work)
        _cache.install_dir(tree, final, replace=not use_cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
