"""The rendezvous store (tianyuan.distributed.Server/Client): values, counters, barriers,
timeouts and aborts, with threads standing in for ranks (no MPI needed)."""
import socket
import struct
import threading
import time

import pytest

from tianyuan.distributed import Client, Server, StoreError


@pytest.fixture
def server():
    s = Server(0)
    yield s
    s.close()


def test_set_get_roundtrips_json_and_bytes(server):
    c = Client("localhost", server.py_server_port, timeout=5)
    c.set("a", {"x": [1, 2.5, "s"]})
    c.set("b", b"\x00\xffid")
    assert c.get("a") == {"x": [1, 2.5, "s"]}
    assert c.get("b") == b"\x00\xffid"
    c.user_set("k", 7)
    assert Client("localhost", server.py_server_port).user_get("k") == 7


def test_get_waits_for_a_later_set(server):
    c1 = Client("localhost", server.py_server_port, timeout=5)
    c2 = Client("localhost", server.py_server_port, timeout=5)
    threading.Timer(0.2, lambda: c2.set("late", 42)).start()
    assert c1.get("late", timeout=5) == 42


def test_get_times_out_naming_the_key(server):
    c = Client("localhost", server.py_server_port, timeout=5)
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="get 'never'.*timed out after 0.3"):
        c.get("never", timeout=0.3)
    assert time.monotonic() - t0 < 3


def test_setdefault_first_writer_wins_and_add_counts(server):
    c = Client("localhost", server.py_server_port, timeout=5)
    assert c.setdefault("ws", 2) == 2
    assert c.setdefault("ws", 3) == 2
    assert [c.add("n") for _ in range(3)] == [1, 2, 3]
    assert c.add("n", 0) == 3


def test_barrier_releases_all_and_times_out_with_the_count(server):
    port = server.py_server_port
    done = []

    def rank(r):
        Client("localhost", port, timeout=5).barrier("b", 3, timeout=5, rank=r)
        done.append(r)

    ts = [threading.Thread(target=rank, args=(r,)) for r in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert sorted(done) == [0, 1, 2]
    with pytest.raises(StoreError, match="1 of 2 ranks arrived"):
        Client("localhost", port).barrier("lonely", 2, timeout=0.3, rank=0)


def test_abort_wakes_a_waiting_rank_with_the_message(server):
    port = server.py_server_port
    waiter = Client("localhost", port, timeout=5)
    threading.Timer(0.2, lambda: Client("localhost", port).abort("rank 1 broke")).start()
    with pytest.raises(StoreError, match="aborted: rank 1 broke"):
        waiter.get("x", timeout=10)


def test_client_without_server_fails_after_its_timeout():
    s = socket.socket()
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(StoreError, match=f"no store server at localhost:{port}"):
        Client("localhost", port, timeout=0.3)


def test_garbage_does_not_kill_the_server(server):
    port = server.py_server_port
    raw = socket.create_connection(("localhost", port))
    raw.sendall(struct.pack("!I", 5) + b"{bad!")
    raw.close()
    raw = socket.create_connection(("localhost", port))
    raw.sendall(struct.pack("!I", 1 << 30))  # refused size
    raw.close()
    c = Client("localhost", port, timeout=5)
    with pytest.raises(StoreError, match="bad store request"):
        c._call("x", op="add", key="k")  # no n: answered with an error, not a crash
    c.set("still", 1)
    assert c.get("still") == 1
