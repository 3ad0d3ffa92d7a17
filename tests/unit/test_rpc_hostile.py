"""Frames built to stall or crash the parser: each is refused (or parsed) in time linear in its
size, decoded once, and NaN/Infinity never pass for JSON.

Linear time is shown without timing bounds of our own: by a ratio measured in the same test
(8x the size must cost well under 30x the time), by counting the Python lines the parser runs
(none per character), and by counting decoder calls.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from circle_ws_web import rpc
from circle_ws_web.rpc import MAX_NESTING, BadFrame, ErrorResponse, Notification, Response, RpcCodec

RPC_FILE = str(Path(rpc.__file__).resolve())


def response(result_json: str, call_id: str = "1") -> str:
    return f'{{"jsonrpc":"2.0","result":{result_json},"id":"{call_id}"}}'


def best_time(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs: the least disturbed by a busy machine."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def assert_linear(
    make: Callable[[int], str], small: int, check: Callable[[Any], bool], measure: Callable[[str], object] | None = None
) -> float:
    """``measure(make(8 * small))`` takes under 30x ``measure(make(small))`` (default: parse),
    and ``check`` holds for what parse makes of both; returns the ratio."""
    codec = RpcCodec(max_message_size=2**30)
    frame1, frame8 = make(small), make(8 * small)
    assert check(codec.parse(frame1)) and check(codec.parse(frame8))
    run = measure or codec.parse
    t1 = best_time(lambda: run(frame1), 15)
    t8 = best_time(lambda: run(frame8), 7)
    ratio = t8 / t1
    assert ratio < 30, f"8x the size took {ratio:.1f}x the time ({t1 * 1e3:.2f} ms -> {t8 * 1e3:.2f} ms)"
    return ratio


def too_deep(out: Any) -> bool:
    return isinstance(out, BadFrame) and f"nested deeper than {MAX_NESTING}" in out.reason


# -- item: a small hostile frame must not stall the loop ---------------------------------------


def hostile(escaped_quotes: int) -> str:
    """A nesting prefix that forces the nesting check, then an unterminated string of \\" pairs:
    what made the old check's string regex quadratic (28 s at 20000 pairs)."""
    return "[" * 300 + '"' + '\\"' * escaped_quotes


def test_hostile_escaped_quotes_cost_linear_time():
    assert_linear(hostile, 2000, too_deep)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "[" * 300 + '"' + '\\"' * n + '"' + "]" * 300,  # terminated: a valid frame, too deep
        lambda n: '"' + '\\"' * n + "[" * 300,  # the quotes first
        lambda n: "[" * 300 + '"' + "\\\\" * n,  # escaped backslashes
        lambda n: "[" * 300 + '"[' * n,  # quotes and brackets alternating
        lambda n: "[" * 300 + "]" * 300 + '"a",' * n,  # many short strings after deep nesting
    ],
    ids=["terminated", "quotes-first", "backslashes", "quote-bracket", "many-strings"],
)
def test_other_string_heavy_hostile_frames_cost_linear_time(make):
    assert_linear(make, 2000, lambda out: isinstance(out, BadFrame))


@pytest.mark.parametrize(
    "make, deep",
    [
        # The nesting check's worst case: every bracket close to the limit.
        (lambda n: response("[" * 198 + ",".join(["[]"] * n) + "]" * 198), False),
        (lambda n: response("[" + ",".join(["[" * 198 + "]" * 198] * max(1, n // 200)) + "]"), False),
        (lambda n: response("[" + ",".join(['"[\\"]{"'] * n) + "]"), False),  # brackets in strings
        (lambda n: response("[" + ",".join(["[[1],{}]"] * n) + "]"), False),  # shallow and dense
        (lambda n: "[" * (201 + n) + "]" * (201 + n), True),
    ],
    ids=["at-the-limit", "deep-after-deep", "brackets-in-strings", "shallow", "too-deep"],
)
def test_the_nesting_check_costs_linear_time(make, deep):
    """Timed on the check alone: the decoder after it is CPython's (and slows down a little
    per object as its objects outgrow the caches, nothing to do with the frame's shape)."""
    assert_linear(make, 10_000, too_deep if deep else (lambda out: isinstance(out, Response)), rpc._too_deep)


# -- item: each frame decoded once, no Python loop per character -------------------------------


@contextmanager
def counting_decodes(codec: RpcCodec) -> Iterator[list[tuple[int, str]]]:
    """Wrap every way rpc.py can decode (the codec's scanner; a module-level scanner and
    ``json.loads``, which older versions used): records ``(start, outcome)`` per call."""
    calls: list[tuple[int, str]] = []

    def counted(decode: Callable[..., Any], scanner: bool = True) -> Callable[..., Any]:
        def wrapper(text: str, start: int = 0, **kwargs: Any) -> Any:
            try:
                value = decode(text, start) if scanner else decode(text, **kwargs)
            except StopIteration:
                calls.append((start, "no value"))
                raise
            except Exception:
                calls.append((start, "error"))
                raise
            calls.append((start, "value"))
            return value

        return wrapper

    with pytest.MonkeyPatch.context() as patch:
        for owner, name in ((codec, "_scan"), (rpc, "_scan")):
            if hasattr(owner, name):
                patch.setattr(owner, name, counted(getattr(owner, name)))
        patch.setattr(rpc.json, "loads", counted(json.loads, scanner=False))
        yield calls


@contextmanager
def python_lines_in_rpc() -> Iterator[list[int]]:
    """Counts the lines of rpc.py that run (a Python loop per character would show here)."""
    count = [0]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != RPC_FILE:
            return None
        if event == "line":
            count[0] += 1
        return tracer

    sys.settrace(tracer)
    try:
        yield count
    finally:
        sys.settrace(None)


LARGE = {
    "nested empty arrays": response("[" + ",".join(["[]"] * 300_000) + "]"),
    "arrays 198 deep": response("[" + ",".join(["[" * 198 + "]" * 198] * 2000) + "]"),
    "brackets in strings": response("[" + ",".join(['"[[{"'] * 100_000) + "]"),
    "leading and trailing whitespace": " \n" + response("[" + ",".join(["[]"] * 300_000) + "]") + "\r\n\t ",
    "trailing newline": response("[" + ",".join(["[]"] * 300_000) + "]") + "\n",
    "too deep after a long valid prefix": response("[" + ",".join(["[]"] * 300_000) + "," + "[" * 300 + "]" * 301),
    "escaped quotes": response('"' + '\\"' * 500_000 + '"'),
    "garbage after the value": response("[" + ",".join(["[]"] * 300_000) + "]") + " x",
}


@pytest.mark.parametrize("name", sorted(LARGE))
def test_no_python_loop_per_character(name):
    frame = LARGE[name]
    codec = RpcCodec()
    with python_lines_in_rpc() as lines:
        out = codec.parse(frame)
    assert not isinstance(out, BadFrame) or "nested deeper" in out.reason or "Extra data" in out.reason
    # The nesting check loops in Python once per 128 brackets (5 lines); the old one once per bracket.
    assert lines[0] < len(frame) / 16, f"{lines[0]} Python lines for {len(frame)} characters"


@pytest.mark.parametrize("name", sorted(LARGE))
def test_a_large_frame_is_decoded_once(name):
    codec = RpcCodec()
    with counting_decodes(codec) as calls:
        out = codec.parse(LARGE[name])
    decodes = [c for c in calls if c != (0, "no value")]  # a "no value at 0" probe costs nothing
    if isinstance(out, BadFrame) and "nested deeper" in out.reason:
        assert decodes == []  # refused before decoding
    else:
        assert [outcome for _, outcome in decodes] == ["value"], calls


def test_valid_and_invalid_frames_decode_exactly_once():
    frames = [
        response('{"output":"42"}'),
        "  " + response("1") + "\n",
        response("1") + "\n",
        response("NaN"),
        response("1") + "garbage",
        '{"jsonrpc": "2.0", "result": [1, 2',
        '{"jsonrpc":"2.0","method":"tick","params":[Infinity]}',
    ]
    codec = RpcCodec()
    for frame, outcome in zip(frames, ["value", "value", "value", "value", "value", "error", "value"], strict=True):
        with counting_decodes(codec) as calls:
            codec.parse(frame)
        assert [c[1] for c in calls if c[1] != "no value"] == [outcome], (frame, calls)


# -- the nesting limit is exact, wherever the brackets are -------------------------------------


def nested(depth: int, string: str = '"s"') -> str:
    """``depth`` levels of objects and arrays, alternating, each with ``string`` beside the next."""
    text = "1"
    for level in range(depth):
        text = f"[{string},{text},{string}]" if level % 2 else f'{{"k":{text},{string}:{string}}}'
    return text


STRINGS = [
    '"plain"',
    '"[[[{{{"',
    '"]]]}}}"',
    '"\\"[[["',
    '"\\\\"',
    '"\\\\\\"]]]"',
    '"\\u0022[[["',
    '"\\u005c"',
    '"a\\\\\\\\"',
    '""',
]


@pytest.mark.parametrize("string", STRINGS)
def test_the_nesting_limit_is_exact_and_ignores_strings(string):
    """200 levels parse (the response object is one of them), 201 do not, whatever strings
    (with brackets, escaped quotes, escaped backslashes) sit beside every level."""
    codec = RpcCodec()
    for depth, ok in ((MAX_NESTING - 1, True), (MAX_NESTING, False)):
        frame = response(nested(depth, string))
        assert json_depth(json.loads(frame)) == depth + 1  # valid JSON, this deep
        out = codec.parse(frame)
        assert isinstance(out, Response) if ok else too_deep(out), (depth, out)


def json_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(json_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(json_depth, value.values()), default=0)
    return 0


def test_the_nesting_limit_holds_for_a_deep_frame_after_a_long_shallow_one():
    codec = RpcCodec()
    shallow = ",".join(['["[[[","\\"{{"]'] * 5000)
    assert isinstance(codec.parse(response(f"[{shallow},{nested(MAX_NESTING - 2)}]")), Response)
    assert too_deep(codec.parse(response(f"[{shallow},{nested(MAX_NESTING - 1)}]")))
    assert json_depth(json.loads(response(f"[{shallow},{nested(MAX_NESTING - 1)}]"))) == MAX_NESTING + 1


def test_unterminated_strings_and_stray_closers_do_not_confuse_the_check():
    codec = RpcCodec()
    # Brackets inside an unterminated string are not structure: a decode error, not "too deep".
    out = codec.parse('{"jsonrpc":"2.0","result":"' + "[" * 500)
    assert isinstance(out, BadFrame) and "Unterminated string" in out.reason
    # Stray closers first: the decoder stops at the first one.
    out = codec.parse("]" * 300 + "[" * 250)
    assert isinstance(out, BadFrame) and "Expecting value" in out.reason


# -- item: NaN and Infinity are not JSON --------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "template",
    [
        '{{"jsonrpc":"2.0","result":{c},"id":"5"}}',
        '{{"jsonrpc":"2.0","result":{{"output":"42","x":[1,{c}]}},"id":"5"}}',
        '{{"id":"5","jsonrpc":"2.0","result":{c}}}',
        '{{"jsonrpc":"2.0","error":{{"code":-32010,"message":"boom","data":{c}}},"id":"5"}}',
        '  {{"jsonrpc":"2.0","result":{c},"id":"5"}}\n',
    ],
)
def test_nan_and_infinity_fail_only_the_call_they_answer(constant, template):
    out = RpcCodec().parse(template.format(c=constant))
    assert isinstance(out, BadFrame) and out.id == "5"
    assert out.reason.startswith(f"{constant} is not a JSON value")


def test_nan_without_one_of_our_ids_blames_no_call():
    codec = RpcCodec()
    for frame in (
        '{"jsonrpc":"2.0","method":"tick","params":[NaN]}',
        '{"jsonrpc":"2.0","result":NaN,"id":5}',
        "[NaN]",
        "NaN",
    ):
        out = codec.parse(frame)
        assert isinstance(out, BadFrame) and "NaN is not a JSON value" in out.reason and out.id is None


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" * 400 + ".0", "2E+999999999999"])
def test_numbers_too_large_for_a_float_are_refused_too(number):
    """They are JSON, but Python would decode them as inf: a value our own encoder refuses."""
    out = RpcCodec().parse(response(f"[1.5,{number}]", "8"))
    assert isinstance(out, BadFrame) and out.id == "8" and "out of range" in out.reason


def test_a_refused_constant_does_not_leak_into_the_next_frame():
    codec = RpcCodec()
    assert isinstance(codec.parse(response("NaN")), BadFrame)
    assert isinstance(codec.parse('{"jsonrpc":"2.0","result":[NaN, 1'), BadFrame)  # NaN, then an error
    assert isinstance(codec.parse(response("1") + "x NaN"), BadFrame)
    assert codec.parse(response("[1.5, -0.0, 1e308]", "9")) == Response("9", [1.5, -0.0, 1e308])
    assert codec.parse('{"jsonrpc":"2.0","method":"tick","params":[2.5]}') == Notification("tick", [2.5])
    err = codec.parse('{"jsonrpc":"2.0","error":{"code":1,"message":"m","data":0.5},"id":"3"}')
    assert isinstance(err, ErrorResponse) and err.error.data == 0.5
