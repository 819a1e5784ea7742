"""The typed events of a command, parsed from the host's JSON frames."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

from .errors import ProtocolError


@dataclass(frozen=True)
class Started:
    """``init``: the host handed out the command's id."""

    command_id: str


@dataclass(frozen=True)
class Stdout:
    """A piece of stdout: a line without its ``\\n``, or with ``partial``
    a piece that the next stdout event continues."""

    eid: int
    text: str
    partial: bool
    timestamp: int

    def raw(self) -> str:
        """This event's bytes of the stream, as text (see ``Output``)."""
        return piece(self.text, self.partial)


@dataclass(frozen=True)
class Stderr:
    """A piece of stderr, under the same rules as ``Stdout``."""

    eid: int
    text: str
    partial: bool
    timestamp: int

    def raw(self) -> str:
        """This event's bytes of the stream, as text (see ``Output``)."""
        return piece(self.text, self.partial)


@dataclass(frozen=True)
class Gap:
    """Events ``from_eid`` to ``to_eid`` are gone, and why: never silence."""

    from_eid: int
    to_eid: int
    reason: str
    dropped_bytes: int


@dataclass(frozen=True)
class End:
    """The command's terminal event.

    ``reason`` is the contract's (``exit``, ``signal``, ``timeout``,
    ``interrupted``, ``host-shutdown``, ``host-restarted``,
    ``spawn-failed``); from a host that does not send it, it is derived
    from ``ename``. ``exit_code`` is -1 when a signal ended the command.
    """

    eid: int
    reason: str
    exit_code: int
    signal: Optional[int]
    ename: Optional[str]
    error: Optional[str]


Event = Union[Started, Stdout, Stderr, Gap, End]


class Spawned:
    """A background run's ``execution_complete`` without an eid."""


class Keepalive:
    """Legacy framing's ``ping`` event."""


def piece(text: str, partial: bool) -> str:
    """The stream text one output event stands for.

    The host drops each line's ``\\n`` and sends an empty line as ``"\\n"``;
    a ``partial`` piece had no ``\\n`` after it.
    """
    if partial:
        return text
    if text == "\n":
        return "\n"
    return text + "\n"


_ENAME_REASONS = {"HostRestarted": "host-restarted", "HostShutdown": "host-shutdown"}


def _int(obj: Dict[str, Any], key: str, default: Optional[int] = None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"event field {key!r} is not an integer: {obj!r}")
    return value


def _str(obj: Dict[str, Any], key: str, default: Optional[str] = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(f"event field {key!r} is not a string: {obj!r}")
    return value


def parse(data: str) -> Union[Event, Spawned, Keepalive, None]:
    """One frame's data as an event; ``None`` for a type this client does
    not know (ignored, as SSE clients ignore unknown events)."""
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise ProtocolError(f"an event is not JSON: {data[:200]!r}") from e
    if not isinstance(obj, dict):
        raise ProtocolError(f"an event is not a JSON object: {data[:200]!r}")
    kind = obj.get("type")
    ts = obj.get("timestamp", 0)
    timestamp = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
    if kind == "init":
        return Started(_str(obj, "text"))
    if kind in ("stdout", "stderr"):
        cls = Stdout if kind == "stdout" else Stderr
        return cls(_int(obj, "eid"), _str(obj, "text", ""), obj.get("partial") is True, timestamp)
    if kind == "gap":
        return Gap(
            _int(obj, "from_eid"),
            _int(obj, "to_eid"),
            _str(obj, "reason", "unknown"),
            _int(obj, "dropped_bytes", 0),
        )
    if kind in ("execution_complete", "error"):
        if "eid" not in obj:
            if kind == "execution_complete":
                return Spawned()
            raise ProtocolError(f"a terminal event without eid: {obj!r}")
        return _end(obj, kind)
    if kind == "ping":
        return Keepalive()
    return None


def _end(obj: Dict[str, Any], kind: str) -> End:
    eid = _int(obj, "eid")
    signal = obj.get("signal")
    sig = signal if isinstance(signal, int) and not isinstance(signal, bool) else None
    reason = obj.get("reason")
    if kind == "execution_complete":
        return End(eid, reason if isinstance(reason, str) else "exit", 0, sig, None, None)
    err = obj.get("error")
    err = err if isinstance(err, dict) else {}
    ename = err.get("ename") if isinstance(err.get("ename"), str) else None
    evalue = err.get("evalue")
    try:
        code = int(evalue) if isinstance(evalue, (str, int)) else -1
    except ValueError:
        code = -1
    tb = err.get("traceback")
    text = tb[0] if isinstance(tb, list) and tb and isinstance(tb[0], str) else None
    if not isinstance(reason, str):
        reason = _ENAME_REASONS.get(ename or "", "signal" if code == -1 else "exit")
    return End(eid, reason, code, sig, ename, text)
