"""tianyuan.hub: repositories (archive over HTTP, local directory, git URL), hubconf entry
points and dependencies, and weight downloads (atomic, verified, with timeouts).

Everything is served by a local HTTP server on 127.0.0.1 in a thread; no test reaches any
other host. Each test has its own cache (TY_HOME in a tmp dir)."""
import hashlib
import http.server
import io
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
import zipfile

import numpy as np
import pytest

import tianyuan as ty
from tianyuan import hub
from tianyuan.hub import exceptions as hub_exc


# ----------------------------------------------------------------------------- server
class _Server:
    """Serves ``routes[path] = (kind, body)``; kind is 'ok', '404', 'truncate' (announces the
    full length, sends half, closes), 'hang' (reads the request, never answers) or
    'hang_body' (sends headers and half the body, then stalls). Records every path asked."""

    def __init__(self):
        self.routes, self.requests = {}, []
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                kind, body = server.routes.get(self.path, ("404", b""))
                if kind == "hang":
                    server.release.wait(10)
                    return
                if kind == "404":
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "ok":
                    self.wfile.write(body)
                    return
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                if kind == "hang_body":
                    server.release.wait(10)
                self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def reset(self):
        self.release.set()  # lets handlers stalled by an earlier test finish
        self.release = threading.Event()
        self.routes, self.requests = {}, []

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def _shared_server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def server(_shared_server):
    _shared_server.reset()
    yield _shared_server
    _shared_server.reset()


@pytest.fixture
def home(tmp_path, monkeypatch):
    d = tmp_path / "tyhome"
    monkeypatch.setenv("TY_HOME", str(d))
    return d


# ----------------------------------------------------------------------------- fixture repos
_NET_PY = """
import tianyuan.module as M

VALUE = {value}


class TinyNet(M.Module):
    def __init__(self, out_features=2):
        super().__init__()
        self.fc = M.Linear(3, out_features)

    def forward(self, x):
        return self.fc(x)
"""

_HUBCONF = '''
import tinynet_mod
from tianyuan import hub

dependencies = {deps!r}


@hub.pretrained({url!r})
def tinynet(out_features=2):
    """A tiny linear model for the hub tests."""
    return tinynet_mod.TinyNet(out_features)


def value():
    return tinynet_mod.VALUE
'''


def _repo_files(weights_url="http://127.0.0.1:9/none.tyck", value=1, deps=("numpy",)):
    return {"hubconf.py": _HUBCONF.format(deps=list(deps), url=weights_url),
            "tinynet_mod.py": _NET_PY.format(value=value)}


def _write_repo(directory, files):
    os.makedirs(directory, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(textwrap.dedent(text))
    return str(directory)


def _zip(files, top="tinyrepo-main"):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"{top}/{name}" if top else name, text)
    return buf.getvalue()


def _weights():
    rng = np.random.default_rng(0)
    sd = {"fc.weight": rng.standard_normal((2, 3)).astype(np.float32),
          "fc.bias": rng.standard_normal(2).astype(np.float32)}
    buf = io.BytesIO()
    ty.save(sd, buf)
    return sd, buf.getvalue()


def _temps(directory):
    """Every file or folder under ``directory`` that is a temporary (hidden) name."""
    out = []
    for root, dirs, files in os.walk(directory):
        out += [n for n in dirs + files if n.startswith(".")]
    return out


def _serve_archive_repo(server, value=1):
    """Serves owner/tinyrepo:main whose tinynet weights carry a hash in their name."""
    sd, blob = _weights()
    wpath = f"/w/tiny-{hashlib.sha256(blob).hexdigest()[:10]}.tyck"
    server.routes[wpath] = ("ok", blob)
    files = _repo_files(server.base + wpath, value=value)
    server.routes["/owner/tinyrepo/archive/main.zip"] = ("ok", _zip(files))
    return sd, wpath


# ----------------------------------------------------------------------------- archive repos
def test_archive_repo_with_pretrained_weights_then_cache_reuse(server, home):
    sd, wpath = _serve_archive_repo(server)
    model = hub.load("owner/tinyrepo:main", "tinynet", git_host=server.base, pretrained=True)
    np.testing.assert_array_equal(model.fc.weight.numpy(), sd["fc.weight"])
    np.testing.assert_array_equal(model.fc.bias.numpy(), sd["fc.bias"])
    assert server.requests == ["/owner/tinyrepo/archive/main.zip", wpath]
    assert _temps(home) == []
    assert len(os.listdir(home / "serialized")) == 1
    # the second load reads the cache: no request at all
    again = hub.load("owner/tinyrepo:main", "tinynet", git_host=server.base, pretrained=True)
    np.testing.assert_array_equal(again.fc.weight.numpy(), sd["fc.weight"])
    assert len(server.requests) == 2
    # without pretrained=True the weights are not fetched and the model keeps its init
    fresh = hub.load("owner/tinyrepo:main", "tinynet", git_host=server.base, out_features=4)
    assert fresh.fc.weight.shape == (4, 3)
    assert len(server.requests) == 2


def test_list_help_import_module(server, home):
    _serve_archive_repo(server)
    kw = dict(git_host=server.base)
    assert hub.list("owner/tinyrepo:main", **kw) == ["tinynet", "value"]
    assert hub.help("owner/tinyrepo:main", "tinynet", **kw).strip() == \
        "A tiny linear model for the hub tests."
    mod = hub.import_module("owner/tinyrepo:main", **kw)
    assert callable(mod.tinynet) and mod.dependencies == ["numpy"]
    assert server.requests == ["/owner/tinyrepo/archive/main.zip"]  # fetched once


def test_use_cache_false_fetches_again(server, home):
    _serve_archive_repo(server, value=1)
    assert hub.load("owner/tinyrepo:main", "value", git_host=server.base) == 1
    _serve_archive_repo(server, value=2)
    assert hub.load("owner/tinyrepo:main", "value", git_host=server.base) == 1  # cached
    assert hub.load("owner/tinyrepo:main", "value", git_host=server.base,
                    use_cache=False) == 2
    assert server.requests.count("/owner/tinyrepo/archive/main.zip") == 2
    assert len(os.listdir(home / "hub")) == 1 and _temps(home) == []


def test_concurrent_fetches_of_one_repo_agree(server, home):
    from tianyuan.hub import _repo
    _serve_archive_repo(server)
    results, errors = [], []

    def fetch():
        try:
            results.append(_repo.resolve("owner/tinyrepo:main", git_host=server.base))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert sorted(os.listdir(results[0])) == ["hubconf.py", "tinynet_mod.py"]
    assert os.listdir(home / "hub") == [os.path.basename(results[0])]


def test_commit_selects_the_archive(server, home):
    files = _repo_files(value=7)
    server.routes["/owner/tinyrepo/archive/abc123.zip"] = ("ok", _zip(files, "tinyrepo-abc123"))
    assert hub.load("owner/tinyrepo", "value", git_host=server.base, commit="abc123") == 7
    assert server.requests == ["/owner/tinyrepo/archive/abc123.zip"]


def test_archive_http_error_and_truncation_leave_no_repo(server, home):
    with pytest.raises(hub_exc.DownloadError, match="HTTP 404"):
        hub.list("owner/missing", git_host=server.base)
    files = _repo_files()
    server.routes["/owner/tinyrepo/archive/main.zip"] = ("truncate", _zip(files))
    with pytest.raises(hub_exc.DownloadError, match="truncated"):
        hub.list("owner/tinyrepo:main", git_host=server.base)
    assert os.listdir(home / "hub") == []


def test_archive_with_unsafe_path_is_refused(server, home, tmp_path):
    server.routes["/owner/evil/archive/master.zip"] = (
        "ok", _zip({"hubconf.py": "x = 1\n", "../../evil.py": "boom\n"}, top=None))
    with pytest.raises(hub_exc.InvalidRepo, match="unsafe member path"):
        hub.list("owner/evil", git_host=server.base)
    assert not (home / "evil.py").exists() and not (tmp_path / "evil.py").exists()
    assert os.listdir(home / "hub") == []


def test_archive_unpacking_past_the_size_limit_is_refused(server, home, monkeypatch):
    from tianyuan.hub import _repo
    monkeypatch.setattr(_repo, "MAX_ARCHIVE_BYTES", 1000)
    server.routes["/owner/bomb/archive/master.zip"] = (
        "ok", _zip({"hubconf.py": "x = 1\n", "big.bin": "0" * 5000}))
    with pytest.raises(hub_exc.InvalidRepo, match="unpacks to 5006 bytes"):
        hub.list("owner/bomb", git_host=server.base)
    assert os.listdir(home / "hub") == []


# ----------------------------------------------------------------------------- weights
def test_truncated_weights(server, home):
    _, blob = _weights()
    server.routes["/w/t.tyck"] = ("truncate", blob)
    with pytest.raises(hub_exc.DownloadError, match=r"got \d+ of the \d+ bytes.*truncated"):
        hub.load_serialized_obj_from_url(server.base + "/w/t.tyck")
    assert os.listdir(home / "serialized") == []


def test_wrong_hash_in_name_and_keyword(server, home):
    _, blob = _weights()
    good = hashlib.sha256(blob).hexdigest()
    bad = ("0" if good[0] != "0" else "1") + good[1:10]
    server.routes[f"/w/tiny-{bad}.tyck"] = ("ok", blob)
    with pytest.raises(hub_exc.HashMismatchError, match=f"{good}.*expected {bad}.*file name"):
        hub.load_serialized_obj_from_url(server.base + f"/w/tiny-{bad}.tyck")
    server.routes["/w/plain.tyck"] = ("ok", blob)
    with pytest.raises(hub_exc.HashMismatchError):
        hub.load_serialized_obj_from_url(server.base + "/w/plain.tyck", hash_prefix=bad[:8])
    assert os.listdir(home / "serialized") == []
    # the right prefix passes (upper case accepted)
    out = hub.load_serialized_obj_from_url(server.base + "/w/plain.tyck",
                                           hash_prefix=good[:8].upper())
    assert sorted(out) == ["fc.bias", "fc.weight"]
    # check_hash=False: the digits in the name are not taken for a hash
    out = hub.load_serialized_obj_from_url(server.base + f"/w/tiny-{bad}.tyck", check_hash=False)
    assert sorted(out) == ["fc.bias", "fc.weight"]


@pytest.mark.parametrize("name, expected", [
    ("resnet18-5c106cde.pth", "5c106cde"),
    ("tiny-0123456789abcdef.tar.gz", "0123456789abcdef"),
    ("resnet50_fbaug_76254_4e14b7d1.pkl", None),   # MegEngine's naming: not checked
    ("8b51a6a2-391f-49e2-a202-60e8a9dda7fe", None),  # a UUID, no extension
    ("model-v2.pth", None),
    ("model-abc.pth", None),                        # too short for a sha256 prefix
])
def test_which_file_names_carry_a_hash(name, expected):
    from tianyuan.hub.hub import _expected_hash
    assert _expected_hash(name, None)[0] == expected
    assert _expected_hash(name, None, check_hash=False)[0] is None
    assert _expected_hash(name, "ABCD")[0] == "abcd"


def test_connection_refused(home):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(hub_exc.DownloadError, match="refused"):
        hub.load_serialized_obj_from_url(f"http://127.0.0.1:{port}/w.tyck", timeout=2)
    assert os.listdir(home / "serialized") == []


def test_megengine_style_name_suffix_is_not_checked(server, home):
    # MegEngine's weights end in _<8 hex>.pkl, a suffix MegEngine never verifies
    _, blob = _weights()
    server.routes["/w/resnet18_naiveaug_70312_78a63ca6.tyck"] = ("ok", blob)
    out = hub.load_serialized_obj_from_url(server.base + "/w/resnet18_naiveaug_70312_78a63ca6.tyck")
    assert sorted(out) == ["fc.bias", "fc.weight"]


@pytest.mark.parametrize("kind", ["hang", "hang_body"])
def test_hanging_server_times_out(server, home, kind):
    _, blob = _weights()
    server.routes["/w/slow.tyck"] = (kind, blob)
    with pytest.raises(hub_exc.DownloadError, match="timed out"):
        hub.load_serialized_obj_from_url(server.base + "/w/slow.tyck", timeout=0.3)
    assert os.listdir(home / "serialized") == []


def test_http_error_on_weights(server, home):
    with pytest.raises(hub_exc.DownloadError, match="HTTP 404") as info:
        hub.load_serialized_obj_from_url(server.base + "/w/nothing.tyck")
    assert isinstance(info.value, OSError)
    assert os.listdir(home / "serialized") == []


def test_pickle_weights_refused_unless_opted_in(server, home):
    blob = pickle.dumps({"fc.weight": np.ones((2, 3), np.float32)}, protocol=4)
    server.routes["/w/old.pkl"] = ("ok", blob)
    with pytest.raises(ValueError, match="pickle file.*allow_pickle=True"):
        hub.load_serialized_obj_from_url(server.base + "/w/old.pkl")
    out = hub.load_serialized_obj_from_url(server.base + "/w/old.pkl", allow_pickle=True)
    np.testing.assert_array_equal(out["fc.weight"], np.ones((2, 3), np.float32))
    assert server.requests == ["/w/old.pkl"]  # the refused file was complete: kept, not refetched


def test_stale_temporary_of_a_dead_process_is_removed(server, home):
    _, blob = _weights()
    server.routes["/w/a.tyck"] = ("ok", blob)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    os.makedirs(home / "serialized")
    stale = home / "serialized" / f".x.tyck.tmp-{p.pid}-0123abcd"
    stale.write_bytes(b"half")
    hub.load_serialized_obj_from_url(server.base + "/w/a.tyck")
    assert not stale.exists() and _temps(home) == []


class _FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal(server, home, monkeypatch, capsys):
    _, blob = _weights()
    server.routes["/w/a.tyck"] = ("ok", blob)
    server.routes["/w/b.tyck"] = ("ok", blob)
    hub.load_serialized_obj_from_url(server.base + "/w/a.tyck")
    assert capsys.readouterr().err == ""
    tty = _FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    hub.load_serialized_obj_from_url(server.base + "/w/b.tyck")
    shown = tty.getvalue()
    assert "Downloading w/b.tyck: 100%" in shown and shown.endswith("\n")
    assert shown.count("\n") == 1  # one line, redrawn in place with \r


def test_pretrained_decorator_keyword(server, home):
    sd, blob = _weights()
    server.routes["/w/net.tyck"] = ("ok", blob)
    import tianyuan.module as M

    @hub.pretrained(server.base + "/w/net.tyck")
    def make(out_features=2):
        """doc kept"""
        net = M.Module()
        net.fc = M.Linear(3, out_features)
        return net

    assert make.__doc__ == "doc kept"
    assert make().fc.weight.shape == (2, 3) and server.requests == []
    net = make(pretrained=True)
    np.testing.assert_array_equal(net.fc.weight.numpy(), sd["fc.weight"])
    with pytest.raises(ValueError, match="not an http"):
        hub.pretrained("ftp://example.invalid/x.tyck")


# ----------------------------------------------------------------------------- local and git
def test_local_directory_repo(tmp_path, home):
    repo = _write_repo(tmp_path / "repo", _repo_files(value=5))
    assert hub.load(repo, "value") == 5
    assert hub.load(tmp_path / "repo", "tinynet", out_features=3).fc.weight.shape == (3, 3)
    assert hub.list(repo) == ["tinynet", "value"]
    assert not (home / "hub").exists()  # used in place, nothing cached
    with pytest.raises(hub_exc.InvalidRepo, match="does not apply"):
        hub.load(repo, "value", commit="abc")


def test_two_repos_with_same_named_modules_each_get_their_own(tmp_path, home):
    a = _write_repo(tmp_path / "a", _repo_files(value=1))
    b = _write_repo(tmp_path / "b", _repo_files(value=2))
    assert hub.load(a, "value") == 1
    assert hub.load(b, "value") == 2
    assert hub.load(a, "value") == 1


def test_missing_dependency_is_named(tmp_path, home):
    repo = _write_repo(tmp_path / "r", _repo_files(deps=["numpy", "no_such_module_ty_hub"]))
    with pytest.raises(RuntimeError, match=r"Missing dependencies: no_such_module_ty_hub \("):
        hub.load(repo, "value")


def test_unknown_entry_point(tmp_path, home):
    repo = _write_repo(tmp_path / "r", _repo_files())
    for fn in (lambda: hub.load(repo, "resnet9000"), lambda: hub.help(repo, "resnet9000")):
        with pytest.raises(RuntimeError, match="Cannot find callable 'resnet9000'.*tinynet, "
                                               "value"):
            fn()
    with pytest.raises(RuntimeError, match="Cannot find callable 'dependencies'"):
        hub.load(repo, "dependencies")  # a list, not an entry point


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the system git")
def test_git_repo_at_refs(tmp_path, home):
    src = _write_repo(tmp_path / "src", _repo_files(value=1))
    _git("init", "-q", "-b", "main", cwd=src)
    _git("add", ".", cwd=src)
    _git("commit", "-q", "-m", "v1", cwd=src)
    _git("tag", "v1", cwd=src)
    first = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                           text=True, check=True).stdout.strip()
    _write_repo(src, {"tinynet_mod.py": _NET_PY.format(value=2)})
    _git("commit", "-q", "-am", "v2", cwd=src)
    url = "file://" + src
    assert hub.load(url, "value") == 2
    assert hub.load(url + "#v1", "value") == 1
    assert hub.load(url, "value", commit=first) == 1
    with pytest.raises(hub_exc.GitCheckoutError, match="no_such_ref"):
        hub.load(url, "value", commit="no_such_ref")
    assert len(os.listdir(home / "hub")) == 3 and _temps(home) == []
    # cached copies are snapshots without .git
    assert all(not os.path.exists(home / "hub" / d / ".git") for d in os.listdir(home / "hub"))


def test_ssh_protocol_clones_from_git_host(home, monkeypatch):
    from tianyuan.hub import _repo
    calls = []

    def fake_git(args, error, what):  # stands in for the system git: no network
        calls.append(args)
        dst = args[args.index("--") + 2]
        _write_repo(dst, _repo_files(value=3))

    monkeypatch.setattr(_repo, "_git", fake_git)
    monkeypatch.setattr(_repo.shutil, "which", lambda name: "/usr/bin/" + name)
    assert hub.load("owner/tinyrepo:dev", "value", git_host="example.org", protocol="SSH") == 3
    assert calls[0][-3:-1] == ["--", "git@example.org:owner/tinyrepo.git"]
    assert calls[0][calls[0].index("--branch") + 1] == "dev"


# ----------------------------------------------------------------------------- arguments
def test_bad_arguments(home):
    with pytest.raises(hub_exc.InvalidProtocol, match="HTTPS, SSH"):
        hub.list("owner/name", protocol="FTP")
    with pytest.raises(hub_exc.InvalidGitHost):
        hub.list("owner/name", git_host="bad host!")
    with pytest.raises(hub_exc.InvalidGitHost):
        hub.list("owner/name", git_host="http://127.0.0.1", protocol="SSH")
    with pytest.raises(hub_exc.InvalidRepo, match="neither"):
        hub.list("not a repo")
    with pytest.raises(hub_exc.InvalidRepo, match="neither"):
        hub.list("owner/name:--upload-pack=x")
    with pytest.raises(hub_exc.InvalidRepo, match="not a valid"):
        hub.list("owner/name", commit="--upload-pack=x")
    with pytest.raises(hub_exc.InvalidRepo, match="not a valid"):
        hub.list("owner/name:a/../b")
    with pytest.raises(ValueError, match="not an http"):
        hub.load_serialized_obj_from_url("file:///etc/passwd")
    with pytest.raises(ValueError, match="hex digits"):
        hub.load_serialized_obj_from_url("http://127.0.0.1:9/x.tyck", hash_prefix="xyz")
    assert not (home / "hub").exists()


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("TY_HOME", str(tmp_path / "a"))
    assert hub.get_home() == str(tmp_path / "a")
    monkeypatch.delenv("TY_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.get_home() == str(tmp_path / "xdg" / "tianyuan")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert hub.get_home() == str(tmp_path / "h" / ".cache" / "tianyuan")
