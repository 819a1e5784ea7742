"""Rebuilding a command's stdout and stderr exactly from its events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from .events import Event, Gap, Stderr, Stdout


@dataclass
class Output:
    """Each stream's text rebuilt from its events: every event's text, plus
    ``\\n`` unless ``partial`` (the contract's rule), and the gaps met.

    Output that was valid UTF-8 comes back byte for byte through
    :attr:`stdout_bytes`; invalid bytes arrive as U+FFFD (the contract's
    rule; ``logs()`` has the raw bytes of background commands).
    """

    stdout: str = ""
    stderr: str = ""
    gaps: List[Gap] = field(default_factory=list)

    @property
    def stdout_bytes(self) -> bytes:
        return self.stdout.encode("utf-8")

    @property
    def stderr_bytes(self) -> bytes:
        return self.stderr.encode("utf-8")

    @property
    def complete(self) -> bool:
        """Whether nothing was lost (no gap)."""
        return not self.gaps


class OutputBuilder:
    """Accumulates pieces without quadratic string concatenation."""

    def __init__(self) -> None:
        self._out: List[str] = []
        self._err: List[str] = []
        self._gaps: List[Gap] = []

    def add(self, event: Event) -> None:
        if isinstance(event, Stdout):
            self._out.append(event.raw())
        elif isinstance(event, Stderr):
            self._err.append(event.raw())
        elif isinstance(event, Gap):
            self._gaps.append(event)

    def build(self) -> Output:
        return Output("".join(self._out), "".join(self._err), list(self._gaps))
