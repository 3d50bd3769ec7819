"""Logging (MegEngine's ``megengine.logger``): named loggers under one level and one set of
handlers.

Every logger made by :func:`get_logger` writes to stderr with the package's format, does not
propagate to the root logger (a user's ``logging.basicConfig`` does not duplicate its lines),
and follows :func:`set_log_level` and :func:`set_log_file`. The initial level is INFO, or the
``TY_LOG_LEVEL`` environment variable (a level name such as DEBUG or a number).

>>> import tianyuan as ty
>>> log = ty.get_logger("tianyuan.example")
>>> log.name
'tianyuan.example'
"""
import logging
import os
import sys

__all__ = ["MegEngineLogFormatter", "get_logger", "set_log_level", "set_log_file",
           "enable_debug_log"]

_DEFAULT_NAME = "tianyuan"
_DATEFMT = "%d %H:%M:%S"


def _initial_level():
    v = os.environ.get("TY_LOG_LEVEL", "INFO").strip()
    if v.isdigit():
        return int(v)
    level = logging.getLevelName(v.upper())
    return level if isinstance(level, int) else logging.INFO


_state = {"level": _initial_level(), "loggers": [], "file_handlers": []}


class MegEngineLogFormatter(logging.Formatter):
    """``[day hh:mm:ss] LEVEL message`` (``file:line`` added at DEBUG); WARNING and ERROR are
    coloured when the stream is a terminal."""

    _COLORS = {logging.WARNING: "\x1b[1;33m", logging.ERROR: "\x1b[1;31m",
               logging.CRITICAL: "\x1b[1;31m"}

    def __init__(self, fmt=None, datefmt=_DATEFMT, color=None):
        super().__init__(fmt, datefmt)
        self.color = color

    def format(self, record):
        when = self.formatTime(record, self.datefmt)
        where = f" {record.filename}:{record.lineno}" if record.levelno <= logging.DEBUG else ""
        head = f"[{when}] {record.levelname}{where}"
        color = self._COLORS.get(record.levelno) if self.color else None
        if color:
            head = f"{color}{head}\x1b[0m"
        msg = f"{head} {record.getMessage()}"
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        return msg


def _stream_handler(formatter, stream=None):
    stream = sys.stderr if stream is None else stream
    h = logging.StreamHandler(stream)
    isatty = getattr(stream, "isatty", None)
    h.setFormatter(formatter(datefmt=_DATEFMT, color=bool(isatty and isatty())))
    return h


def get_logger(name=None, formatter=MegEngineLogFormatter):
    """The logger ``name`` (default "tianyuan"), set up on first use: a stderr handler with
    ``formatter``, the package's level and any file given to :func:`set_log_file`."""
    logger = logging.getLogger(name or _DEFAULT_NAME)
    if getattr(logger, "_tianyuan_init", False):
        return logger
    logger._tianyuan_init = True
    logger.propagate = False
    logger.setLevel(_state["level"])
    logger.handlers[:] = [_stream_handler(formatter)]
    for h in _state["file_handlers"]:
        logger.addHandler(h)
    _state["loggers"].append(logger)
    return logger


def _as_level(level):
    if isinstance(level, str):
        v = logging.getLevelName(level.upper())
        if isinstance(v, int):
            return v
    elif isinstance(level, int) and not isinstance(level, bool) and level >= 0:
        return level
    raise ValueError(f"set_log_level: expected a logging level (a non-negative int or a name "
                     f"such as 'DEBUG'), got {level!r}")


def set_log_level(level, update_existing=True):
    """Sets the level of loggers made from now on and, with ``update_existing``, of those made
    already; returns the previous package level."""
    level = _as_level(level)
    old, _state["level"] = _state["level"], level
    if update_existing:
        for logger in _state["loggers"]:
            logger.setLevel(level)
    return old


def set_log_file(fout, mode="a"):
    """Also writes every package logger's records to ``fout`` (a path, opened with ``mode``,
    or a writable text stream)."""
    if isinstance(fout, (str, os.PathLike)):
        fout = open(fout, mode)
    elif not hasattr(fout, "write"):
        raise TypeError(f"set_log_file: expected a path or a writable stream, got "
                        f"{type(fout).__name__}")
    h = logging.StreamHandler(fout)
    h.setFormatter(MegEngineLogFormatter(datefmt=_DATEFMT, color=False))
    _state["file_handlers"].append(h)
    for logger in _state["loggers"]:
        logger.addHandler(h)


def enable_debug_log():
    """Shorthand for ``set_log_level(logging.DEBUG)``."""
    set_log_level(logging.DEBUG)
