"""Errors raised by ``tianyuan.hub`` (MegEngine's names, plus the download errors)."""


class FetcherError(Exception):
    """A repository could not be fetched."""


class InvalidRepo(FetcherError):
    """The repository given is malformed, missing, or has no ``hubconf.py``."""


class InvalidGitHost(FetcherError):
    """The git host given is malformed."""


class GitPullError(FetcherError):
    """``git clone`` failed (or git is not installed)."""


class GitCheckoutError(FetcherError):
    """The requested commit, branch or tag does not exist in the repository."""


class InvalidProtocol(FetcherError):
    """The protocol is neither HTTPS nor SSH."""


class DownloadError(FetcherError, OSError):
    """An HTTP download failed: an HTTP error status, a refused connection, a server that
    stopped answering (timeout) or a body shorter than its Content-Length. Nothing is left
    under the destination name."""


class HashMismatchError(DownloadError):
    """The downloaded bytes do not have the expected sha256 prefix."""
