"""JSON-RPC 2.0 framing and the pending-call table. Plain code: no socket, no clock, no asyncio.

:class:`RpcCodec` turns calls into frames and frames into events; :class:`PendingCalls` keeps
what is waiting for an answer, keyed by id, with deadlines the caller's clock compares against.
Both platforms (browser and CPython) drive these same objects, which is what lets one scenario
suite run on both.
"""

from __future__ import annotations

import heapq
import json
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Union

from .errors import JsonRpcError

__all__ = [
    "AUTH_FAILED",
    "AUTH_REQUIRED",
    "BadFrame",
    "ErrorResponse",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "Notification",
    "PARSE_ERROR",
    "PendingCalls",
    "Response",
    "RpcCodec",
    "SCRIPT_ERROR",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
AUTH_REQUIRED = -32001
AUTH_FAILED = -32002
SCRIPT_ERROR = -32010


@dataclass(frozen=True, slots=True)
class Response:
    """A successful answer to the request with this id."""

    id: str
    result: Any


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An error answer; ``id`` is None when the server could not tell which request failed."""

    id: str | None
    error: JsonRpcError


@dataclass(frozen=True, slots=True)
class Notification:
    """A server message without id."""

    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that is not valid JSON-RPC 2.0. ``id`` is set when a call can still be blamed."""

    reason: str
    id: str | None = None


Incoming = Union[Response, ErrorResponse, Notification, BadFrame]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
#: The C scanner behind ``json.loads``: ``(value, end)`` of the JSON text at an index. Called
#: directly it skips ``json.loads``'s Python layers (type checks, BOM check, two regex matches),
#: most of the cost of a small frame under Pyodide.
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(text: str) -> Any:
    """``json.loads(text)``, on the short path when ``text`` is one JSON value and nothing else."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        return json.loads(text)  # leading whitespace, or not JSON: its own answer or error
    if end != len(text):
        return json.loads(text)  # trailing whitespace (fine) or garbage (an error)
    return value

#: Deeper nesting than any JSON-RPC message needs. Checked before parsing: the C scanner
#: recurses, and with a raised recursion limit (some libraries raise it at import) a hostile
#: frame of nested brackets would overflow the C stack instead of raising RecursionError.
MAX_NESTING = 200
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _too_deep(text: str) -> bool:
    """True if ``text`` nests arrays/objects deeper than :data:`MAX_NESTING`."""
    if text.count("[") + text.count("{") <= MAX_NESTING:  # cheap bound, C speed: the usual case
        return False
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return True
        else:
            depth -= 1
    return False


# Finds the id of an oversized frame without parsing it all (ids are ours: decimal strings).
_ID_RE = re.compile(r'"id"\s*:\s*"(\d{1,20})"')


class RpcCodec:
    """Encodes requests with fresh ids and classifies every incoming frame.

    Ids are a per-codec counter rendered as a string: unique per connection, cheap, and never
    reused, so a late answer to an old call can never be mistaken for a new one.
    """

    def __init__(self, max_message_size: int = 16 * 2**20) -> None:
        self.max_message_size = max_message_size
        self._counter = 0
        self._heads: dict[str, str] = {}  # method -> the frame up to its params

    def request(self, method: str, params: Any = None) -> tuple[str, str]:
        """Return ``(id, frame)`` for a call; raises ``TypeError``/``ValueError`` if unencodable."""
        self._counter += 1
        call_id = str(self._counter)
        head = self._heads.get(method)
        if head is None:
            # Method names are ours or the caller's; encode them as JSON strings too.
            head = f'{{"jsonrpc":"2.0","method":{_dumps(method)},"params":'
            if len(self._heads) < 64:
                self._heads[method] = head
        body = "{}" if params is None or (type(params) is dict and not params) else _dumps(params)
        return call_id, f'{head}{body},"id":"{call_id}"}}'

    def parse_result(self, frame: str | bytes) -> tuple[str, Any] | None:
        """The short path of :meth:`parse`: ``(id, result)`` if ``frame`` is a well-formed
        success response (what :meth:`parse` would return as :class:`Response`), else None,
        and the caller asks :meth:`parse`."""
        if type(frame) is not str or len(frame) > self.max_message_size or _too_deep(frame):
            return None
        try:
            msg, end = _scan(frame, 0)
        except (StopIteration, ValueError, RecursionError):
            return None  # not JSON, or nested too deep: parse() says why
        if end != len(frame) or type(msg) is not dict or msg.get("jsonrpc") != "2.0":
            return None
        call_id = msg.get("id")
        if type(call_id) is not str or "result" not in msg or "error" in msg:
            return None
        return call_id, msg["result"]

    def parse(self, frame: str | bytes) -> Incoming:
        """Classify one frame. Never raises: bad input becomes :class:`BadFrame`."""
        if not isinstance(frame, str):
            return BadFrame(f"binary frame of {len(frame)} bytes (expected a text frame)")
        if len(frame) > self.max_message_size:
            head_tail = frame[:256] + frame[-256:]
            match = _ID_RE.search(head_tail)
            return BadFrame(
                f"frame of {len(frame)} characters exceeds max_message_size={self.max_message_size}",
                match.group(1) if match else None,
            )
        if _too_deep(frame):
            return BadFrame(f"JSON nested deeper than {MAX_NESTING} levels")
        try:
            msg = _loads(frame)
        except ValueError as exc:
            return BadFrame(f"not JSON ({exc.__class__.__name__}: {exc})")
        except RecursionError:
            return BadFrame("JSON nested too deeply to parse")
        if type(msg) is not dict:
            return BadFrame(f"not a JSON object but {type(msg).__name__}")
        if msg.get("jsonrpc") != "2.0":
            return BadFrame(f"jsonrpc member is {msg.get('jsonrpc')!r}, expected '2.0'", _str_id(msg))
        if "id" not in msg or (msg["id"] is None and "method" in msg):
            method = msg.get("method")
            if not isinstance(method, str):
                return BadFrame("message has neither id nor method")
            return Notification(method, msg.get("params"))
        raw_id = msg["id"]
        call_id = _str_id(msg)
        if "result" in msg:
            if "error" in msg:
                return BadFrame("response has both result and error", call_id)
            if call_id is None:
                return BadFrame(f"response id {raw_id!r} is not a string")
            return Response(call_id, msg["result"])
        if "error" in msg:
            err = msg["error"]
            if (
                type(err) is not dict
                or type(err.get("code")) is not int
                or not isinstance(err.get("message"), str)
            ):
                return BadFrame(f"malformed error object {err!r:.200}", call_id)
            return ErrorResponse(call_id, JsonRpcError(err["code"], err["message"], err.get("data")))
        return BadFrame("response has neither result nor error", call_id)


def _str_id(msg: dict[str, Any]) -> str | None:
    value = msg.get("id")
    return value if isinstance(value, str) else None


W = TypeVar("W")


class PendingCalls(Generic[W]):
    """Calls waiting for an answer: id -> waiter, each with a deadline.

    The owner supplies the clock: :meth:`expired` takes ``now`` and :meth:`next_deadline` says
    when to look again, so an I/O layer needs one timer per connection, not one per call.
    Deadlines live in a heap with lazy deletion; it is compacted when stale entries dominate.
    """

    __slots__ = ("_waiters", "_heap")

    def __init__(self) -> None:
        self._waiters: dict[str, tuple[W, float]] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._waiters)

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._waiters

    def add(self, call_id: str, waiter: W, deadline: float) -> None:
        if call_id in self._waiters:
            raise KeyError(f"call id {call_id!r} is already pending")
        self._waiters[call_id] = (waiter, deadline)
        heapq.heappush(self._heap, (deadline, call_id))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._waiters):
            self._compact()

    def pop(self, call_id: str) -> W | None:
        """Remove and return the waiter for ``call_id``, or None if it is unknown (or done)."""
        entry = self._waiters.pop(call_id, None)
        return None if entry is None else entry[0]

    def next_deadline(self) -> float | None:
        """The earliest deadline of a call still pending, or None."""
        heap, waiters = self._heap, self._waiters
        while heap:
            deadline, call_id = heap[0]
            entry = waiters.get(call_id)
            if entry is not None and entry[1] == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def expired(self, now: float) -> list[tuple[str, W]]:
        """Remove and return every call whose deadline is at or before ``now``."""
        out: list[tuple[str, W]] = []
        heap, waiters = self._heap, self._waiters
        while heap and heap[0][0] <= now:
            deadline, call_id = heapq.heappop(heap)
            entry = waiters.get(call_id)
            if entry is not None and entry[1] == deadline:
                del waiters[call_id]
                out.append((call_id, entry[0]))
        return out

    def drain(self) -> list[W]:
        """Remove and return every waiter (the connection is gone)."""
        out = [w for w, _ in self._waiters.values()]
        self._waiters.clear()
        self._heap.clear()
        return out

    def _compact(self) -> None:
        self._heap = [(d, i) for i, (_, d) in self._waiters.items()]
        heapq.heapify(self._heap)
