"""A fuzzer for the frame parser: whatever arrives, ``RpcCodec.parse`` returns one of the four
documented types, never raises, and says exactly what an independent oracle says.

The oracle is ``json.loads`` with NaN/Infinity and infinite floats refused, a depth count on
the decoded value, and the JSON-RPC 2.0 shape rules written out again from the spec. Frames
come from JSON-RPC-shaped messages (valid and with wrong types everywhere), mutations of them
(truncated, characters changed, nested deeper, huge numbers, NaN/Infinity spliced in,
duplicate keys), binary frames and arbitrary text. A last test shows parse time is linear in
the frame's size for random frames of each kind.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circle_ws_web.errors import JsonRpcError
from circle_ws_web.rpc import MAX_NESTING, BadFrame, ErrorResponse, Notification, Response, RpcCodec

LIMIT = 64 * 1024  # max_message_size for the fuzzed codec: oversized frames are cheap to make
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# -- the oracle ----------------------------------------------------------------------------------


class Refused(Exception):
    """A value RFC 8259 JSON has no room for."""


def refuse_constant(name: str) -> Any:
    raise Refused(name)


def finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise Refused(text)
    return value


def depth_of(value: Any) -> int:
    """Nesting depth of a decoded value (a scalar is 0, ``[]`` is 1), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def our_id(msg: Any) -> str | None:
    return msg.get("id") if isinstance(msg, dict) and isinstance(msg.get("id"), str) else None


def oracle(frame: str | bytes) -> tuple[type, Any]:
    """``(class, payload)`` parse must return: payload is the id for a BadFrame (None: no call
    to blame; "?": oversized, any id found in the frame), else the whole expected object."""
    if not isinstance(frame, str):
        return BadFrame, None
    if len(frame) > LIMIT:
        return BadFrame, "?"
    try:
        lenient = json.loads(frame)  # NaN and friends allowed: only to see depth and id
    except (ValueError, RecursionError):
        return BadFrame, None
    if depth_of(lenient) > MAX_NESTING:
        return BadFrame, None
    try:
        msg = json.loads(frame, parse_constant=refuse_constant, parse_float=finite_float)
    except Refused:
        return BadFrame, our_id(lenient)
    # JSON-RPC 2.0, section 5 (responses) and 4.1 (notifications), as the client reads them.
    if not isinstance(msg, dict):
        return BadFrame, None
    call_id = our_id(msg)
    if msg.get("jsonrpc") != "2.0":
        return BadFrame, call_id
    if "id" not in msg or (msg["id"] is None and "method" in msg):
        if isinstance(msg.get("method"), str):
            return Notification, Notification(msg["method"], msg.get("params"))
        return BadFrame, None
    has_result, has_error = "result" in msg, "error" in msg
    if has_result and has_error:
        return BadFrame, call_id
    if has_result:
        return (Response, Response(call_id, msg["result"])) if call_id is not None else (BadFrame, None)
    if has_error:
        err = msg["error"]
        well_formed = (
            isinstance(err, dict)
            and isinstance(err.get("code"), int)
            and not isinstance(err.get("code"), bool)
            and isinstance(err.get("message"), str)
        )
        if not well_formed:
            return BadFrame, call_id
        return ErrorResponse, ErrorResponse(call_id, JsonRpcError(err["code"], err["message"], err.get("data")))
    return BadFrame, call_id


def check(frame: str | bytes) -> Any:
    out = RpcCodec(max_message_size=LIMIT).parse(frame)  # must not raise
    assert type(out) in (Response, ErrorResponse, Notification, BadFrame), type(out)
    kind, payload = oracle(frame)
    assert type(out) is kind, (frame[:300], out)
    if kind is BadFrame:
        assert isinstance(out.reason, str) and out.reason
        if payload == "?":
            assert out.id is None or (out.id.isdigit() and f'"{out.id}"' in frame)
        else:
            assert out.id == payload, (frame[:300], out)
    elif kind is ErrorResponse:
        assert out.id == payload.id
        assert (out.error.code, out.error.message, out.error.data) == (
            payload.error.code,
            payload.error.message,
            payload.error.data,
        )
    else:
        assert out == payload, (frame[:300], out)
    return out


# -- what frames are made of ---------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "[", "]{", '"', "\\", '\\"', "\u2028", "\x00", "é", "𝄞"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
ids = st.one_of(
    st.integers(1, 10**6).map(str),
    st.text(max_size=8),
    st.integers(),
    st.none(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
good_errors = st.fixed_dictionaries(
    {"code": st.integers(-33000, 1000), "message": st.text(max_size=10)}, optional={"data": values}
)
errors = st.one_of(
    good_errors,
    st.fixed_dictionaries({"code": st.one_of(st.booleans(), st.text(max_size=3), st.floats()), "message": st.text()}),
    st.fixed_dictionaries({"code": st.integers()}, optional={"message": st.integers() | st.none()}),
    values,
)
MISSING = object()


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """JSON-RPC-shaped objects: a response, an error response, a notification or a mix, each
    member right most of the time, and missing, doubled up or of a wrong type otherwise."""
    kind = draw(st.sampled_from(["response", "response", "error", "notification", "anything"]))
    wrong = st.floats(0, 1).map(lambda x: x < 0.15)  # this member goes wrong
    msg: dict[str, Any] = {"jsonrpc": "2.0"}
    if draw(wrong):
        msg["jsonrpc"] = draw(st.sampled_from(["1.0", "2", 2.0, None, MISSING]))
    if kind != "notification" or draw(wrong):
        msg["id"] = draw(ids) if draw(wrong) else str(draw(st.integers(1, 10**6)))
    if kind == "response" or (kind == "anything" and draw(st.booleans())):
        msg["result"] = draw(values)
    if kind == "error" or (kind == "anything" and draw(st.booleans())):
        msg["error"] = draw(errors) if draw(wrong) else draw(good_errors)
    if kind == "notification" or (kind == "anything" and draw(st.booleans())):
        msg["method"] = draw(st.integers()) if draw(wrong) else draw(st.sampled_from(["tick", "", "progress"]))
        if draw(st.booleans()):
            msg["params"] = draw(values)
    if draw(wrong):
        msg.update(draw(st.dictionaries(st.text(max_size=5), values, max_size=2)))
    msg = {k: v for k, v in msg.items() if v is not MISSING}
    keys = list(msg)
    draw(st.randoms(use_true_random=False)).shuffle(keys)
    return {k: msg[k] for k in keys}


@st.composite
def encoded(draw: st.DrawFn) -> str:
    """A message as some server might write it: any whitespace, escaping, key order."""
    msg = draw(messages())
    text = json.dumps(
        msg,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, None, 0, 2, "\t"])),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")])),
    )
    # JSON whitespace, and now and then a character str.isspace() takes for whitespace but JSON does not.
    ws = st.sampled_from(["", "", "", " ", "\n", "\r\n", "\t", "  ", "\x0b", "\x0c", "\u00a0", "\u2028", "\x1c"])
    return draw(ws) + text + draw(ws)


NASTY = ["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1" * 400 + ".5", "9" * 5000, "1" * 400, "nan", "inf", "--1", "01"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    frame = draw(encoded())
    kind = draw(st.sampled_from(["truncate", "change", "insert", "splice", "nest", "duplicate", "value"]))
    at = draw(st.integers(0, len(frame)))
    if kind == "truncate":
        return frame[:at]
    if kind == "change" and frame:
        at = min(at, len(frame) - 1)
        return frame[:at] + draw(st.sampled_from('[]{}",:\\ 0aé\x00')) + frame[at + 1 :]
    if kind == "insert":
        return frame[:at] + draw(st.sampled_from(['"', "\\", '\\"', "[", "]", "{", "}", ",", "NaN"])) + frame[at:]
    if kind == "splice":  # a nasty number where a value was
        spots = [m.start() for m in re.finditer(r"(?<=[:\[,])\s*(-?\d|null|true|false|\")", frame)]
        if spots:
            start = draw(st.sampled_from(spots))
            end = start + len(re.match(r'\s*(-?[\d.eE+-]+|null|true|false|"(?:[^"\\]|\\.)*")', frame[start:]).group())
            return frame[:start] + draw(st.sampled_from(NASTY)) + frame[end:]
        return frame + draw(st.sampled_from(NASTY))
    if kind == "nest":  # around the whole frame, or as the result, near the limit
        depth = draw(st.integers(MAX_NESTING - 3, MAX_NESTING + 3))
        opener = draw(st.sampled_from(["[", '{"k":']))
        closer = "]" if opener == "[" else "}"
        inner = draw(st.sampled_from(["1", '"[\\"{"', "[]", "NaN"]))
        deep = opener * depth + inner + closer * depth
        if draw(st.booleans()):
            return deep
        return json.dumps({"jsonrpc": "2.0", "id": str(at), "result": 0}).replace("0}", deep + "}")
    if kind == "duplicate":
        key = draw(st.sampled_from(["id", "jsonrpc", "result", "error"]))
        value = json.dumps(draw(values | ids))
        return frame.replace("{", f'{{"{key}":{value},', 1) if draw(st.booleans()) else frame.replace("}", f',"{key}":{value}}}', 1)
    # a huge value somewhere: oversized for the fuzzed codec
    return frame.replace('"result"', '"result":"' + "x" * LIMIT + '","r"', 1) if '"result"' in frame else frame


TRICKY_STRINGS = ["", "[", "]", "{[", "]}", '"', "\\", '\\"', '"[', "\\[", "\\\\", "[\\", 'a\\"]', "\u2028", "\ud800"]


@st.composite
def deep_valid(draw: st.DrawFn) -> str:
    """Valid JSON-RPC responses nested right around MAX_NESTING, strings with brackets,
    quotes and backslashes beside every level: where the nesting check must be exact.
    (One random generator per example drives the 200 levels: drawing each from hypothesis
    would make every example a thousand draws.)"""
    depth = draw(st.integers(MAX_NESTING - 4, MAX_NESTING + 2))  # levels inside the response object
    rng = draw(st.randoms(use_true_random=False))
    tricky = [json.dumps(t) for t in TRICKY_STRINGS]
    text = rng.choice(["1", "[]", "{}", '"x"', "null"])
    leaf_depth = 1 if text in ("[]", "{}") else 0
    for _ in range(depth - leaf_depth):
        siblings = [rng.choice(tricky + ["[]", "[[]]", "{}", '["]"]']) for _ in range(rng.randrange(3))]
        if rng.random() < 0.5:
            text = "[" + ",".join([*siblings, text]) + "]"
        else:
            members = [f"{rng.choice(tricky)}:{sib}" for sib in siblings]
            text = "{" + ",".join([*members, f"{rng.choice(tricky)}:{text}"]) + "}"
    return json.dumps({"jsonrpc": "2.0", "id": "5", "result": None}).replace("null", text)


frames = st.one_of(
    encoded(),
    deep_valid(),
    mutated(),
    mutated(),
    st.binary(max_size=64),
    st.text(max_size=200),
    st.text(alphabet='[]{}",:\\ntrufalsNIy0123456789.eE+- \n\t', max_size=300),
)


# -- the properties ------------------------------------------------------------------------------


@FUZZ
@given(frames)
def test_parse_agrees_with_the_oracle_on_any_frame(frame):
    check(frame)


@settings(max_examples=80, deadline=None, database=None)
@given(deep_valid())
def test_the_nesting_limit_is_exact_on_valid_frames_with_tricky_strings(frame):
    out = check(frame)
    assert isinstance(out, Response) == (depth_of(json.loads(frame)) <= MAX_NESTING)


@settings(max_examples=200, deadline=None, database=None)
@given(encoded())
def test_well_formed_responses_parse_as_written(frame):
    """The usual traffic, separately, so most examples are near-valid frames."""
    out = check(frame)
    if isinstance(out, Response):
        msg = json.loads(frame)
        assert (out.id, out.result) == (msg["id"], msg["result"])


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(st.sampled_from(['"', "\\", "[", "]", "{", "}", "x", ",", '"\\"', "NaN", "\ud800", "é"]), max_size=400))
def test_bracket_and_quote_soup_never_confuses_the_nesting_check(parts):
    """Dense quotes, backslashes and brackets: where the nesting check has to find strings."""
    soup = "".join(parts)
    for frame in (soup, "[" * 150 + soup + "]" * 150, '{"jsonrpc":"2.0","id":"1","result":' + soup + "}"):
        check(frame)


def test_the_oracle_itself_tells_the_classes_apart():
    """Guard against a vacuous fuzzer: each class occurs, for the reason it should."""
    assert oracle('{"jsonrpc":"2.0","result":1,"id":"1"}') == (Response, Response("1", 1))
    assert oracle('{"jsonrpc":"2.0","result":NaN,"id":"1"}') == (BadFrame, "1")
    assert oracle('{"jsonrpc":"2.0","result":1e400,"id":"2"}') == (BadFrame, "2")
    assert oracle("[" * 201 + "]" * 201) == (BadFrame, None)
    assert oracle("[" * 200 + "]" * 200)[0] is BadFrame  # a list, not an object
    assert oracle('{"jsonrpc":"2.0","method":"m"}') == (Notification, Notification("m", None))
    assert oracle('{"jsonrpc":"2.0","error":{"code":true,"message":"m"},"id":"3"}') == (BadFrame, "3")
    assert oracle('{"jsonrpc":"2.0","error":{"code":1,"message":"m"},"id":3}')[0] is ErrorResponse


# -- time linear in size, on random frames -------------------------------------------------------

UNITS = [
    "[]", "{}", '""', '"\\""', '"\\\\"', '"[{"', "[[1],{}]", '{"a":[1,2]}', "0.5", "1e5", "true",
    "[" * 150 + "]" * 150, '"' + "\\u00e9" * 3 + '"', '["]","[","\\"["]',
]
BROKEN = ["[", '"', "\\", '\\"', "{", "]", ",", "NaN", '"[', '["\\'] + UNITS


def test_parse_time_is_linear_in_the_frame_size_for_random_frames():
    """Random frames of ~20 KB and 8x that: the larger costs well under 30x the time."""
    rng = random.Random(20261201)
    ratios = []
    for trial in range(8):
        units = rng.sample(UNITS if trial % 2 else BROKEN, 4)

        def make(n: int, units: list[str] = units, seed: int = trial) -> str:
            pick = random.Random(seed)
            body = ",".join(pick.choice(units) for _ in range(n))
            return '{"jsonrpc":"2.0","result":[' + body + '],"id":"7"}'

        codec = RpcCodec(max_message_size=2**30)
        small, large = make(2000), make(16000)
        # Best of several, the two sizes in turns: a busy machine slows single runs, not all
        # of them (a quadratic check would be ~64x here, linear ~8x).
        best = [float("inf"), float("inf")]
        for _ in range(6):
            for i, frame in enumerate((small, large)):
                start = time.perf_counter()
                out = codec.parse(frame)
                best[i] = min(best[i], time.perf_counter() - start)
                assert type(out) in (Response, BadFrame)
        ratios.append(best[1] / best[0])
    assert max(ratios) < 30, [round(r, 1) for r in ratios]
