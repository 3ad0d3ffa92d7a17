"""JSON-RPC 2.0 framing and the pending-call table. Plain code: no socket, no clock, no asyncio.

:class:`RpcCodec` turns calls into frames and frames into events; :class:`PendingCalls` keeps
what is waiting for an answer, keyed by id, with deadlines the caller's clock compares against.
Both platforms (browser and CPython) drive these same objects, which is what lets one scenario
suite run on both.

:meth:`RpcCodec.parse` is the only way in for a frame: it is called once per frame, decodes it
once, never raises, and costs time linear in the frame's size whatever the frame holds, since
it runs on the event loop (in the browser, the page's own). What it refuses, as a
:class:`BadFrame` (with the call's id when it can be found, so only that call fails):

* binary frames, and text frames over ``max_message_size`` bytes in UTF-8, as they came over
  the wire (the id is looked for in the first and last 256 characters only);
* JSON nested deeper than :data:`MAX_NESTING` (checked before decoding, see there);
* anything that is not RFC 8259 JSON, including ``NaN``, ``Infinity`` and ``-Infinity``, which
  Python's decoder would otherwise accept (the encoder never sends them: ``allow_nan=False``);
* JSON that is not a JSON-RPC 2.0 response, error response or notification.
"""

from __future__ import annotations

import heapq
import json
import re
from dataclasses import dataclass
from itertools import accumulate
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
    "NotUtf8Error",
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

_new = object.__new__
_set_id = vars(Response)["id"].__set__  # the slots' own descriptors
_set_result = vars(Response)["result"].__set__

_heappush = heapq.heappush

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class NotUtf8Error(ValueError):
    """Text that has no UTF-8 form (a lone surrogate): it cannot go out in a frame."""


def _check_utf8(text: str, what: str) -> None:
    """A frame goes out as UTF-8; a lone surrogate ("\\ud800" from a file read with
    ``surrogateescape``, say) has no UTF-8 form: refuse the call at once, naming it, instead of
    a frame that cannot be sent."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise NotUtf8Error(
            f"{what} cannot be sent as UTF-8: {text[exc.start:exc.end]!a} is a lone surrogate"
            " (a browser would silently send U+FFFD in its place)"
        ) from None

#: Deeper nesting than any JSON-RPC message needs; a frame nested deeper is a bad frame, the
#: same on every Python and platform. Checked before decoding because the C scanner behind
#: ``json`` recurses once per level: with a raised recursion limit (py_ecc, via eth-account,
#: sets 100000 at import) a frame of nested brackets would overflow the C stack on CPython 3.11
#: instead of raising RecursionError. The check (:func:`_too_deep`) is linear: a few C-speed
#: passes over the frame's bytes and a Python loop per 128 brackets.
#:
#: The most expensive frame that passes every check, at the default ``max_message_size`` of
#: 16 MiB, is 16 MiB of arrays nested 198 deep, one after the other: 7 s to parse (it was 24 s
#: before parse decoded once and the check went linear), on a busy shared 2-core Xeon with
#: CPython 3.11 (``python bench/frames.py``). Nearly all of it is CPython allocating 8 million
#: lists with its garbage collector running; the check is under 1 s. ``[[],[],...]`` takes 4 s
#: (27-42 s before), 16 MiB of floats 4.5 s, an object with 1.3 million keys 3 s. Holding
#: the deep one also makes each later full collection cost 20-30 s. Lower ``max_message_size``
#: to bound all of this: the costs are linear in it.
MAX_NESTING = 200

# What the nesting check keeps of a frame's UTF-8 bytes: brackets and quotes (and backslashes,
# removed first with the escapes they start). No byte of a multi-byte UTF-8 sequence is one of
# these, so the check works on bytes and never decodes.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # opener +1, closer -1 (signed char)
_CHUNK = 128


def _too_deep(text: str) -> bool:
    """True if ``text`` nests arrays/objects deeper than :data:`MAX_NESTING`, outside strings.

    Exact for JSON text (and for any text up to where the decoder would stop on its first
    error, which is all that matters for the C stack); linear, with no regex that could
    backtrack. Inside a string, backslash escapes come in pairs from the first backslash of
    a run, so removing ``\\\\`` and then ``\\"`` leaves exactly the quotes that open and close
    strings; removing two adjacent quotes leaves every bracket on its side of the remaining
    quotes, so only strings holding brackets are left to cut out.
    """
    data = text.encode("utf-8", "surrogatepass")
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    data = data.translate(None, _NOT_STRUCTURE)
    if b'"' in data:
        data = data.replace(b'""', b"")
        if b'"' in data:
            data = b"".join(data.split(b'"')[::2])  # odd pieces are string contents
    signs = data.translate(_SIGNS)
    steps = memoryview(signs).cast("b")
    depth, size = 0, len(signs)
    for start in range(0, size, _CHUNK):
        end = min(start + _CHUNK, size)
        opens = signs.count(1, start, end)
        # The chunk cannot reach deeper than depth + opens; only then look bracket by bracket.
        if depth + opens > MAX_NESTING and max(accumulate(steps[start:end], initial=depth)) > MAX_NESTING:
            return True
        depth += 2 * opens - (end - start)
    return False


# JSON's insignificant whitespace (RFC 8259), which ``str.isspace`` would overshoot.
_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, pos: int) -> int:
    """The index of the first character at or after ``pos`` that is not JSON whitespace."""
    match = _WS.match(text, pos)
    return match.end() if match else pos


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
        # NaN/Infinity/-Infinity, and numbers too large for a float, are noted here instead of
        # raising, so the frame still decodes once and its id can take the blame. Per codec:
        # the list is read and cleared right after this codec's own decode.
        self._constants: list[str] = []
        note = self._constants.append

        def finite_float(text: str) -> float:
            value = float(text)
            if value - value:  # inf - inf is nan (truthy); 1e400 would decode as inf
                note(text)
            return value

        decoder = json.JSONDecoder(parse_constant=note, parse_float=finite_float)
        # The C scanner: ``(value, end)`` of the JSON value at an index. Called directly it
        # skips ``json.loads``'s Python layers, most of the cost of a small frame under Pyodide.
        self._scan = decoder.scan_once  # type: ignore[attr-defined]

    def request(self, method: str, params: Any = None) -> tuple[str, str]:
        """Return ``(id, frame)`` for a call; raises ``TypeError``/``ValueError`` if unencodable."""
        self._counter += 1
        call_id = str(self._counter)
        head = self._heads.get(method)
        if head is None:
            # Method names are ours or the caller's; encode them as JSON strings too.
            head = f'{{"jsonrpc":"2.0","method":{_dumps(method)},"params":'
            if not head.isascii():
                _check_utf8(head, "the method name")
            if len(self._heads) < 64:
                self._heads[method] = head
        body = "{}" if params is None or (type(params) is dict and not params) else _dumps(params)
        if not body.isascii():
            _check_utf8(body, "params")
        return call_id, f'{head}{body},"id":"{call_id}"}}'

    def parse(self, frame: str | bytes) -> Incoming:
        """Classify one frame, decoding it once. Never raises: bad input becomes :class:`BadFrame`.

        The usual frame, a small success response, takes the first return.
        """
        if type(frame) is not str and not isinstance(frame, str):
            return BadFrame(f"binary frame of {len(frame)} bytes (expected a text frame)")
        size = len(frame)
        # UTF-8 takes at most 4 bytes a character: only a frame of more than a quarter of the
        # limit in characters can be over it in bytes (and only a non-ASCII one is counted).
        if size > self.max_message_size >> 2:
            nbytes = size if frame.isascii() else len(frame.encode("utf-8", "surrogatepass"))
            if nbytes > self.max_message_size:
                return _oversized(frame, nbytes, self.max_message_size)
        try:
            # A frame shorter than MAX_NESTING, or with fewer brackets, cannot nest too deep.
            if size > MAX_NESTING and frame.count("[") + frame.count("{") > MAX_NESTING and _too_deep(frame):
                return BadFrame(f"JSON nested deeper than {MAX_NESTING} levels")
            msg, end = self._scan(frame, 0)
        except StopIteration:  # no JSON value at 0: leading whitespace, or not JSON at all
            try:
                start = _skip_ws(frame, 0)
                if not start:
                    raise StopIteration(0) from None
                msg, end = self._scan(frame, start)
            except StopIteration as exc:
                return BadFrame(f"not JSON (JSONDecodeError: {json.JSONDecodeError('Expecting value', frame, exc.value)})")
            except Exception as exc:  # noqa: BLE001 - whatever the decoder raises is a bad frame
                return self._undecodable(exc)
        except Exception as exc:  # noqa: BLE001 - ValueError, RecursionError, MemoryError...
            return self._undecodable(exc)
        if end != size and _skip_ws(frame, end) != size:
            self._constants.clear()
            return BadFrame(f"not JSON (JSONDecodeError: {json.JSONDecodeError('Extra data', frame, end)})")
        if self._constants:
            return self._non_finite(msg)
        if type(msg) is dict and msg.get("jsonrpc") == "2.0":
            call_id = msg.get("id")
            if type(call_id) is str and "result" in msg and "error" not in msg:
                # Response(call_id, result) without the frozen dataclass's Python __init__:
                # the same object, for a third of the cost (the hot path of every call).
                answer = _new(Response)
                _set_id(answer, call_id)
                _set_result(answer, msg["result"])
                return answer
        return _classify(msg)

    def _undecodable(self, exc: BaseException) -> BadFrame:
        self._constants.clear()
        if isinstance(exc, RecursionError):
            return BadFrame("JSON nested too deeply to parse")
        return BadFrame(f"not JSON ({exc.__class__.__name__}: {exc})")

    def _non_finite(self, msg: Any) -> BadFrame:
        name = self._constants[0]
        self._constants.clear()
        if name in ("NaN", "Infinity", "-Infinity"):
            reason = f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)"
        else:
            reason = f"number {name:.40} is out of range (it would be an infinite float)"
        return BadFrame(reason, _str_id(msg) if type(msg) is dict else None)


def _oversized(frame: str, nbytes: int, limit: int) -> BadFrame:
    match = _ID_RE.search(frame[:256] + frame[-256:])
    return BadFrame(
        f"frame of {nbytes} bytes exceeds max_message_size={limit}",
        match.group(1) if match else None,
    )


def _classify(msg: Any) -> Incoming:
    """Everything but the usual success response, by the JSON-RPC 2.0 rules."""
    if type(msg) is not dict:
        return BadFrame(f"not a JSON object but {type(msg).__name__}")
    if msg.get("jsonrpc") != "2.0":
        return BadFrame(f"jsonrpc member is {msg.get('jsonrpc')!r:.100}, expected '2.0'", _str_id(msg))
    if "id" not in msg or (msg["id"] is None and "method" in msg):
        method = msg.get("method")
        if not isinstance(method, str):
            return BadFrame("message has neither id nor method")
        return Notification(method, msg.get("params"))
    call_id = _str_id(msg)
    if "result" in msg:
        if "error" in msg:
            return BadFrame("response has both result and error", call_id)
        if call_id is None:
            return BadFrame(f"response id {msg['id']!r:.100} is not a string")
        return Response(call_id, msg["result"])
    if "error" in msg:
        err = msg["error"]
        if type(err) is not dict or type(err.get("code")) is not int or not isinstance(err.get("message"), str):
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
        waiters, heap = self._waiters, self._heap
        if call_id in waiters:
            raise KeyError(f"call id {call_id!r} is already pending")
        waiters[call_id] = (waiter, deadline)
        _heappush(heap, (deadline, call_id))
        if len(heap) > 64 and len(heap) > 4 * len(waiters):
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
