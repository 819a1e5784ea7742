"""Reading frames off the wire, in either framing.

The host frames events as WHATWG ``text/event-stream`` (``id:``/``event:``/
``data:`` lines, a blank line) or as execd's legacy bare JSON object and a
blank line. One decoder reads both: a line that starts with ``{`` can only
be a legacy object (no SSE field name starts with a brace), so the client
never needs to know which framing a host defaults to.

Lines end at ``\\r\\n``, ``\\n`` or ``\\r`` (WHATWG); a ``\\r`` at the very
end of a chunk waits for the next one, since it may be half of ``\\r\\n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union


@dataclass(frozen=True)
class Data:
    """A dispatched event's data (the JSON text) and its SSE id, if any."""

    data: str
    last_event_id: Optional[str] = None


@dataclass(frozen=True)
class Comment:
    """A comment line (``: ping``): proof that the stream is alive."""


Frame = Union[Data, Comment]


class Decoder:
    """Incremental decoder: feed bytes as they arrive, take whole frames out.

    Bytes of an incomplete frame wait for more, so a cut in the middle of an
    event yields nothing for it; the resume sends it again whole.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._data: List[str] = []
        self._has_data = False
        self._id: Optional[str] = None
        self._bom_checked = False

    def feed(self, chunk: bytes) -> List[Frame]:
        """Appends ``chunk`` and returns every frame it completed."""
        self._buf += chunk
        if not self._bom_checked and len(self._buf) >= 3:
            if self._buf[:3] == b"\xef\xbb\xbf":
                del self._buf[:3]
            self._bom_checked = True
        frames: List[Frame] = []
        while True:
            line = self._take_line()
            if line is None:
                return frames
            frame = self._line(line)
            if frame is not None:
                frames.append(frame)

    def _take_line(self) -> Optional[str]:
        buf = self._buf
        for i, byte in enumerate(buf):
            if byte == 0x0A:
                line, rest = bytes(buf[:i]), i + 1
                break
            if byte == 0x0D:
                if i + 1 == len(buf):
                    return None  # may be the first half of \r\n
                line = bytes(buf[:i])
                rest = i + 2 if buf[i + 1] == 0x0A else i + 1
                break
        else:
            return None
        del buf[:rest]
        return line.decode("utf-8", errors="replace")

    def _line(self, line: str) -> Optional[Frame]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return Comment()
        if line.startswith("{") and not self._has_data:
            # execd's legacy framing: the line is the whole object.
            self._data.append(line)
            self._has_data = True
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "id" and "\0" not in value:
            self._id = value
        # `event`, `retry` and unknown fields change nothing here: the
        # JSON's own `type` says what an event is.
        return None

    def _dispatch(self) -> Optional[Frame]:
        if not self._has_data:
            return None
        frame = Data("\n".join(self._data), self._id)
        self._data = []
        self._has_data = False
        return frame
