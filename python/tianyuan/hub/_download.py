"""HTTP(S) downloads into the cache: streamed into a temporary file, checked, then renamed.

A download ends in exactly one of two states: the complete, verified file under its final name,
or a :class:`DownloadError` and nothing new on disk. The checks: the HTTP status, a per-read
timeout (a server that accepts the connection and then says nothing), the body length against
``Content-Length``, and the sha256 prefix when one is expected.
"""
import hashlib
import os
import socket
import sys
import urllib.parse

from . import _cache
from .exceptions import DownloadError, HashMismatchError

HTTP_READ_TIMEOUT = 120  # seconds without a byte before a download is abandoned (MegEngine's)
CHUNK_SIZE = 1 << 16
_USER_AGENT = "tianyuan-hub"


def _human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} GiB"


class _Progress:
    """A one-line progress display on stderr, shown only when stderr is a terminal.

    It redraws when the whole percentage changes (or every 1 MiB when the size is unknown),
    so the output does not depend on timing."""

    def __init__(self, label, total, enabled):
        stream = sys.stderr
        try:
            tty = enabled and stream is not None and stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.stream = stream if tty else None
        self.label, self.total, self.done, self.last = label, total, 0, None

    def update(self, n):
        self.done += n
        if self.stream is None:
            return
        if self.total:
            mark = min(100, self.done * 100 // self.total)
            text = f"{mark:3d}% ({_human(self.done)} of {_human(self.total)})"
        else:
            mark = self.done >> 20
            text = _human(self.done)
        if mark != self.last:
            self.last = mark
            self.stream.write(f"\rDownloading {self.label}: {text}")
            self.stream.flush()

    def close(self):
        if self.stream is not None and self.last is not None:
            self.stream.write("\n")
            self.stream.flush()


def _label(parts):
    path = urllib.parse.unquote(parts.path).strip("/")
    return ("..." + path[-57:]) if len(path) > 60 else (path or parts.netloc)


def check_url(url):
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"hub: {url!r} is not an http:// or https:// URL")
    return parts


def _content_length(resp, url):
    value = resp.headers.get("Content-Length")
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise DownloadError(f"hub: downloading {url} failed: bad Content-Length {value!r}")
    return n


def _open(url, timeout):
    import http.client  # urllib.request and http.client load only when a download starts
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        raise DownloadError(f"hub: downloading {url} failed: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (socket.timeout, TimeoutError)):
            raise _timeout(url, timeout) from None
        raise DownloadError(f"hub: downloading {url} failed: {e.reason}") from None
    except (socket.timeout, TimeoutError):
        raise _timeout(url, timeout) from None
    except (http.client.HTTPException, OSError) as e:
        raise DownloadError(f"hub: downloading {url} failed: {type(e).__name__}: {e}") from None


def _timeout(url, timeout):
    return DownloadError(f"hub: downloading {url} timed out: the server sent nothing for "
                         f"{timeout} s")


def _stream(resp, out, url, timeout, progress):
    """Copies the body to ``out``; returns (bytes copied, sha256 hex digest)."""
    import http.client
    digest = hashlib.sha256()
    got = 0
    while True:
        try:
            chunk = resp.read(CHUNK_SIZE)
        except (socket.timeout, TimeoutError):
            raise _timeout(url, timeout) from None
        except http.client.IncompleteRead as e:
            got += len(e.partial)
            raise DownloadError(f"hub: downloading {url} failed: the connection closed after "
                                f"{got} bytes (truncated download)") from None
        except (http.client.HTTPException, OSError) as e:
            raise DownloadError(f"hub: downloading {url} failed after {got} bytes: "
                                f"{type(e).__name__}: {e}") from None
        if not chunk:
            return got, digest.hexdigest()
        out.write(chunk)
        digest.update(chunk)
        got += len(chunk)
        progress.update(len(chunk))


def download(url, dst, *, timeout=None, hash_prefix=None, progress=True, hash_hint=""):
    """Downloads ``url`` to the path ``dst`` atomically and returns ``dst``.

    ``hash_prefix``: the leading hex digits the file's sha256 must have (any length; case is
    ignored); ``hash_hint`` is added to the mismatch message (where the prefix came from).
    ``timeout``: seconds a connect or a read may wait (``HTTP_READ_TIMEOUT`` when None).
    Raises :class:`DownloadError` (:class:`HashMismatchError` for a wrong hash); ``dst`` is
    then untouched and no temporary file remains.
    """
    label = _label(check_url(url))
    timeout = HTTP_READ_TIMEOUT if timeout is None else timeout
    dst = os.path.abspath(dst)
    directory, base = os.path.split(dst)
    os.makedirs(directory, exist_ok=True)
    _cache.clean_stale_temps(directory)
    tmp = os.path.join(directory, _cache.temp_prefix(base) + os.urandom(6).hex())
    try:
        with _open(url, timeout) as resp:
            expected = _content_length(resp, url)
            bar = _Progress(label, expected, progress)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                         getattr(os, "O_CLOEXEC", 0), 0o644)
            with os.fdopen(fd, "wb") as out:
                try:
                    got, sha = _stream(resp, out, url, timeout, bar)
                finally:
                    bar.close()
                if expected is not None and got != expected:
                    raise DownloadError(f"hub: downloading {url} failed: got {got} of the "
                                        f"{expected} bytes announced by Content-Length "
                                        "(truncated download)")
                if hash_prefix and not sha.startswith(hash_prefix.lower()):
                    raise HashMismatchError(f"hub: {url} has sha256 {sha}, which does not "
                                            f"start with the expected {hash_prefix.lower()}"
                                            f"{hash_hint} (corrupt or substituted file); "
                                            "nothing was kept")
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return dst
