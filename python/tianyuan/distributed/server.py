"""Rendezvous: a small TCP key-value store (MegEngine's ``Server`` / ``Client``).

Rank 0 (or the launcher) runs a :class:`Server`; every rank talks to it through a
:class:`Client`. The store carries only small values (world size checks, seeds, NCCL unique ids,
``Client.user_set``/``user_get``): the collectives themselves run on MPI or NCCL.

Messages are length-prefixed JSON, never pickle, so a stray connection cannot run code in
the server. Every blocking call has a timeout and says what it waited for.

>>> s = Server(0)
>>> c = Client("localhost", s.py_server_port)
>>> c.user_set("k", [1, 2]); c.user_get("k")
[1, 2]
>>> s.close()
"""
import base64
import json
import socket
import struct
import threading
import time

__all__ = ["Server", "Client", "StoreError", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 300.0  # seconds; TY_DIST_TIMEOUT overrides it (see group.py)
_MAX_MSG = 16 << 20      # a store value is small; larger messages are refused
_ABORT_KEY = "__abort__"


class StoreError(RuntimeError):
    """The store timed out, was aborted by a rank, or its connection broke."""


def _send(sock, obj):
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack("!I", len(data)) + data)


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("store connection closed")
        buf += chunk
    return bytes(buf)


def _recv(sock):
    (n,) = struct.unpack("!I", _recv_exact(sock, 4))
    if n > _MAX_MSG:
        raise ConnectionError(f"store message of {n} bytes exceeds {_MAX_MSG}")
    return json.loads(_recv_exact(sock, n))


def _encode(value):
    if isinstance(value, (bytes, bytearray)):
        return {"b": base64.b64encode(bytes(value)).decode()}
    return {"j": value}


def _decode(box):
    return base64.b64decode(box["b"]) if "b" in box else box["j"]


class Server:
    """A key-value store served from a daemon thread of this process.

    port=0 picks a free port (``py_server_port``). ``close()`` stops it."""

    def __init__(self, port=0, host=""):
        self._data = {}
        self._cond = threading.Condition()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, int(port)))
        except OSError as e:
            self._sock.close()
            raise StoreError(f"Server: cannot listen on port {port}: {e}") from None
        self._sock.listen(128)
        self.py_server_port = self._sock.getsockname()[1]
        self.mm_server_port = self.py_server_port  # one port serves both roles here
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name="ty-dist-store",
                                        daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            while True:
                try:
                    req = _recv(conn)
                except (ConnectionError, OSError, ValueError):
                    return
                try:
                    reply = self._handle(req)
                except Exception as e:  # a malformed request answers an error, never kills
                    reply = {"err": f"bad store request: {type(e).__name__}: {e}"}
                try:
                    _send(conn, reply)
                except OSError:
                    return

    def _handle(self, req):
        op, key = req["op"], str(req.get("key", ""))
        with self._cond:
            if op == "set":
                self._data[key] = req["val"]
                self._cond.notify_all()
                return {"ok": True}
            if op == "setdefault":
                val = self._data.setdefault(key, req["val"])
                self._cond.notify_all()
                return {"val": val}
            if op == "add":
                cur = self._data.get(key, {"j": 0})["j"] + int(req["n"])
                self._data[key] = {"j": cur}
                self._cond.notify_all()
                return {"val": cur}
            if op == "get":
                return self._wait(lambda: key in self._data,
                                  lambda: {"val": self._data[key]}, req)
            if op == "wait_ge":
                n = int(req["n"])
                return self._wait(lambda: self._data.get(key, {"j": 0})["j"] >= n,
                                  lambda: {"val": self._data.get(key, {"j": 0})["j"]}, req)
            if op == "delete":
                self._data.pop(key, None)
                return {"ok": True}
            return {"err": f"unknown store op {op!r}"}

    def _wait(self, ready, answer, req):
        """Waits (holding the condition) for ready(), an abort, or the request's timeout."""
        deadline = time.monotonic() + float(req.get("timeout", DEFAULT_TIMEOUT))
        while not ready():
            if _ABORT_KEY in self._data:
                return {"abort": _decode(self._data[_ABORT_KEY])}
            left = deadline - time.monotonic()
            if left <= 0:
                return {"timeout": True}
            self._cond.wait(min(left, 1.0))
        return answer()

    def close(self):
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


class Client:
    """A connection to a :class:`Server` at (master_ip, port).

    Connecting retries until ``timeout`` seconds have passed (the server may start later than
    the client). Calls are serialised by a lock, so threads may share a client."""

    def __init__(self, master_ip="localhost", port=0, timeout=None):
        self.master_ip, self.port = master_ip, int(port)
        self.timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
        self._lock = threading.Lock()
        self._sock = self._connect()

    def _connect(self):
        deadline = time.monotonic() + self.timeout
        delay, last = 0.01, None
        while time.monotonic() < deadline:
            try:
                sock = socket.create_connection((self.master_ip, self.port), timeout=5)
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as e:
                last = e
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        raise StoreError(f"Client: no store server at {self.master_ip}:{self.port} after "
                         f"{self.timeout:g} s ({last})")

    def _call(self, what, **req):
        with self._lock:
            try:
                _send(self._sock, req)
                reply = _recv(self._sock)
            except (OSError, ConnectionError, ValueError) as e:
                raise StoreError(f"store {what}: connection to {self.master_ip}:{self.port} "
                                 f"lost ({e})") from None
        if "err" in reply:
            raise StoreError(f"store {what}: {reply['err']}")
        if "abort" in reply:
            raise StoreError(f"store {what}: job aborted: {reply['abort']}")
        if reply.get("timeout"):
            raise StoreError(f"store {what}: timed out after {req.get('timeout'):g} s")
        return reply.get("val")

    def _t(self, timeout):
        return self.timeout if timeout is None else float(timeout)

    # --- key-value ---
    def set(self, key, value):
        self._call(f"set {key!r}", op="set", key=key, val=_encode(value))

    def get(self, key, timeout=None):
        """The value of key, waiting up to timeout seconds for some rank to set it."""
        return _decode(self._call(f"get {key!r}", op="get", key=key, timeout=self._t(timeout)))

    def setdefault(self, key, value):
        """Sets key if absent; returns the value now stored (the first setter wins)."""
        return _decode(self._call(f"setdefault {key!r}", op="setdefault", key=key,
                                  val=_encode(value)))

    def add(self, key, n=1):
        return self._call(f"add {key!r}", op="add", key=key, n=int(n))

    def wait_ge(self, key, n, timeout=None, what=None):
        """Waits until the counter key reaches n; returns its value."""
        return self._call(what or f"wait {key!r} >= {n}", op="wait_ge", key=key, n=int(n),
                          timeout=self._t(timeout))

    def delete(self, key):
        self._call(f"delete {key!r}", op="delete", key=key)

    def abort(self, message):
        """Makes every blocked and future wait on this store fail with message."""
        self._call("abort", op="set", key=_ABORT_KEY, val=_encode(str(message)))

    # --- MegEngine's names ---
    def user_set(self, key, val):
        self.set("user/" + str(key), val)

    def user_get(self, key, timeout=None):
        return self.get("user/" + str(key), timeout)

    def get_mm_server_port(self):
        return self.port

    def barrier(self, name, world_size, timeout=None, rank=None):
        """Every one of world_size callers of barrier(name) returns once all have arrived."""
        n = self.add("barrier/" + name, 1)
        try:
            self.wait_ge("barrier/" + name, world_size, timeout,
                         what=f"barrier {name!r} ({n} of {world_size} ranks arrived"
                              + ("" if rank is None else f", rank {rank} waiting") + ")")
        except StoreError as e:
            arrived = self.add("barrier/" + name, 0)
            raise StoreError(f"{e}; {arrived} of {world_size} ranks arrived") from None

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass
