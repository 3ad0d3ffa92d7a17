"""The sans-I/O JSON-RPC codec and pending-call table: every frame class, every edge."""

import json

import pytest

from circle_ws_web.errors import JsonRpcError
from circle_ws_web.rpc import BadFrame, ErrorResponse, Notification, PendingCalls, Response, RpcCodec


def test_request_frames_are_valid_json_rpc_with_unique_string_ids():
    codec = RpcCodec()
    ids = set()
    for i in range(100):
        call_id, frame = codec.request("play", {"script": f"{i} + 1", "ü": "✓"})
        msg = json.loads(frame)
        assert msg == {"jsonrpc": "2.0", "method": "play", "params": {"script": f"{i} + 1", "ü": "✓"}, "id": call_id}
        assert isinstance(call_id, str)
        ids.add(call_id)
    assert len(ids) == 100


def test_request_without_params_sends_empty_object_and_escapes_method():
    _, frame = RpcCodec().request('we"ird')
    assert json.loads(frame) == {"jsonrpc": "2.0", "method": 'we"ird', "params": {}, "id": "1"}


def test_unencodable_params_raise():
    with pytest.raises(TypeError):
        RpcCodec().request("play", {"x": object()})
    with pytest.raises(ValueError):
        RpcCodec().request("play", {"x": float("nan")})


def parse(obj, **kw):
    return RpcCodec(**kw).parse(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))


def test_response_and_error_response():
    assert parse({"jsonrpc": "2.0", "result": {"output": "42"}, "id": "7"}) == Response("7", {"output": "42"})
    assert parse({"jsonrpc": "2.0", "result": None, "id": "7"}) == Response("7", None)
    err = parse({"jsonrpc": "2.0", "error": {"code": -32010, "message": "boom", "data": [1]}, "id": "3"})
    assert isinstance(err, ErrorResponse) and err.id == "3"
    assert isinstance(err.error, JsonRpcError)
    assert (err.error.code, err.error.message, err.error.data) == (-32010, "boom", [1])
    null_id = parse({"jsonrpc": "2.0", "error": {"code": -32700, "message": "parse"}, "id": None})
    assert isinstance(null_id, ErrorResponse) and null_id.id is None


def test_notification():
    assert parse({"jsonrpc": "2.0", "method": "tick", "params": [1]}) == Notification("tick", [1])
    assert parse({"jsonrpc": "2.0", "method": "tick"}) == Notification("tick", None)


@pytest.mark.parametrize(
    "frame, reason, blamed",
    [
        ("not json", "not JSON", None),
        ("[1,2,3]", "not a JSON object but list", None),
        ('"str"', "not a JSON object but str", None),
        ({"jsonrpc": "1.0", "result": 1, "id": "4"}, "jsonrpc member", "4"),
        ({"foo": "bar"}, "jsonrpc member", None),
        ({"jsonrpc": "2.0"}, "neither id nor method", None),
        ({"jsonrpc": "2.0", "result": 1, "error": {"code": 1, "message": "x"}, "id": "5"}, "both", "5"),
        ({"jsonrpc": "2.0", "result": 1, "id": 5}, "not a string", None),
        ({"jsonrpc": "2.0", "error": "oops", "id": "6"}, "malformed error", "6"),
        ({"jsonrpc": "2.0", "error": {"code": "x", "message": "m"}, "id": "6"}, "malformed error", "6"),
        ({"jsonrpc": "2.0", "error": {"code": 1}, "id": "6"}, "malformed error", "6"),
        ({"jsonrpc": "2.0", "id": "8"}, "neither result nor error", "8"),
        (b"\x00\x01", "binary frame of 2 bytes", None),
    ],
)
def test_bad_frames_are_classified_never_raised(frame, reason, blamed):
    out = parse(frame)
    assert isinstance(out, BadFrame)
    assert reason in out.reason
    assert out.id == blamed


def test_oversized_frame_is_rejected_and_blames_its_call():
    big = json.dumps({"jsonrpc": "2.0", "result": {"data": "x" * 5000}, "id": "12"})
    out = parse(big, max_message_size=1024)
    assert isinstance(out, BadFrame) and "exceeds max_message_size=1024" in out.reason and out.id == "12"
    big_id_first = '{"id":"13","jsonrpc":"2.0","result":"' + "y" * 5000 + '"}'
    assert parse(big_id_first, max_message_size=1024).id == "13"
    assert isinstance(parse(big, max_message_size=len(big)), Response)


def test_max_message_size_counts_utf8_bytes_as_on_the_wire():
    """900 emoji are 900 characters but 3,600 bytes: over a 1,024-byte limit, as websockets'
    own max_size (bytes) would have it."""
    emoji = json.dumps({"jsonrpc": "2.0", "result": {"output": "😀" * 900}, "id": "7"}, ensure_ascii=False)
    assert len(emoji) < 1024 < len(emoji.encode())
    out = parse(emoji, max_message_size=1024)
    assert isinstance(out, BadFrame) and out.id == "7"
    assert out.reason == f"frame of {len(emoji.encode())} bytes exceeds max_message_size=1024"
    accents = json.dumps({"jsonrpc": "2.0", "result": {"output": "é" * 400}, "id": "8"}, ensure_ascii=False)
    assert 1024 // 4 < len(accents) and len(accents.encode()) < 1024
    assert parse(accents, max_message_size=1024) == Response("8", {"output": "é" * 400})
    exact = json.dumps({"jsonrpc": "2.0", "result": "é" * 100, "id": "9"}, ensure_ascii=False)
    assert isinstance(parse(exact, max_message_size=len(exact.encode())), Response)
    assert isinstance(parse(exact, max_message_size=len(exact.encode()) - 1), BadFrame)


def test_pending_calls_pop_and_unknown():
    p: PendingCalls[str] = PendingCalls()
    p.add("1", "a", 10.0)
    p.add("2", "b", 5.0)
    assert len(p) == 2 and "1" in p
    assert p.pop("1") == "a"
    assert p.pop("1") is None
    assert p.pop("nope") is None
    with pytest.raises(KeyError):
        p.add("2", "again", 1.0)


def test_pending_calls_deadlines_in_order_with_lazy_deletion():
    p: PendingCalls[str] = PendingCalls()
    p.add("a", "A", 3.0)
    p.add("b", "B", 1.0)
    p.add("c", "C", 2.0)
    assert p.next_deadline() == 1.0
    p.pop("b")
    assert p.next_deadline() == 2.0
    assert p.expired(1.5) == []
    assert p.expired(2.5) == [("c", "C")]
    assert p.next_deadline() == 3.0
    assert p.expired(10) == [("a", "A")]
    assert p.next_deadline() is None and len(p) == 0


def test_pending_calls_drain_returns_everything():
    p: PendingCalls[int] = PendingCalls()
    for i in range(5):
        p.add(str(i), i, float(i))
    assert sorted(p.drain()) == [0, 1, 2, 3, 4]
    assert len(p) == 0 and p.next_deadline() is None and p.expired(100) == []


def test_pending_calls_heap_stays_bounded_under_churn():
    p: PendingCalls[int] = PendingCalls()
    for i in range(20000):
        p.add(str(i), i, 30.0 + i)
        assert p.pop(str(i)) == i
    assert len(p._heap) <= 4 * 1 + 65  # compaction keeps stale entries from piling up


@pytest.mark.parametrize("frame", ['{"jsonrpc": ', '{"a":1,', "[" * 100000, '{"x":' * 50000, "nan", " ", ""])
def test_hostile_json_is_a_bad_frame(frame):
    assert isinstance(RpcCodec().parse(frame), BadFrame)


@pytest.mark.parametrize(
    "frame, expected",
    [
        ('{"jsonrpc":"2.0","result":{"output":"42"},"id":"1"}', Response("1", {"output": "42"})),
        (' {"jsonrpc":"2.0","result":1,"id":"2"} ', Response("2", 1)),  # JSON whitespace around
        ('\r\n\t{"jsonrpc":"2.0","result":1,"id":"2"}\n', Response("2", 1)),
        ('{"jsonrpc":"2.0","result":null,"id":"3"}', Response("3", None)),
        ('{"jsonrpc":"2.0","result":1,"id":3}', BadFrame("response id 3 is not a string")),
        ('{"jsonrpc":"1.0","result":1,"id":"4"}', BadFrame("jsonrpc member is '1.0', expected '2.0'", "4")),
        ('{"jsonrpc":"2.0","result":1,"error":{"code":1,"message":"m"},"id":"5"}', BadFrame("response has both result and error", "5")),
        ('{"jsonrpc":"2.0","error":{"code":1,"message":"m"},"id":"6"}', ErrorResponse("6", JsonRpcError(1, "m"))),
        ('{"jsonrpc":"2.0","method":"n","params":[]}', Notification("n", [])),
        ('{"jsonrpc":"2.0","result":1,"id":"7"}garbage', "Extra data"),
        ('{"jsonrpc":"2.0","result":1,"id":"7"}\u00a0', "Extra data"),  # not JSON whitespace
        ('\ufeff{"jsonrpc":"2.0","result":1,"id":"7"}', "Expecting value"),  # a BOM is not either
        ('[{"jsonrpc":"2.0","result":1,"id":"8"}]', BadFrame("not a JSON object but list")),
        ("x" * 2000, BadFrame("frame of 2000 bytes exceeds max_message_size=1024")),
    ],
)
def test_every_frame_class_on_the_one_parse(frame, expected):
    out = RpcCodec(max_message_size=1024).parse(frame)
    if isinstance(expected, str):
        assert isinstance(out, BadFrame) and expected in out.reason and out.id is None
    elif isinstance(expected, ErrorResponse):
        assert isinstance(out, ErrorResponse) and out.id == expected.id
        assert (out.error.code, out.error.message, out.error.data) == (1, "m", None)
    else:
        assert out == expected


def test_the_fast_response_is_a_plain_response():
    """The hot path builds Response without its __init__: it must be the same kind of object."""
    out = RpcCodec().parse('{"jsonrpc":"2.0","result":[1],"id":"9"}')
    assert type(out) is Response and out == Response("9", [1])
    assert (out.id, out.result) == ("9", [1]) and repr(out) == "Response(id='9', result=[1])"
    text = RpcCodec().parse('{"jsonrpc":"2.0","result":"x","id":"9"}')
    assert hash(text) == hash(Response("9", "x")) and text in {Response("9", "x")}
    with pytest.raises(AttributeError):
        out.id = "10"  # still frozen


def test_cached_request_heads_stay_bounded_and_correct():
    codec = RpcCodec()
    for i in range(200):
        call_id, frame = codec.request(f"m{i}", {"i": i})
        assert json.loads(frame) == {"jsonrpc": "2.0", "method": f"m{i}", "params": {"i": i}, "id": call_id}
    assert len(codec._heads) <= 64


def test_deep_nesting_is_refused_even_with_a_huge_recursion_limit():
    """Some libraries (py_ecc, via eth-account) raise the recursion limit to 100000 at import;
    the C JSON scanner would then overflow the C stack on a hostile frame instead of raising."""
    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        codec = RpcCodec()
        for frame in ("[" * 100_000, '{"a":' * 60_000, '{"jsonrpc":"2.0","result":' + "[" * 300 + "]" * 300 + ',"id":"1"}'):
            out = codec.parse(frame)
            assert isinstance(out, BadFrame) and "nested deeper than 200" in out.reason
    finally:
        sys.setrecursionlimit(old)
    # Brackets inside strings do not count, and wide (not deep) structures are fine.
    wide = '{"jsonrpc":"2.0","result":{"s":"' + "[" * 5000 + '","l":[' + ",".join(["[1]"] * 3000) + ']},"id":"2"}'
    assert isinstance(codec.parse(wide), Response) and codec.parse(wide).id == "2"
