"""What the sync and async clients share, free of I/O: the reconnection
rules, the follower's bookkeeping, request bodies and error bodies."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import httpx

from . import events as ev
from .errors import ApiError, GaveUp, ProtocolError
from .sse import Comment, Data, Decoder


@dataclass(frozen=True)
class Backoff:
    """After a cut, attempt ``n`` (from 0) waits a random time between half
    and all of ``min(initial * 2**n, max_delay)``, so that many clients cut
    at once do not come back in lockstep. A streak of failures ends with
    :class:`GaveUp` once ``retry_for`` seconds have passed; anything the
    host sends (an event, a keepalive) ends the streak, so resumes are
    unbounded while each makes progress."""

    initial: float = 0.1
    max_delay: float = 5.0
    retry_for: float = 60.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.initial * (2 ** min(attempt, 31)), self.max_delay)
        return random.uniform(ceiling / 2, ceiling)


class Streak:
    """One streak of failed attempts: when it began, how many so far."""

    def __init__(self) -> None:
        self.started: Optional[float] = None
        self.attempts = 0

    def reset(self) -> None:
        self.started = None
        self.attempts = 0

    def next_delay(self, backoff: Backoff, command_id: Optional[str], after_eid: int, cause: BaseException) -> float:
        """The wait before the next attempt, or :class:`GaveUp`."""
        now = time.monotonic()
        if self.started is None:
            self.started = now
        delay = backoff.delay(self.attempts)
        if now - self.started + delay > backoff.retry_for:
            raise GaveUp(command_id, after_eid, self.attempts, cause)
        self.attempts += 1
        return delay


class Follower:
    """The bookkeeping of one command's stream: the last eid handed out,
    the id once known, and each event exactly once."""

    def __init__(self, command_id: Optional[str], after_eid: int) -> None:
        self.command_id = command_id
        self.last_eid = after_eid
        self.decoder = Decoder()
        self.streak = Streak()
        self.ended = False
        #: A background run's POST answered `execution_complete` without
        #: eid: its events are followed by resume from here on.
        self.spawned = False
        self.reconnects = 0

    def cut(self) -> None:
        """A frame cut in the middle is incomplete: the resume sends it
        again whole."""
        self.decoder = Decoder()

    def feed(self, chunk: bytes) -> List[ev.Event]:
        out: List[ev.Event] = []
        for frame in self.decoder.feed(chunk):
            if isinstance(frame, Comment):
                self.streak.reset()
                continue
            assert isinstance(frame, Data)
            event = self._event(ev.parse(frame.data))
            if event is not None:
                out.append(event)
            if self.ended or self.spawned:
                break
        return out

    def _event(self, parsed: Union[ev.Event, ev.Spawned, ev.Keepalive, None]) -> Optional[ev.Event]:
        self.streak.reset()
        if parsed is None or isinstance(parsed, ev.Keepalive):
            return None
        if isinstance(parsed, ev.Spawned):
            self.spawned = True
            return None
        if isinstance(parsed, ev.Started):
            if self.command_id is not None:
                return None  # a retried POST's init, or a resume's
            self.command_id = parsed.command_id
            return parsed
        if isinstance(parsed, ev.Gap):
            if parsed.to_eid <= self.last_eid:
                return None
            self.last_eid = parsed.to_eid
            return parsed
        # The host never repeats an eid after the cursor; this guards the
        # exactly-once promise against one that does.
        if parsed.eid <= self.last_eid:
            return None
        self.last_eid = parsed.eid
        if isinstance(parsed, ev.End):
            self.ended = True
        return parsed


Command = Union[str, Sequence[str]]


def run_body(
    command: Command,
    cwd: Optional[str],
    env: Optional[Mapping[str, str]],
    timeout: Optional[float],
    background: bool,
    uid: Optional[int],
    gid: Optional[int],
    stdin: bool,
    pty: Optional[Tuple[int, int]],
) -> Dict[str, Any]:
    """The ``POST /command`` body; ``timeout`` in seconds, sent as ms."""
    body: Dict[str, Any] = {}
    if isinstance(command, str):
        body["command"] = command
    else:
        body["argv"] = list(command)
    if cwd is not None:
        body["cwd"] = cwd
    if env:
        body["envs"] = dict(env)
    if timeout is not None:
        body["timeout"] = max(1, int(timeout * 1000))
    if background:
        body["background"] = True
    if uid is not None:
        body["uid"] = uid
    if gid is not None:
        body["gid"] = gid
    if stdin:
        body["stdin"] = True
    if pty is not None:
        body["pty"] = {"cols": pty[0], "rows": pty[1]}
    return body


def api_error(response: httpx.Response, body: bytes) -> ApiError:
    """The contract's error body, or what the host sent instead."""
    code, message, offset = "UNKNOWN", body[:500].decode("utf-8", "replace"), None
    try:
        obj = json.loads(body)
        if isinstance(obj, dict):
            code = str(obj.get("code", code))
            message = str(obj.get("message", message))
            off = obj.get("offset")
            offset = off if isinstance(off, int) else None
    except ValueError:
        pass
    return ApiError(response.status_code, code, message, offset)


def json_object(response: httpx.Response) -> Dict[str, Any]:
    try:
        obj = response.json()
    except ValueError as e:
        raise ProtocolError(f"{response.request.url.path}: not JSON") from e
    if not isinstance(obj, dict):
        raise ProtocolError(f"{response.request.url.path}: not a JSON object")
    return obj


def transient(error: BaseException) -> bool:
    """Whether a failed attempt may succeed later: the host away, the
    connection cut, or a transient status."""
    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, ApiError) and error.transient


@dataclass(frozen=True)
class Logs:
    """A background command's bytes from a cursor, and where the next read
    starts (``cursor``); ``head``: the oldest kept byte when some were
    dropped."""

    data: bytes
    cursor: int
    head: Optional[int]


def logs_from(response: httpx.Response, cursor: int) -> Logs:
    tail = response.headers.get("EXECD-COMMANDS-TAIL-CURSOR")
    head = response.headers.get("EXECD-COMMANDS-HEAD-CURSOR")
    data = response.content
    try:
        next_cursor = int(tail) if tail is not None else cursor + len(data)
        head_cursor = int(head) if head is not None else None
    except ValueError as e:
        raise ProtocolError(f"bad cursor header: {tail!r} / {head!r}") from e
    return Logs(data, next_cursor, head_cursor)
