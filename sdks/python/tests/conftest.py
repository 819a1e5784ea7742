"""Fixtures: the real host binary on a free loopback port, and a TCP proxy
that cuts connections, in front of it."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, List, Optional

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
HOST_BIN = Path(os.environ.get("EXECD_HOST", ROOT / "target" / "release" / "execd-host"))


class Host:
    """One execd-host process on 127.0.0.1:<free port>, its state dir kept
    across ``restart``/``kill``."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        self.state_dir = state_dir
        self.args = list(args)
        self.proc: Optional[subprocess.Popen[str]] = None
        self.addr = ""
        self.start()

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def start(self) -> None:
        env = dict(os.environ, EXECD_LOG="warn", HOME=str(self.state_dir.parent))
        self.proc = subprocess.Popen(
            [str(HOST_BIN), "--listen", "127.0.0.1:0", "--state-dir", str(self.state_dir), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            cwd=self.state_dir.parent,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()  # blocks until a line or EOF
            if not line:
                raise RuntimeError(f"the host exited before listening: {self.proc.wait()}")
            if line.startswith("listening on "):
                self.addr = line.split(" ", 2)[2].strip()
                return
        raise RuntimeError("the host did not start within 30 s")

    def kill(self) -> None:
        """SIGKILL: the host dies without any orderly shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class CuttingProxy:
    """A loopback TCP proxy to ``target`` that can cut every connection it
    carries (``cut()``), or cut each after ``cut_after`` bytes from the
    host. ``target`` may change (a restarted host's new port)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.cut_after: Optional[int] = None
        #: Cut only this many connections by `cut_after`, then pass all.
        self.cut_limit: Optional[int] = None
        self.cuts = 0
        self._lock = threading.Lock()
        self._conns: List[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self._server.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        host, port = self.target.rsplit(":", 1)
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            client.close()  # the host is away: the client sees a cut
            return
        with self._lock:
            self._conns += [client, upstream]
        with self._lock:
            budget = self.cut_after
            if self.cut_limit is not None:
                if self.cut_limit <= 0:
                    budget = None
                else:
                    self.cut_limit -= 1
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 1.0)
                if self._stopped:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is upstream and budget is not None:
                        if len(data) >= budget:
                            client.sendall(data[:budget])
                            with self._lock:
                                self.cuts += 1
                            return
                        budget -= len(data)
                    (client if s is upstream else upstream).sendall(data)
        except OSError:
            return
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        """Cuts every connection open now."""
        with self._lock:
            conns, self._conns = self._conns, []
            if conns:
                self.cuts += 1
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._stopped = True
        self._server.close()
        self.cut()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="execd-py-") as d:
        state = Path(d) / "state"
        yield state


@pytest.fixture(params=["standard", "legacy"])
def framing(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def host(state_dir: Path, framing: str) -> Iterator[Host]:
    if not HOST_BIN.exists():
        pytest.fail(f"no host binary at {HOST_BIN} (set EXECD_HOST or build it)")
    h = Host(state_dir, "--sse-framing", framing)
    yield h
    h.stop()


@pytest.fixture
def proxy(host: Host) -> Iterator[CuttingProxy]:
    p = CuttingProxy(host.addr)
    yield p
    p.close()


def _serves(host: Host, feature: str) -> bool:
    """Probes the host honestly for a server feature."""
    with httpx.Client(base_url=host.url, timeout=10) as http:
        if feature == "idempotency":
            body = {"command": "true"}
            key = f"probe-{time.monotonic_ns()}"
            ids = []
            for _ in range(2):
                r = http.post("/command", json=body, headers={"Idempotency-Key": key})
                for line in r.text.splitlines():
                    if '"init"' in line:
                        ids.append(json.loads(line[line.index("{"):]).get("text"))
            return len(ids) == 2 and ids[0] == ids[1]
        if feature == "partial":
            r = http.post("/command", json={"command": "printf abc"})
            return '"partial":true' in r.text
        if feature == "stdin":
            r = http.post("/command", json={"command": "cat", "stdin": True, "background": True})
            ids = [json.loads(l[l.index("{"):]).get("text") for l in r.text.splitlines() if '"init"' in l]
            if not ids:
                return False
            w = http.post(f"/command/{ids[0]}/stdin", params={"offset": 0, "eof": "true"}, content=b"")
            return w.status_code == 200
    raise ValueError(feature)


@pytest.fixture(autouse=True)
def _needs_server(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("needs_server")
    if marker is None:
        return
    host = request.getfixturevalue("host")
    feature = marker.args[0]
    if not _serves(host, feature):
        pytest.skip(f"this host does not serve {feature!r} (a CONTRACT.md feature this build lacks)")
