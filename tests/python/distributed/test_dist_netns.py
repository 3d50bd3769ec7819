"""Two "machines" on this host: two network namespaces joined by a veth pair, each rank in its
own, started by mpirun with a host list (its remote-shell agent enters the other namespace
instead of ssh). MPI's traffic goes over TCP on the veth (shared memory is switched off) and
the store listens on rank 0's namespace address. The reference CNN trained there ends with
the bits of the single-process run, as on one machine.

Only addresses inside the namespaces this test creates are used; the test skips when it may
not create namespaces (not root, or no `ip netns`)."""
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest

import tianyuan as ty
from tianyuan.distributed.launcher import mpirun_command

from _dp_common import needs_mpirun, skip_asan, single_process

pytestmark = [needs_mpirun, skip_asan]
HERE = os.path.dirname(os.path.abspath(__file__))
PY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(ty.__file__)))
ADDR = ("10.231.7.1", "10.231.7.2")


def _ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture
def two_hosts():
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2)")
    tag = uuid.uuid4().hex[:6]
    ns = (f"tyd{tag}a", f"tyd{tag}b")
    veth = (f"tyd{tag}x", f"tyd{tag}y")
    made = []
    try:
        p = _ip("netns", "add", ns[0])
        if p.returncode != 0:
            pytest.skip(f"cannot create a network namespace: {p.stderr.strip()}")
        made.append(ns[0])
        steps = [("netns", "add", ns[1]),
                 ("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])]
        for i in range(2):
            steps += [("link", "set", veth[i], "netns", ns[i]),
                      ("-n", ns[i], "addr", "add", ADDR[i] + "/24", "dev", veth[i]),
                      ("-n", ns[i], "link", "set", veth[i], "up"),
                      ("-n", ns[i], "link", "set", "lo", "up")]
        for step in steps:
            p = _ip(*step)
            if step[:2] == ("netns", "add") and p.returncode == 0:
                made.append(step[2])
            if p.returncode != 0:
                pytest.skip(f"ip {' '.join(step)}: {p.stderr.strip()}")
        yield ns
    finally:
        for name in made:
            _ip("netns", "del", name)            # takes its end of the veth pair with it


def test_two_namespaces_train_like_one_machine(two_hosts, tmp_path):
    ns = two_hosts
    agent = tmp_path / "netns_rsh.sh"
    agent.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        # mpirun's remote shell: run the command in the namespace that owns the address
        host="$1"; shift
        case "$host" in
          {ADDR[0]}) ns={ns[0]} ;;
          {ADDR[1]}) ns={ns[1]} ;;
          *) echo "unknown host $host" >&2; exit 255 ;;
        esac
        exec ip netns exec "$ns" /bin/sh -c "$*"
    """))
    agent.chmod(0o755)
    out = tmp_path / "state.npz"
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        import numpy as np
        sys.path.insert(0, {HERE!r})
        import tianyuan.distributed as dist
        from _dp_common import dp_worker
        dist.init_process_group({ADDR[0]!r}, 0, 2, None, None, timeout=60)
        state = dp_worker(False, True, 64 << 10)
        net = os.readlink("/proc/self/ns/net")
        nets = dist.get_client()
        nets.user_set(f"net{{dist.get_rank()}}", net)
        if dist.get_rank() == 0:
            state["_nets"] = np.array([nets.user_get("net0"), nets.user_get("net1")])
            np.savez({str(out)!r}, **state)
    """))
    cmd = (["ip", "netns", "exec", ns[0]] + mpirun_command(2) +
           ["-H", f"{ADDR[0]}:1,{ADDR[1]}:1", "--mca", "plm_rsh_agent", str(agent),
            "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "10.231.7.0/24",
            "--mca", "oob_tcp_if_include", "10.231.7.0/24", sys.executable, str(script)])
    env = dict(os.environ, PYTHONPATH=PY_DIR)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    got = dict(np.load(out))
    nets = got.pop("_nets")
    assert nets[0] != nets[1]                      # the ranks ran in different namespaces
    got.pop("_buckets")
    got.pop("_peak_in_flight")
    ref = single_process(False, 2)
    assert got.keys() == ref.keys()
    for k in ref:
        assert np.array_equal(got[k], ref[k]), k
