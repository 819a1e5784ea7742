"""What can go wrong, as exceptions the caller can tell apart."""

from __future__ import annotations

from typing import Optional


class ExecdError(Exception):
    """Base of every error this package raises."""


class ApiError(ExecdError):
    """The host refused a request: its HTTP status and the contract's
    ``{"code", "message"}`` body."""

    def __init__(self, status: int, code: str, message: str, offset: Optional[int] = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: ``STDIN_OFFSET``'s body names what the host has taken.
        self.offset = offset

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later (409: another reader
        holds the command under the ``exclusive`` policy)."""
        return self.status in (409, 429, 502, 503, 504)


class ProtocolError(ExecdError):
    """The host sent something this client cannot read."""


class GaveUp(ExecdError):
    """A streak of failed reconnections lasted longer than ``retry_for``."""

    def __init__(self, command_id: Optional[str], after_eid: int, attempts: int, last: BaseException):
        super().__init__(
            f"gave up on {command_id or 'the run'} after {attempts} attempts "
            f"(last eid {after_eid}): {last}"
        )
        self.command_id = command_id
        self.after_eid = after_eid
        self.attempts = attempts
        self.last = last


class Expired(ExecdError):
    """The host no longer knows the command: its retention passed."""

    def __init__(self, command_id: str, after_eid: int):
        super().__init__(f"command {command_id} expired on the host (after eid {after_eid})")
        self.command_id = command_id
        self.after_eid = after_eid
