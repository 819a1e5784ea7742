"""The asynchronous client: the same rules as ``Client``, on asyncio."""

from __future__ import annotations

import json
import asyncio
import uuid
from collections import deque
from typing import Any, AsyncIterator, Deque, Dict, List, Mapping, Optional, Tuple

import httpx

from . import _core
from ._core import Backoff, Command, Follower, Logs
from .errors import ApiError, Expired, ExecdError, ProtocolError
from .events import End, Event
from .output import Output, OutputBuilder


class AsyncClient:
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
        self._http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout)
        self.framing = framing
        self.backoff = backoff

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    def _params(self, **extra: Any) -> Dict[str, Any]:
        params = {k: v for k, v in extra.items() if v is not None}
        if self.framing is not None:
            params["framing"] = self.framing
        return params

    async def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise _core.api_error(response, await response.aread())
        return response

    async def ping(self) -> None:
        await self._check(await self._http.get("/ping"))

    async def run(
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
    ) -> "AsyncExecution":
        """Starts ``command`` (shell text, or an argv list) and returns once
        the host has handed out its id. ``timeout`` in seconds; ``pty`` is
        ``(cols, rows)``. A cut before the id arrives retries the POST with
        the same ``Idempotency-Key`` (a fresh UUID unless given), so the
        command runs once."""
        body = _core.run_body(command, cwd, env, timeout, background, uid, gid, stdin, pty)
        return await self._start("/command", body, idempotency_key)

    async def session_run(
        self, session_id: str, command: str, *, cwd: Optional[str] = None, timeout: Optional[float] = None
    ) -> "AsyncExecution":
        """Runs ``command`` in a bash session: the same stream as ``run``."""
        body: Dict[str, Any] = {"command": command}
        if cwd is not None:
            body["cwd"] = cwd
        if timeout is not None:
            body["timeout"] = max(1, int(timeout * 1000))
        return await self._start(f"/session/{session_id}/run", body, None)

    async def _start(self, path: str, body: Dict[str, Any], key: Optional[str]) -> "AsyncExecution":
        execution = AsyncExecution(self, Follower(None, 0), (path, json.dumps(body), key or str(uuid.uuid4())))
        await execution._until_started()
        return execution

    async def attach(self, command_id: str, after_eid: int = 0) -> "AsyncExecution":
        """Follows a command's events after ``after_eid``, resuming by
        itself."""
        return AsyncExecution(self, Follower(command_id, after_eid), None)

    async def status(self, command_id: str) -> Dict[str, Any]:
        return _core.json_object(await self._check(await self._http.get(f"/command/status/{command_id}")))

    async def commands(self) -> List[Dict[str, Any]]:
        listed = _core.json_object(await self._check(await self._http.get("/command"))).get("commands")
        if not isinstance(listed, list):
            raise ProtocolError("GET /command: no `commands` list")
        return [c for c in listed if isinstance(c, dict)]

    async def logs(self, command_id: str, cursor: int = 0) -> Logs:
        response = await self._check(await self._http.get(f"/command/{command_id}/logs", params={"cursor": cursor}))
        return _core.logs_from(response, cursor)

    async def interrupt(self, command_id: str) -> None:
        await self._check(await self._http.delete("/command", params={"id": command_id}))

    async def create_session(self, cwd: Optional[str] = None) -> str:
        body = {"cwd": cwd} if cwd is not None else {}
        obj = _core.json_object(await self._check(await self._http.post("/session", json=body)))
        sid = obj.get("session_id")
        if not isinstance(sid, str):
            raise ProtocolError("POST /session: no session_id")
        return sid

    async def delete_session(self, session_id: str) -> None:
        await self._check(await self._http.delete(f"/session/{session_id}"))

    async def _open(self, follower: Follower, start: Optional[Tuple[str, str, str]]) -> Optional[httpx.Response]:
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
        response = await self._http.send(request, stream=True)
        if response.status_code == 204:
            await response.aclose()
            return None
        if response.status_code >= 400:
            try:
                error = _core.api_error(response, await response.aread())
            finally:
                await response.aclose()
            if response.status_code == 404 and follower.command_id is not None and error.code == "COMMAND_NOT_FOUND":
                raise Expired(follower.command_id, follower.last_eid)
            raise error
        return response


class AsyncExecution:
    """One command's events, each exactly once, in order: iterate it. It
    resumes by itself after a cut or a host restart."""

    def __init__(self, client: AsyncClient, follower: Follower, start: Optional[Tuple[str, str, str]]) -> None:
        self._client = client
        self._f = follower
        self._start = start
        self._response: Optional[httpx.Response] = None
        self._chunks: Optional[AsyncIterator[bytes]] = None
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

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            if self._f.ended:
                await self._disconnect()
                raise StopAsyncIteration
            await self._step()
        event = self._pending.popleft()
        self._output.add(event)
        if isinstance(event, End):
            self._end = event
        return event

    async def wait(self) -> End:
        """Reads to the end; the terminal event."""
        async for _ in self:
            pass
        assert self._end is not None
        return self._end

    async def output(self) -> Output:
        """Reads to the end; stdout and stderr rebuilt exactly."""
        await self.wait()
        return self._output.build()

    async def _until_started(self) -> None:
        while self._f.command_id is None:
            await self._step()

    async def _disconnect(self) -> None:
        if self._response is not None:
            await self._response.aclose()
        self._response = None
        self._chunks = None

    async def _step(self) -> None:
        """One read, or one reconnection (with its wait)."""
        if self._chunks is None:
            await self._reconnect(None)
            return
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            await self._reconnect(ProtocolError("the host ended the stream before the command's end"))
            return
        except httpx.TransportError as e:
            await self._reconnect(e)
            return
        self._pending.extend(self._f.feed(chunk))
        if self._f.spawned:
            # A background run: its output is logged; follow it by resume.
            self._f.spawned = False
            await self._disconnect()
            self._f.cut()

    async def _reconnect(self, cause: Optional[BaseException]) -> None:
        await self._disconnect()
        self._f.cut()
        first = cause is None and self._f.streak.started is None and self._f.reconnects == 0
        while True:
            if not first:
                cause = cause or ProtocolError("no connection")
                delay = self._f.streak.next_delay(self._client.backoff, self._f.command_id, self._f.last_eid, cause)
                await asyncio.sleep(delay)
            first = False
            try:
                response = await self._client._open(self._f, self._start)
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
            self._chunks = response.aiter_raw()
            return

    async def interrupt(self) -> None:
        await self._client.interrupt(self.id)

    async def write(self, data: bytes) -> int:
        """Sends ``data`` to the command's stdin (started with ``stdin=True``
        or ``pty``); a retry after a cut sends the same offset, so each byte
        reaches the command once. Returns the host's offset."""
        return await self._stdin(data, eof=False)

    async def close_stdin(self) -> int:
        return await self._stdin(b"", eof=True)

    async def resize(self, cols: int, rows: int) -> None:
        await self._client._check(await self._client._http.post(f"/command/{self.id}/resize", json={"cols": cols, "rows": rows}))

    async def _stdin(self, data: bytes, eof: bool) -> int:
        streak = _core.Streak()
        params: Dict[str, Any] = {"offset": self._stdin_offset}
        if eof:
            params["eof"] = "true"
        while True:
            try:
                response = await self._client._http.post(
                    f"/command/{self.id}/stdin",
                    params=params,
                    content=data,
                    headers={"Content-Type": "application/octet-stream"},
                )
                if response.status_code >= 400:
                    raise _core.api_error(response, await response.aread())
                offset = _core.json_object(response).get("offset")
                if not isinstance(offset, int):
                    raise ProtocolError("stdin: no offset in the answer")
                self._stdin_offset = offset
                return offset
            except httpx.TransportError as e:
                await asyncio.sleep(streak.next_delay(self._client.backoff, self.id, self._f.last_eid, e))
            except ApiError as e:
                if e.code == "STDIN_OFFSET" and e.offset is not None and e.offset >= self._stdin_offset + len(data):
                    self._stdin_offset = e.offset  # our bytes arrived before the cut
                    return e.offset
                if not e.transient or e.code in ("STDIN_OFFSET", "NO_STDIN", "STDIN_CLOSED", "COMMAND_FINISHED"):
                    raise
                await asyncio.sleep(streak.next_delay(self._client.backoff, self.id, self._f.last_eid, e))
