"""execd-client: a client for execd-host that never loses a line.

``Client`` and ``AsyncClient`` run commands and follow their events, each
exactly once, through cuts and host restarts (see the package README).
"""

from ._core import Backoff, Logs
from .aio import AsyncClient, AsyncExecution
from .client import Client, Execution
from .errors import ApiError, ExecdError, Expired, GaveUp, ProtocolError
from .events import End, Event, Gap, Started, Stderr, Stdout
from .output import Output

__all__ = [
    "ApiError", "AsyncClient", "AsyncExecution", "Backoff", "Client", "End", "Event",
    "ExecdError", "Execution", "Expired", "Gap", "GaveUp", "Logs", "Output",
    "ProtocolError", "Started", "Stderr", "Stdout",
]
