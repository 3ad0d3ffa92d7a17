"""A test kit for code that uses circle-ws-web: a virtual clock, a fake, faulty server, and
fake browser page events.

Why: what matters about a client is what it does when the server misbehaves (drops, stalls,
goes silent, lies, answers late), and all of that is about time. These pieces let a test
provoke each fault on purpose and watch the outcome in virtual time, without a network, in
CPython and in Pyodide alike (no threads, sockets or ``websockets`` here)::

    from circle_ws_web import CircleWsClient
    from circle_ws_web.testing import FakeServer, VirtualClock

    clock = VirtualClock()
    server = FakeServer(require_auth=True, clock=clock)
    client = CircleWsClient("ws://fake", KEY, transport_factory=server, clock=clock)
    await clock.run_until_complete(client.connect())
    server.faults.drop()
    await clock.run_until(lambda: client.is_connected and server.attempts == 2)

See docs/testing.md for every fault, with examples.
"""

from ._clock import LoopClock, PendingTimer, VirtualClock
from ._eval import ScriptError, safe_eval
from ._page import FakePageEvents
from ._server import (
    GARBAGE,
    NO_ANSWER,
    Close,
    FakeNetwork,
    FakeServer,
    FakeSocket,
    Faults,
    Request,
)

__all__ = [
    "Close",
    "FakeNetwork",
    "FakePageEvents",
    "FakeServer",
    "FakeSocket",
    "Faults",
    "GARBAGE",
    "LoopClock",
    "NO_ANSWER",
    "PendingTimer",
    "Request",
    "ScriptError",
    "VirtualClock",
    "safe_eval",
]
