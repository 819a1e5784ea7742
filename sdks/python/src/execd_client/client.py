"""The synchronous client."""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Tuple

import httpx

from . import _core
from ._core import Backoff, Command, Follower, Logs
from .errors import ApiError, Expired, ExecdError, ProtocolError
from .events import End, Event
from .output import Output, OutputBuilder


class Client:
    """A client of one execd-host. Use it as a context manager.

    ``framing`` (``"standard"``/``"legacy"``) asks the host for one with
    ``?framing=``; ``None`` takes the host's default (both are read).
    ``idle_timeout``: silence (seconds) that counts as a cut; the host
    sends a keepalive every 3 s.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        framing: Optional[str] = None,
        backoff: Backoff = Backoff(),
        idle_timeout: float = 15.0,
        connect_timeout: float = 5.0,
    ) -> None:
        headers = {"X-EXECD-ACCESS-TOKEN": token} if token is not None else {}
        timeout = httpx.Timeout(30.0, connect=connect_timeout, read=idle_timeout)
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)
        self.framing = framing
        self.backoff = backoff

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _params(self, **extra: Any) -> Dict[str, Any]:
        params = {k: v for k, v in extra.items() if v is not None}
        if self.framing is not None:
            params["framing"] = self.framing
        return params

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise _core.api_error(response, response.read())
        return response

    def ping(self) -> None:
        self._check(self._http.get("/ping"))

    def run(
        self,
        command: Command,
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        background: bool = False,
        uid: Optional[int] = None,
        gid: Optional[int] = None,
        stdin: bool = False,
        pty: Optional[Tuple[int, int]] = None,
        idempotency_key: Optional[str] = None,
    ) -> "Execution":
        """Starts ``command`` (shell text, or an argv list) and returns once
        the host has handed out its id. ``timeout`` in seconds; ``pty`` is
        ``(cols, rows)``. A cut before the id arrives retries the POST with
        the same ``Idempotency-Key`` (a fresh UUID unless given), so the
        command runs once."""
        body = _core.run_body(command, cwd, env, timeout, background, uid, gid, stdin, pty)
        return self._start("/command", body, idempotency_key)

    def session_run(
        self, session_id: str, command: str, *, cwd: Optional[str] = None, timeout: Optional[float] = None
    ) -> "Execution":
        """Runs ``command`` in a bash session: the same stream as ``run``."""
        body: Dict[str, Any] = {"command": command}
        if cwd is not None:
            body["cwd"] = cwd
        if timeout is not None:
            body["timeout"] = max(1, int(timeout * 1000))
        return self._start(f"/session/{session_id}/run", body, None)

    def _start(self, path: str, body: Dict[str, Any], key: Optional[str]) -> "Execution":
        execution = Execution(self, Follower(None, 0), (path, json.dumps(body), key or str(uuid.uuid4())))
        execution._until_started()
        return execution

    def attach(self, command_id: str, after_eid: int = 0) -> "Execution":
        """Follows a command's events after ``after_eid``, resuming by
        itself."""
        return Execution(self, Follower(command_id, after_eid), None)

    def status(self, command_id: str) -> Dict[str, Any]:
        return _core.json_object(self._check(self._http.get(f"/command/status/{command_id}")))

    def commands(self) -> List[Dict[str, Any]]:
        listed = _core.json_object(self._check(self._http.get("/command"))).get("commands")
        if not isinstance(listed, list):
            raise ProtocolError("GET /command: no `commands` list")
        return [c for c in listed if isinstance(c, dict)]

    def logs(self, command_id: str, cursor: int = 0) -> Logs:
        response = self._check(self._http.get(f"/command/{command_id}/logs", params={"cursor": cursor}))
        return _core.logs_from(response, cursor)

    def interrupt(self, command_id: str) -> None:
        self._check(self._http.delete("/command", params={"id": command_id}))

    def create_session(self, cwd: Optional[str] = None) -> str:
        body = {"cwd": cwd} if cwd is not None else {}
        obj = _core.json_object(self._check(self._http.post("/session", json=body)))
        sid = obj.get("session_id")
        if not isinstance(sid, str):
            raise ProtocolError("POST /session: no session_id")
        return sid

    def delete_session(self, session_id: str) -> None:
        self._check(self._http.delete(f"/session/{session_id}"))

    def _open(self, follower: Follower, start: Optional[Tuple[str, str, str]]) -> Optional[httpx.Response]:
        """Opens the POST (no id yet) or a resume; ``None`` on 204."""
        headers: Dict[str, str] = {}
        if follower.command_id is None:
            assert start is not None
            path, body, key = start
            headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
            if follower.last_eid:
                headers["Last-Event-ID"] = str(follower.last_eid)
            request = self._http.build_request("POST", path, content=body, headers=headers, params=self._params())
        else:
            request = self._http.build_request(
                "GET",
                f"/command/{follower.command_id}/resume",
                params=self._params(after_eid=follower.last_eid),
            )
        response = self._http.send(request, stream=True)
        if response.status_code == 204:
            response.close()
            return None
        if response.status_code >= 400:
            try:
                error = _core.api_error(response, response.read())
            finally:
                response.close()
            if response.status_code == 404 and follower.command_id is not None and error.code == "COMMAND_NOT_FOUND":
                raise Expired(follower.command_id, follower.last_eid)
            raise error
        return response


class Execution:
    """One command's events, each exactly once, in order: iterate it. It
    resumes by itself after a cut or a host restart."""

    def __init__(self, client: Client, follower: Follower, start: Optional[Tuple[str, str, str]]) -> None:
        self._client = client
        self._f = follower
        self._start = start
        self._response: Optional[httpx.Response] = None
        self._chunks: Optional[Iterator[bytes]] = None
        self._pending: Deque[Event] = deque()
        self._output = OutputBuilder()
        self._end: Optional[End] = None
        self._stdin_offset = 0

    @property
    def id(self) -> str:
        assert self._f.command_id is not None  # set before run() returns
        return self._f.command_id

    @property
    def last_eid(self) -> int:
        return self._f.last_eid

    @property
    def reconnects(self) -> int:
        return self._f.reconnects

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        while not self._pending:
            if self._f.ended:
                self._disconnect()
                raise StopIteration
            self._step()
        event = self._pending.popleft()
        self._output.add(event)
        if isinstance(event, End):
            self._end = event
        return event

    def wait(self) -> End:
        """Reads to the end; the terminal event."""
        for _ in self:
            pass
        assert self._end is not None
        return self._end

    def output(self) -> Output:
        """Reads to the end; stdout and stderr rebuilt exactly."""
        self.wait()
        return self._output.build()

    def _until_started(self) -> None:
        while self._f.command_id is None:
            self._step()

    def _disconnect(self) -> None:
        if self._response is not None:
            self._response.close()
        self._response = None
        self._chunks = None

    def _step(self) -> None:
        """One read, or one reconnection (with its wait)."""
        if self._chunks is None:
            self._reconnect(None)
            return
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._reconnect(ProtocolError("the host ended the stream before the command's end"))
            return
        except httpx.TransportError as e:
            self._reconnect(e)
            return
        self._pending.extend(self._f.feed(chunk))
        if self._f.spawned:
            # A background run: its output is logged; follow it by resume.
            self._f.spawned = False
            self._disconnect()
            self._f.cut()

    def _reconnect(self, cause: Optional[BaseException]) -> None:
        self._disconnect()
        self._f.cut()
        first = cause is None and self._f.streak.started is None and self._f.reconnects == 0
        while True:
            if not first:
                cause = cause or ProtocolError("no connection")
                delay = self._f.streak.next_delay(self._client.backoff, self._f.command_id, self._f.last_eid, cause)
                time.sleep(delay)
            first = False
            try:
                response = self._client._open(self._f, self._start)
            except ExecdError as e:
                if not _core.transient(e):
                    raise
                cause = e
                continue
            except httpx.TransportError as e:
                cause = e
                continue
            if cause is not None:
                self._f.reconnects += 1
            if response is None:
                self._f.ended = True  # 204: nothing after the cursor
                return
            self._response = response
            self._chunks = response.iter_raw()
            return

    def interrupt(self) -> None:
        self._client.interrupt(self.id)

    def write(self, data: bytes) -> int:
        """Sends ``data`` to the command's stdin (started with ``stdin=True``
        or ``pty``); a retry after a cut sends the same offset, so each byte
        reaches the command once. Returns the host's offset."""
        return self._stdin(data, eof=False)

    def close_stdin(self) -> int:
        return self._stdin(b"", eof=True)

    def resize(self, cols: int, rows: int) -> None:
        self._client._check(self._client._http.post(f"/command/{self.id}/resize", json={"cols": cols, "rows": rows}))

    def _stdin(self, data: bytes, eof: bool) -> int:
        streak = _core.Streak()
        params: Dict[str, Any] = {"offset": self._stdin_offset}
        if eof:
            params["eof"] = "true"
        while True:
            try:
                response = self._client._http.post(
                    f"/command/{self.id}/stdin",
                    params=params,
                    content=data,
                    headers={"Content-Type": "application/octet-stream"},
                )
                if response.status_code >= 400:
                    raise _core.api_error(response, response.read())
                offset = _core.json_object(response).get("offset")
                if not isinstance(offset, int):
                    raise ProtocolError("stdin: no offset in the answer")
                self._stdin_offset = offset
                return offset
            except httpx.TransportError as e:
                time.sleep(streak.next_delay(self._client.backoff, self.id, self._f.last_eid, e))
            except ApiError as e:
                if e.code == "STDIN_OFFSET" and e.offset is not None and e.offset >= self._stdin_offset + len(data):
                    self._stdin_offset = e.offset  # our bytes arrived before the cut
                    return e.offset
                if not e.transient or e.code in ("STDIN_OFFSET", "NO_STDIN", "STDIN_CLOSED", "COMMAND_FINISHED"):
                    raise
                time.sleep(streak.next_delay(self._client.backoff, self.id, self._f.last_eid, e))
