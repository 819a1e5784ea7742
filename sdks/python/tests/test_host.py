"""The client against the real host binary, in both framings (the
``framing`` fixture), through a cutting proxy where it matters."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import List

import pytest

from execd_client import AsyncClient, Backoff, Client, End, Gap, Started, Stderr, Stdout
from conftest import CuttingProxy, Host

FAST = Backoff(initial=0.02, max_delay=0.5, retry_for=30.0)
LINES = 8000
SEQ = f"for i in $(seq 1 {LINES}); do echo line-$i; done"


def lines_of(events: List[object]) -> List[str]:
    return [e.text for e in events if isinstance(e, Stdout)]


def test_output_and_end(host: Host) -> None:
    with Client(host.url) as c:
        run = c.run("printf 'a\\n\\nb\\n'; echo err >&2; exit 3")
        assert run.id
        out = run.output()
        assert out.stdout == "a\n\nb\n" and out.stderr == "err\n" and out.complete
        assert run.wait().exit_code == 3 and run.wait().reason == "exit"
        assert c.status(run.id)["exit_code"] == 3
        assert any(cmd["id"] == run.id for cmd in c.commands())


@pytest.mark.needs_server("partial")
def test_output_is_byte_exact_from_partial(host: Host) -> None:
    text = "héllo\r50%\r100%\nno newline at the end"
    with Client(host.url) as c:
        out = c.run(["printf", "%s", text]).output()
        assert out.stdout_bytes == text.encode()


def test_8000_lines_exactly_once_through_cuts(host: Host, proxy: CuttingProxy) -> None:
    proxy.cut_after = 40_000  # bytes from the host per connection
    with Client(proxy.url, backoff=FAST) as c:
        run = c.run(SEQ)
        events = list(run)
    assert lines_of(events) == [f"line-{i}" for i in range(1, LINES + 1)]
    assert isinstance(events[-1], End) and events[-1].exit_code == 0
    assert not any(isinstance(e, Gap) for e in events)
    assert proxy.cuts >= 5 and run.reconnects >= 5, (proxy.cuts, run.reconnects)


def test_async_8000_lines_exactly_once_through_cuts(host: Host, proxy: CuttingProxy) -> None:
    proxy.cut_after = 40_000

    async def main() -> tuple:
        async with AsyncClient(proxy.url, backoff=FAST) as c:
            run = await c.run(SEQ)
            events = [e async for e in run]
            return events, run.reconnects

    events, reconnects = asyncio.run(asyncio.wait_for(main(), 120))
    assert lines_of(events) == [f"line-{i}" for i in range(1, LINES + 1)]
    assert isinstance(events[-1], End)
    assert proxy.cuts >= 5 and reconnects >= 5


def test_attach_background_and_logs(host: Host) -> None:
    with Client(host.url) as c:
        run = c.run("echo one; echo two >&2; echo three", background=True)
        assert run.output().stdout == "one\nthree\n"
        again = c.attach(run.id, after_eid=1)
        assert [type(e) for e in again][-1] is End
        logs = c.logs(run.id, 0)
        assert sorted(logs.data.split()) == [b"one", b"three", b"two"] and logs.cursor == len(logs.data)


def test_session_keeps_state(host: Host) -> None:
    with Client(host.url) as c:
        sid = c.create_session()
        c.session_run(sid, "export X=kept; cd /").wait()
        assert c.session_run(sid, "echo $X $PWD").output().stdout == "kept /\n"
        c.delete_session(sid)


def test_interrupt_ends_the_run(host: Host) -> None:
    with Client(host.url) as c:
        run = c.run("echo up; exec sleep 60")
        first = next(e for e in run if isinstance(e, Stdout))
        assert first.text == "up"
        run.interrupt()
        end = run.wait()
        assert end.exit_code == -1


def _restart_mid_run(host: Host, proxy: CuttingProxy, seen_before_kill: int) -> None:
    """Kills the host (SIGKILL), starts a new one on the same state dir and
    points the proxy at it."""
    host.kill()
    host.start()
    proxy.target = host.addr
    proxy.cut()


TICKS = "for i in $(seq 1 600); do echo tick-$i; sleep 0.05; done"


def test_host_restart_mid_run_ends_with_host_restarted(host: Host, proxy: CuttingProxy) -> None:
    with Client(proxy.url, backoff=FAST) as c:
        run = c.run(TICKS)
        events: List[object] = []
        for event in run:
            events.append(event)
            if len(lines_of(events)) == 5:
                _restart_mid_run(host, proxy, 5)
    ticks = lines_of(events)
    assert ticks == [f"tick-{i}" for i in range(1, len(ticks) + 1)] and len(ticks) >= 5
    end = events[-1]
    assert isinstance(end, End) and end.reason == "host-restarted" and end.ename == "HostRestarted"
    assert end.exit_code == -1 and run.reconnects >= 1


def test_async_host_restart_mid_run(host: Host, proxy: CuttingProxy) -> None:
    async def main() -> List[object]:
        async with AsyncClient(proxy.url, backoff=FAST) as c:
            run = await c.run(TICKS)
            events: List[object] = []
            async for event in run:
                events.append(event)
                if len(lines_of(events)) == 5:
                    _restart_mid_run(host, proxy, 5)
            return events

    events = asyncio.run(asyncio.wait_for(main(), 120))
    ticks = lines_of(events)
    assert ticks == [f"tick-{i}" for i in range(1, len(ticks) + 1)]
    end = events[-1]
    assert isinstance(end, End) and end.reason == "host-restarted"


@pytest.mark.needs_server("idempotency")
def test_cut_before_init_runs_the_command_once(host: Host, proxy: CuttingProxy, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    proxy.cut_after = 1  # the first answer is cut before `init` is whole
    proxy.cut_limit = 1
    with Client(proxy.url, backoff=FAST) as c:
        run = c.run(f"echo ran >> {marks}; echo done")
        assert run.output().stdout == "done\n"
    assert proxy.cuts == 1
    assert marks.read_text() == "ran\n"


@pytest.mark.needs_server("stdin")
def test_stdin_exactly_once(host: Host) -> None:
    with Client(host.url) as c:
        run = c.run("cat", stdin=True)
        for i in range(100):
            run.write(f"in-{i}\n".encode())
        run.close_stdin()
        assert run.output().stdout == "".join(f"in-{i}\n" for i in range(100))


def test_rejections_are_api_errors(host: Host) -> None:
    from execd_client import ApiError

    with Client(host.url) as c:
        with pytest.raises(ApiError) as e:
            c.status("no-such-command")
        assert e.value.status == 404
        with pytest.raises(ApiError) as e:
            c.run("true", cwd="/no/such/dir")
        assert e.value.status == 400 and e.value.code
