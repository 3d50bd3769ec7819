"""Checkpoints: ``tianyuan.save(obj, f)`` and ``tianyuan.load(f)``.

MegEngine's ``save``/``load`` pickle the object and write the file in place: loading a file runs
whatever code it contains, and a crash during ``save`` destroys the previous checkpoint.
Tianyuan keeps the names and does the safe thing:

* **No pickle.** ``save`` writes a container of its own design (below) that can only describe
  nested ``dict``/``OrderedDict``/``list``/``tuple``/``str``/``int``/``float``/``bool``/``None``/
  ``bytes`` values, numpy arrays and scalars, and tianyuan ``Tensor``/``Parameter`` objects.
  ``load`` never calls pickle unless you pass **both** ``pickle_module=pickle`` and
  ``allow_pickle=True`` (for old MegEngine ``.pkl`` files). **That opt-in is unsafe: unpickling a
  file runs arbitrary code from it. Use it only for files you made yourself.**
* **Atomic, durable writes** when ``f`` is a path: the data goes to a temporary file in the same
  directory, which is flushed and fsynced, then renamed over the target with ``os.replace`` and
  the directory is fsynced. A process killed at any instant leaves either the old complete file
  or the new complete file under the final name, never a partial one. Temporary files left by a
  killed ``save`` (``.<name>.tytmp-<pid>-<random>``) are removed by the next ``save`` to the same
  path once their process is gone. When ``f`` is a file object, bytes are written to it in order
  and atomicity is the caller's business.
* **Validated loads.** Every field is checked before use; truncated, bit-flipped or foreign files
  raise ``ValueError`` naming the problem.

File layout (all integers little-endian)::

    offset 0   magic  b"\\x89TYCKPT\\n"                              8 bytes
           8   major version (u16) = 1, minor version (u16) = 0     4 bytes
          12   flags (u32), must be 0                              4 bytes
          16   header length H (u64)                               8 bytes
          24   data length D (u64)                                 8 bytes
          32   header: UTF-8 JSON, H bytes
               zero padding up to the next multiple of 64
        P      data: D bytes; every tensor blob starts at a multiple of 64 (relative to P,
               and P itself is a multiple of 64)
        P+D    CRC32 (zlib.crc32) of bytes [0, P+D) (u32), 4 zero bytes, b"TYCKEND\\0"

The header is ``{"root": <value>, "tensors": [<entry>...]}``. Values: JSON strings, integers,
``true``/``false``/``null`` and lists stand for themselves; other types are one-key objects:
``{"$f": float.hex()}``, ``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}``,
``{"$odict": [...]}``, ``{"$bytes": base64}``, ``{"$t": index}`` (a tensor entry). A tensor
entry is ``{"kind": "ndarray"|"npscalar"|"tensor"|"parameter", "dtype": name, "shape": [...],
"offset": o, "nbytes": n}`` (optionally ``"name"`` for named tensors).

>>> import io, numpy as np, tianyuan as ty
>>> buf = io.BytesIO()
>>> ty.save({"w": ty.Tensor([1.0, 2.0]), "step": 3}, buf)
>>> _ = buf.seek(0)
>>> out = ty.load(buf)
>>> out["step"], out["w"].numpy().tolist()
(3, [1.0, 2.0])
"""
import base64
import collections
import glob
import io
import json
import os
import stat
import struct
import zlib

import numpy as np

__all__ = ["save", "load"]

MAGIC = b"\x89TYCKPT\n"
END_MAGIC = b"TYCKEND\x00"
MAJOR, MINOR = 1, 0
ALIGN = 64
_PREFIX = struct.Struct("<8sHHIQQ")   # magic, major, minor, flags, header_len, data_len
_TRAILER = struct.Struct("<II8s")     # crc32, reserved, end magic
MAX_HEADER_BYTES = 256 << 20          # header (JSON) length cap
MAX_NDIM = 32
MAX_DEPTH = 256                       # nesting depth cap for the decoded structure
_KINDS = ("ndarray", "npscalar", "tensor", "parameter")

# dtype names accepted in a file -> numpy dtype used to read the bytes (little-endian).
_FILE_DTYPES = {
    "bool": np.dtype("bool"), "int8": np.dtype("int8"), "uint8": np.dtype("uint8"),
    "int16": np.dtype("<i2"), "uint16": np.dtype("<u2"), "int32": np.dtype("<i4"),
    "uint32": np.dtype("<u4"), "int64": np.dtype("<i8"), "uint64": np.dtype("<u8"),
    "float16": np.dtype("<f2"), "float32": np.dtype("<f4"), "float64": np.dtype("<f8"),
    "complex64": np.dtype("<c8"), "complex128": np.dtype("<c16"),
    "bfloat16": np.dtype("<u2"),  # raw bits; only for tensors
}
_TENSOR_DTYPES = ("bool", "int8", "uint8", "int16", "int32", "int64", "float16", "float32",
                  "float64", "bfloat16")


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


# ------------------------------------------------------------------------------------ encode
class _Encoder:
    def __init__(self):
        self.entries = []
        self.blobs = []
        self.size = 0
        self._seen = 0

    def _add_blob(self, raw, kind, dtype, shape, name=None):
        offset = _align(self.size)
        entry = {"kind": kind, "dtype": dtype, "shape": [int(s) for s in shape],
                 "offset": offset, "nbytes": len(raw)}
        if name is not None:
            entry["name"] = str(name)
        self.blobs.append((offset, raw))
        self.size = offset + len(raw)
        self.entries.append(entry)
        return {"$t": len(self.entries) - 1}

    def _array(self, a, kind, path):
        if a.dtype.name not in _FILE_DTYPES or a.dtype.kind not in "biufc":
            raise TypeError(f"tianyuan.save: numpy dtype {a.dtype} at {path} is not supported")
        le = a.astype(a.dtype.newbyteorder("<"), copy=False)
        raw = np.ascontiguousarray(le).tobytes()
        return self._add_blob(raw, kind, a.dtype.name, a.shape)

    def encode(self, obj, path="obj", depth=0):
        from .tensor import Tensor, Parameter
        if depth > MAX_DEPTH:
            raise ValueError(f"tianyuan.save: structure nested deeper than {MAX_DEPTH} at {path}")
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return {"$f": float(obj).hex()}
        if isinstance(obj, (bytes, bytearray)):
            return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
        if isinstance(obj, Tensor):
            kind = "parameter" if isinstance(obj, Parameter) else "tensor"
            try:
                name = obj.name
            except AttributeError:  # a Tensor without an instance dict has no name
                name = None
            return self._add_blob(obj._bytes(), kind, str(obj.dtype), obj.shape, name)
        if isinstance(obj, np.ndarray):
            return self._array(obj, "ndarray", path)
        if isinstance(obj, np.generic):
            return self._array(np.asarray(obj), "npscalar", path)
        if isinstance(obj, tuple):
            return {"$tuple": [self.encode(v, f"{path}[{i}]", depth + 1)
                               for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.encode(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj)]
        if isinstance(obj, dict):
            tag = "$odict" if isinstance(obj, collections.OrderedDict) else "$dict"
            items = []
            for k, v in obj.items():
                if not (k is None or isinstance(k, (bool, int, float, str, bytes, tuple))):
                    raise TypeError(f"tianyuan.save: dict key of type {type(k).__name__} at "
                                    f"{path} is not supported")
                items.append([self.encode(k, f"{path}.key", depth + 1),
                              self.encode(v, f"{path}[{k!r}]", depth + 1)])
            return {tag: items}
        raise TypeError(f"tianyuan.save: cannot save an object of type "
                        f"{type(obj).__module__}.{type(obj).__qualname__} at {path} (supported: "
                        "dict, list, tuple, str, int, float, bool, None, bytes, numpy arrays, "
                        "Tensors)")


def _serialize_chunks(obj):
    """Yields the file's bytes in chunks (header first, then blobs, then the trailer)."""
    enc = _Encoder()
    root = enc.encode(obj)
    header = json.dumps({"root": root, "tensors": enc.entries}, separators=(",", ":"),
                        ensure_ascii=False, allow_nan=False).encode("utf-8")
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(f"tianyuan.save: header of {len(header)} bytes exceeds the limit of "
                         f"{MAX_HEADER_BYTES}")
    data_len = enc.size
    prefix = _PREFIX.pack(MAGIC, MAJOR, MINOR, 0, len(header), data_len)
    pad = _align(_PREFIX.size + len(header)) - (_PREFIX.size + len(header))
    crc = 0
    first = prefix + header + b"\0" * pad
    crc = zlib.crc32(first, crc)
    yield first
    pos = 0
    for offset, raw in enc.blobs:
        if offset > pos:
            gap = b"\0" * (offset - pos)
            crc = zlib.crc32(gap, crc)
            yield gap
        crc = zlib.crc32(raw, crc)
        yield raw
        pos = offset + len(raw)
    yield _TRAILER.pack(crc & 0xFFFFFFFF, 0, END_MAGIC)


def _temp_prefix(path):
    d, base = os.path.split(path)
    return os.path.join(d, f".{base}.tytmp-")


def _clean_stale_temps(path):
    """Removes temp files of earlier saves to ``path`` whose writer process is gone."""
    prefix = _temp_prefix(path)
    for tmp in glob.glob(glob.escape(prefix) + "*"):
        rest = tmp[len(prefix):]
        try:
            pid = int(rest.split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # that writer is still alive (a concurrent save)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(obj, f, pickle_module=None, pickle_protocol=None):
    """Saves ``obj`` to ``f`` (a path or a writable binary file object) in tianyuan's safe
    checkpoint format (see the module documentation). Never pickles: ``pickle_module`` and
    ``pickle_protocol`` are accepted for MegEngine compatibility and ignored.

    With a path, the write is atomic and durable (temp file + fsync + ``os.replace`` + directory
    fsync), so the previous file survives a crash at any point of the save.
    """
    del pickle_module, pickle_protocol
    chunks = _serialize_chunks(obj)
    first = next(chunks)  # encode the whole structure (raises TypeError) before touching disk
    if isinstance(f, (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(f))
        d = os.path.dirname(path)
        _clean_stale_temps(path)
        tmp = _temp_prefix(path) + f"{os.getpid()}-{os.urandom(6).hex()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o666)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(first)
                for c in chunks:
                    out.write(c)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(d)
    else:
        f.write(first)
        for c in chunks:
            f.write(c)
        if hasattr(f, "flush"):
            f.flush()


# ------------------------------------------------------------------------------------ decode
class _Decoder:
    def __init__(self, name, tensors, data, data_off):
        self.name = name
        self.tensors = tensors
        self.data = data
        self.data_off = data_off
        self.cache = {}

    def bad(self, msg):
        return ValueError(f"{self.name}: corrupt tianyuan checkpoint: {msg}")

    def tensor(self, idx):
        if type(idx) is not int or not 0 <= idx < len(self.tensors):
            raise self.bad(f"tensor reference {idx!r} out of range")
        if idx in self.cache:
            raise self.bad(f"tensor {idx} is referenced twice")
        e = self.tensors[idx]
        kind, dtname, shape = e["kind"], e["dtype"], e["shape"]
        start = self.data_off + e["offset"]
        raw = np.frombuffer(self.data, dtype=_FILE_DTYPES[dtname],
                            count=e["nbytes"] // _FILE_DTYPES[dtname].itemsize, offset=start)
        arr = raw.reshape(shape)
        if kind in ("ndarray", "npscalar"):
            arr = arr.astype(arr.dtype.newbyteorder("="), copy=True)
            out = arr[()] if kind == "npscalar" else arr
        else:
            from .tensor import Tensor, Parameter
            cls = Parameter if kind == "parameter" else Tensor
            if dtname == "bfloat16":  # bits -> float32 exactly, then narrowed (exact) to bf16
                f32 = (arr.astype(np.uint32) << 16).view(np.float32)
                out = cls(f32, dtype="bfloat16")
            else:
                out = cls(arr.astype(arr.dtype.newbyteorder("="), copy=True), dtype=dtname)
            if e.get("name") is not None:
                try:
                    out.name = e["name"]
                except AttributeError:
                    pass
        self.cache[idx] = True
        return out

    def decode(self, v, depth=0):
        if depth > MAX_DEPTH:
            raise self.bad(f"structure nested deeper than {MAX_DEPTH}")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v
        if isinstance(v, list):
            return [self.decode(x, depth + 1) for x in v]
        if isinstance(v, dict) and len(v) == 1:
            (tag, body), = v.items()
            if tag == "$f" and isinstance(body, str):
                try:
                    return float.fromhex(body)
                except ValueError:
                    raise self.bad(f"bad float literal {body[:40]!r}") from None
            if tag == "$tuple" and isinstance(body, list):
                return tuple(self.decode(x, depth + 1) for x in body)
            if tag in ("$dict", "$odict") and isinstance(body, list):
                out = collections.OrderedDict() if tag == "$odict" else {}
                for pair in body:
                    if not (isinstance(pair, list) and len(pair) == 2):
                        raise self.bad("dict item is not a [key, value] pair")
                    k = self.decode(pair[0], depth + 1)
                    try:
                        hash(k)
                    except TypeError:
                        raise self.bad(f"unhashable dict key of type {type(k).__name__}") \
                            from None
                    out[k] = self.decode(pair[1], depth + 1)
                return out
            if tag == "$bytes" and isinstance(body, str):
                try:
                    return base64.b64decode(body.encode("ascii"), validate=True)
                except (ValueError, UnicodeEncodeError):
                    raise self.bad("bad base64 bytes value") from None
            if tag == "$t":
                return self.tensor(body)
        raise self.bad(f"unknown value encoding {str(v)[:60]!r}")


def _is_int(x):
    return type(x) is int


def _validate_tensors(bad, tensors, data_len):
    if not isinstance(tensors, list):
        raise bad("'tensors' is not a list")
    spans = []
    for i, e in enumerate(tensors):
        if not isinstance(e, dict):
            raise bad(f"tensor entry {i} is not an object")
        unknown = set(e) - {"kind", "dtype", "shape", "offset", "nbytes", "name"}
        if unknown:
            raise bad(f"tensor entry {i} has unknown fields {sorted(unknown)}")
        kind, dtname, shape = e.get("kind"), e.get("dtype"), e.get("shape")
        off, nbytes = e.get("offset"), e.get("nbytes")
        if kind not in _KINDS:
            raise bad(f"tensor entry {i}: unknown kind {kind!r}")
        if not isinstance(dtname, str) or dtname not in _FILE_DTYPES:
            raise bad(f"tensor entry {i}: unknown dtype {dtname!r}")
        if kind in ("tensor", "parameter") and dtname not in _TENSOR_DTYPES:
            raise bad(f"tensor entry {i}: dtype {dtname} is not a tianyuan tensor dtype")
        if kind in ("ndarray", "npscalar") and dtname == "bfloat16":
            raise bad(f"tensor entry {i}: bfloat16 is only valid for tensors")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM:
            raise bad(f"tensor entry {i}: shape must be a list of at most {MAX_NDIM} dims")
        if kind == "npscalar" and shape:
            raise bad(f"tensor entry {i}: a numpy scalar must have shape []")
        numel = 1
        for s in shape:
            if not _is_int(s) or s < 0:
                raise bad(f"tensor entry {i}: invalid dimension {s!r} in shape {shape}")
            numel *= s
        if not _is_int(off) or not _is_int(nbytes) or off < 0 or nbytes < 0:
            raise bad(f"tensor entry {i}: invalid offset/nbytes")
        if numel * _FILE_DTYPES[dtname].itemsize != nbytes:
            raise bad(f"tensor entry {i}: shape {shape} of {dtname} needs "
                      f"{numel * _FILE_DTYPES[dtname].itemsize} bytes but nbytes is {nbytes}")
        if off % ALIGN:
            raise bad(f"tensor entry {i}: offset {off} is not {ALIGN}-byte aligned")
        if off + nbytes > data_len:
            raise bad(f"tensor entry {i}: bytes [{off}, {off + nbytes}) lie outside the data "
                      f"section of {data_len} bytes")
        if "name" in e and not (e["name"] is None or isinstance(e["name"], str)):
            raise bad(f"tensor entry {i}: name is not a string")
        spans.append((off, off + nbytes, i))
    spans.sort()
    for (a0, a1, ia), (b0, b1, ib) in zip(spans, spans[1:]):
        if b0 < a1:
            raise bad(f"tensor entries {ia} and {ib} overlap")


def _looks_like_pickle(head):
    return head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5


def _load_bytes(data, name):
    size = len(data)
    head = bytes(data[:_PREFIX.size])
    if not head.startswith(MAGIC[:len(head)]) or size < len(MAGIC):
        what = " (it looks like a pickle file; tianyuan.load never unpickles by default, see " \
               "load(..., pickle_module=pickle, allow_pickle=True))" \
            if _looks_like_pickle(head) else ""
        if head.startswith(MAGIC[:len(head)]):
            raise ValueError(f"{name}: truncated tianyuan checkpoint ({size} bytes)")
        raise ValueError(f"{name}: not a tianyuan checkpoint (bad magic){what}")
    if size < _PREFIX.size + _TRAILER.size:
        raise ValueError(f"{name}: truncated tianyuan checkpoint ({size} bytes, smaller than "
                         "the fixed header and trailer)")
    _, major, minor, flags, hlen, dlen = _PREFIX.unpack_from(data, 0)
    if major != MAJOR:
        raise ValueError(f"{name}: unsupported tianyuan checkpoint version {major}.{minor} "
                         f"(this build reads {MAJOR}.x)")
    if minor > MINOR or flags != 0:
        raise ValueError(f"{name}: tianyuan checkpoint version {major}.{minor} (flags {flags:#x})"
                         f" is newer than this build ({MAJOR}.{MINOR})")
    if hlen > MAX_HEADER_BYTES:
        raise ValueError(f"{name}: header length {hlen} exceeds the limit of {MAX_HEADER_BYTES}")
    data_off = _align(_PREFIX.size + hlen)
    expected = data_off + dlen + _TRAILER.size
    if expected != size:
        kind = "truncated" if size < expected else "has trailing bytes"
        raise ValueError(f"{name}: corrupt tianyuan checkpoint: {kind} (header says "
                         f"{expected} bytes, file has {size})")
    crc, reserved, end = _TRAILER.unpack_from(data, size - _TRAILER.size)
    if end != END_MAGIC or reserved != 0:
        raise ValueError(f"{name}: corrupt tianyuan checkpoint: bad end marker")
    actual = zlib.crc32(memoryview(data)[:size - _TRAILER.size]) & 0xFFFFFFFF
    if actual != crc:
        raise ValueError(f"{name}: corrupt tianyuan checkpoint: checksum mismatch (stored "
                         f"{crc:#010x}, computed {actual:#010x})")

    def bad(msg):
        return ValueError(f"{name}: corrupt tianyuan checkpoint: {msg}")

    try:
        header = json.loads(bytes(data[_PREFIX.size:_PREFIX.size + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise bad(f"header is not valid JSON ({type(e).__name__})") from None
    if not isinstance(header, dict) or set(header) != {"root", "tensors"}:
        raise bad("header must be an object with exactly 'root' and 'tensors'")
    if any(data[_PREFIX.size + hlen:data_off]):
        raise bad("non-zero header padding")
    _validate_tensors(bad, header["tensors"], dlen)
    dec = _Decoder(name, header["tensors"], data, data_off)
    try:
        return dec.decode(header["root"])
    except RecursionError:
        raise bad("structure nested too deeply") from None


def _read_upto(fh, n):
    """Reads up to ``n`` bytes from ``fh`` in bounded chunks (a short result means EOF)."""
    parts, got = [], 0
    while got < n:
        chunk = fh.read(min(n - got, 1 << 24))
        if not isinstance(chunk, (bytes, bytearray)):
            raise TypeError("tianyuan.load: the file object must be opened in binary mode")
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _expected_size(head, name, size):
    """Checks the fixed prefix ``head`` and returns the file size its header declares.

    ``size`` is the real size when known (a regular file), else None. Nothing beyond the prefix
    is read before this check, so a foreign or lying file costs at most a prefix read.
    """
    if len(head) < _PREFIX.size or not head.startswith(MAGIC):
        _load_bytes(head, name)  # raises the precise bad-magic / truncated error
    _, major, minor, flags, hlen, dlen = _PREFIX.unpack_from(head, 0)
    if major != MAJOR or minor > MINOR or flags != 0 or hlen > MAX_HEADER_BYTES:
        _load_bytes(head + bytes(_TRAILER.size), name)  # raises the version/limit error
    expected = _align(_PREFIX.size + hlen) + dlen + _TRAILER.size
    if size is not None and expected != size:
        kind = "truncated" if size < expected else "has trailing bytes"
        raise ValueError(f"{name}: corrupt tianyuan checkpoint: {kind} (header says "
                         f"{expected} bytes, file has {size})")
    return expected


def _regular_size(fd, name):
    """Size of the regular file open on ``fd``; anything else (FIFO, device, directory,
    socket) is refused, since reading it could block forever or never end."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"tianyuan.load: {name} is not a regular file (a FIFO, device, "
                         "directory or socket cannot hold a checkpoint)")
    return st.st_size


def _stream_size(f, name):
    """The remaining size of file object ``f`` when it is backed by a regular file, else None.
    A file object on a non-regular file is refused like a path."""
    try:
        fd = f.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    size = _regular_size(fd, name)
    try:
        return size - f.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _read_checkpoint(fh, name, size):
    """Reads one checkpoint from ``fh``: the prefix first, then exactly the declared size."""
    head = _read_upto(fh, _PREFIX.size)
    expected = _expected_size(head, name, size)
    data = head + _read_upto(fh, expected - len(head))
    if len(data) < expected:
        raise ValueError(f"{name}: corrupt tianyuan checkpoint: truncated (header says "
                         f"{expected} bytes, file has {len(data)})")
    if size is None and _read_upto(fh, 1):
        raise ValueError(f"{name}: corrupt tianyuan checkpoint: has trailing bytes (header "
                         f"says {expected} bytes)")
    return _load_bytes(data, name)


def _open_regular(name):
    """Opens ``name`` for reading without blocking on a FIFO; returns (file, size)."""
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        size = _regular_size(fd, name)
    except BaseException:
        os.close(fd)
        raise
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), size


def _unpickle(fh, head, name, start, pickle_module, allow_pickle):
    """A file without the magic, read while ``pickle_module`` or ``allow_pickle`` was given:
    unpickled only when both were. ``head`` holds its first bytes, already read from ``fh``,
    and ``start`` is where ``fh`` began (None when it cannot seek)."""
    if not allow_pickle:
        raise ValueError(f"{name}: not a tianyuan checkpoint; pickle_module was given but "
                         "unpickling is disabled by default because it can run arbitrary code "
                         "from the file (pass allow_pickle=True only for files you trust)")
    if pickle_module is None:
        raise ValueError("tianyuan.load: allow_pickle=True needs pickle_module=pickle")
    # UNSAFE by explicit request: this runs whatever code the file contains.
    if start is not None:
        fh.seek(start)
        return pickle_module.load(fh)
    return pickle_module.load(io.BytesIO(head + _read_upto(fh, 1 << 62)))


def load(f, map_location=None, pickle_module=None, *, allow_pickle=False):
    """Loads an object saved by :func:`save` from ``f`` (a path or a readable binary file).

    Tensors come back as ``Tensor`` (``Parameter`` if saved as one) with their dtype, numpy
    arrays as writable numpy arrays. ``map_location`` is accepted for MegEngine compatibility;
    tianyuan has only the CPU device, so it has no effect.

    Malformed input (truncated, corrupted, foreign or newer-version files) raises ``ValueError``
    naming the file and the problem. Only the fixed 32-byte prefix is read before the magic,
    version and declared sizes are checked against the file's size, and a path or file object
    that is not a regular file (a FIFO, ``/dev/zero``, a directory) is refused with
    ``ValueError`` before anything is read. A pickle file is rejected with "not a tianyuan
    checkpoint" and is **never unpickled** unless you pass ``pickle_module=pickle,
    allow_pickle=True``.

    .. warning:: ``allow_pickle=True`` is UNSAFE: unpickling runs arbitrary code contained in
       the file. Use it only to read MegEngine pickle checkpoints that you created yourself.
    """
    del map_location
    if isinstance(f, (str, bytes, os.PathLike)):
        name = os.fsdecode(f)
        fh, size = _open_regular(name)
        with fh:
            return _load_from(fh, name, size, 0, pickle_module, allow_pickle)
    name = getattr(f, "name", None)
    name = name if isinstance(name, str) else "<file object>"
    size = _stream_size(f, name)
    try:
        start = f.tell() if hasattr(f, "seek") else None
    except (OSError, io.UnsupportedOperation):
        start = None
    return _load_from(f, name, size, start, pickle_module, allow_pickle)


def _load_from(fh, name, size, start, pickle_module, allow_pickle):
    head = _read_upto(fh, len(MAGIC))
    if head != MAGIC and len(head) == len(MAGIC) and (allow_pickle or pickle_module is not None):
        return _unpickle(fh, head, name, start, pickle_module, allow_pickle)
    return _read_checkpoint(_PrefixedReader(head, fh), name, size)


class _PrefixedReader:
    """A reader that returns ``head`` before the rest of ``fh`` (the magic already read)."""

    def __init__(self, head, fh):
        self.head, self.fh = head, fh

    def read(self, n):
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.fh.read(n)
