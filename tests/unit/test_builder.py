"""Builder and option validation: fail fast, name the problem, never echo the key."""

import pytest

from circle_ws_web import ConfigError, WsManager, ws_manager
from circle_ws_web.auth import PrivateKey
from circle_ws_web.builder import WsManagerBuilder
from circle_ws_web.config import ClientOptions, validate_url

KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


def test_builds_a_manager_with_every_url_in_order():
    m = (
        ws_manager()
        .private_key("0x" + KEY)
        .add_server_url("ws://127.0.0.1:8701")
        .add_server_url(" wss://circle.example/ws ")
        .keepalive(interval=5, timeout=2)
        .reconnect(initial_delay=0.1, max_delay=2, factor=3, jitter=False, max_attempts=4)
        .request_timeout(7)
        .connect_timeout(3)
        .build()
    )
    assert isinstance(m, WsManager)
    assert m.urls == ["ws://127.0.0.1:8701", "wss://circle.example/ws"]
    client = m.get_client("ws://127.0.0.1:8701")
    o = client.options
    assert (o.keepalive_interval, o.keepalive_timeout, o.request_timeout, o.connect_timeout) == (5, 2, 7, 3)
    assert (o.reconnect_initial_delay, o.reconnect_max_delay, o.reconnect_factor) == (0.1, 2, 3)
    assert (o.reconnect_jitter, o.reconnect_max_attempts) == (False, 4)
    assert client.public_key.startswith("044e3b81af9c2234")
    assert {s.value for s in m.connection_statuses().values()} == {"disconnected"}


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://127.0.0.1:1", "scheme 'http'"),
        ("127.0.0.1:8701", r"has no scheme; expected ws:// or wss:// \(ws://127.0.0.1:8701\)"),
        ("localhost:8701", "has no scheme"),
        ("ftp://host", "has scheme 'ftp'"),
        ("ws://", "no host"),
        ("ws://:8701", "no host"),
        ("ws://host:99999", "malformed"),
        ("ws://host:abc", "malformed"),
        ("ws://host/#frag", "fragment"),
        ("", "empty"),
        ("ws://ho st", "whitespace"),
        ("ws://host\x00", "control character"),
        ("ws://host/pa\x7fth", "control character"),
        ("ws://host/\x85x", "whitespace"),
        (42, "must be a string"),
    ],
)
def test_bad_urls(url, words):
    with pytest.raises(ConfigError, match=words):
        validate_url(url)
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        ws_manager().add_server_url(url)


def test_no_url_and_duplicate_url():
    with pytest.raises(ConfigError, match="no server URL"):
        ws_manager().private_key(KEY).build()
    with pytest.raises(ConfigError, match="added twice"):
        ws_manager().add_server_url("ws://a:1").add_server_url("ws://a:1")


@pytest.mark.parametrize(
    "key, words",
    [
        ("zz" * 32, "hex"),
        ("ab" * 31, "62"),
        ("ab" * 33, "66"),
        ("00" * 32, "zero"),
        ("ff" * 32, "order"),
    ],
)
def test_bad_keys_name_the_problem_and_never_echo_the_key(key, words):
    with pytest.raises(ConfigError, match=words) as info:
        ws_manager().private_key(key)
    text = str(info.value) + repr(info.value)
    assert key not in text and key[:10] not in text and key[-10:] not in text


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.keepalive(interval=0),
        lambda b: b.keepalive(timeout=-1),
        lambda b: b.keepalive(interval=float("nan")),
        lambda b: b.request_timeout("10"),
        lambda b: b.connect_timeout(float("inf")),
        lambda b: b.reconnect(initial_delay=5, max_delay=1),
        lambda b: b.reconnect(factor=0.5),
        lambda b: b.reconnect(max_attempts=-2),
        lambda b: b.reconnect(max_attempts=1.5),
        lambda b: b.max_message_size(10),
    ],
)
def test_bad_tuning_fails_at_the_call(call):
    with pytest.raises(ConfigError):
        call(ws_manager())


def test_defaults_match_the_spec():
    o = ClientOptions()
    assert (o.keepalive_interval, o.keepalive_timeout, o.request_timeout, o.connect_timeout) == (20.0, 10.0, 30.0, 10.0)
    assert (o.reconnect_initial_delay, o.reconnect_max_delay, o.reconnect_factor) == (0.5, 30.0, 2.0)
    assert (o.reconnect_jitter, o.reconnect_max_attempts, o.max_message_size) == (True, None, 16 * 2**20)


def test_builder_and_client_reprs_hide_the_key():
    b = ws_manager().private_key(KEY).add_server_url("ws://127.0.0.1:1")
    m = b.build()
    for text in (repr(b), repr(m), repr(m.get_client("ws://127.0.0.1:1"))):
        assert KEY not in text and KEY[:12] not in text
    assert "044e3b81af9c" in repr(m.get_client("ws://127.0.0.1:1"))


def test_unknown_url_is_a_config_error():
    m = ws_manager().add_server_url("ws://127.0.0.1:1").build()
    with pytest.raises(ConfigError, match="not a configured server"):
        m.get_client("ws://127.0.0.1:2")


# --- tuning calls keep what they are not given ---------------------------------------------


def _options(builder):
    return builder.add_server_url("ws://127.0.0.1:1").build().get_client("ws://127.0.0.1:1").options


def test_a_later_tuning_call_keeps_the_arguments_it_leaves_out():
    o = _options(ws_manager().reconnect(initial_delay=2).reconnect(max_attempts=3))
    assert (o.reconnect_initial_delay, o.reconnect_max_attempts) == (2, 3)
    assert (o.reconnect_max_delay, o.reconnect_factor, o.reconnect_jitter, o.reconnect_min_uptime) == (30.0, 2.0, True, 5.0)

    o = _options(ws_manager().keepalive(interval=5).keepalive(timeout=1))
    assert (o.keepalive_interval, o.keepalive_timeout) == (5, 1)

    o = _options(
        ws_manager()
        .reconnect(max_delay=9, factor=3, jitter=False, min_uptime=0)
        .reconnect(initial_delay=0.2)
        .request_timeout(4)
        .connect_timeout(2)
        .max_message_size(4096)
        .keepalive(timeout=3)
    )
    assert (o.reconnect_initial_delay, o.reconnect_max_delay, o.reconnect_factor) == (0.2, 9, 3)
    assert (o.reconnect_jitter, o.reconnect_min_uptime) == (False, 0)
    assert (o.request_timeout, o.connect_timeout, o.max_message_size) == (4, 2, 4096)
    assert (o.keepalive_interval, o.keepalive_timeout) == (20.0, 3)


def test_calls_without_arguments_change_nothing():
    tuned = ws_manager().keepalive(7, 3).reconnect(1, 8, 3, False, 5, 2).request_timeout(9).connect_timeout(4)
    tuned = tuned.max_message_size(2048)
    before = tuned._options
    tuned.keepalive().reconnect().request_timeout().connect_timeout().max_message_size()
    assert tuned._options == before
    o = _options(tuned)
    assert (o.keepalive_interval, o.keepalive_timeout, o.request_timeout, o.connect_timeout) == (7, 3, 9, 4)
    assert (o.reconnect_initial_delay, o.reconnect_max_delay, o.reconnect_factor, o.reconnect_jitter) == (1, 8, 3, False)
    assert (o.reconnect_max_attempts, o.reconnect_min_uptime, o.max_message_size) == (5, 2, 2048)


def test_max_attempts_none_means_for_ever_not_leave_as_is():
    o = _options(ws_manager().reconnect(max_attempts=4).reconnect(max_attempts=None))
    assert o.reconnect_max_attempts is None
    o = _options(ws_manager().reconnect(max_attempts=4).reconnect(initial_delay=1))
    assert o.reconnect_max_attempts == 4


def test_a_fresh_builder_has_the_documented_defaults():
    assert _options(ws_manager()) == ClientOptions()
    assert _options(ws_manager().keepalive().reconnect()) == ClientOptions()


def test_tuning_is_checked_against_the_values_kept():
    # max_delay=1 alone is fine; below the initial_delay set earlier it is not.
    b = ws_manager().reconnect(initial_delay=5, max_delay=10)
    with pytest.raises(ConfigError):
        b.reconnect(max_delay=1)
    o = _options(b)  # the failed call changed nothing
    assert (o.reconnect_initial_delay, o.reconnect_max_delay) == (5, 10)


def test_none_is_not_a_way_to_skip_an_argument():
    # Only max_attempts takes None; elsewhere it is a mistake and says so.
    for call in (lambda b: b.keepalive(interval=None), lambda b: b.request_timeout(None), lambda b: b.reconnect(factor=None)):
        with pytest.raises(ConfigError):
            call(ws_manager())


def test_tuning_signatures_show_unchanged_not_a_value():
    import inspect

    sig = inspect.signature(WsManagerBuilder.reconnect)
    assert list(sig.parameters)[1:] == ["initial_delay", "max_delay", "factor", "jitter", "max_attempts", "min_uptime"]
    assert {repr(p.default) for name, p in sig.parameters.items() if name != "self"} == {"<unchanged>"}


# --- WsManager built directly validates like the builder ---------------------------------------


def test_direct_manager_validates_and_normalises_urls():
    m = WsManager([" ws://127.0.0.1:1 ", "wss://circle.example/ws"])
    assert m.urls == ["ws://127.0.0.1:1", "wss://circle.example/ws"]
    with pytest.raises(ConfigError, match="scheme 'http'"):
        WsManager(["http://127.0.0.1:1"])
    with pytest.raises(ConfigError, match="must be a string, got bytes"):
        WsManager([b"ws://127.0.0.1:1"])
    with pytest.raises(ConfigError, match="at least one server URL"):
        WsManager([])


def test_direct_manager_refuses_duplicates_after_normalising():
    with pytest.raises(ConfigError, match=r"'ws://127\.0\.0\.1:1' was given twice"):
        WsManager(["ws://127.0.0.1:1", " ws://127.0.0.1:1"])


@pytest.mark.parametrize("urls, kind", [("ws://127.0.0.1:1", "str"), (b"ws://127.0.0.1:1", "bytes"), (42, "int"), (None, "NoneType")])
def test_direct_manager_wants_a_collection_of_urls(urls, kind):
    # A lone string would otherwise be iterated character by character.
    with pytest.raises(ConfigError, match=f"urls must be an iterable of URL strings.*got {kind}$"):
        WsManager(urls)


def test_direct_manager_takes_the_key_as_hex_or_private_key():
    for key in (KEY, "0x" + KEY, PrivateKey(KEY)):
        m = WsManager(["ws://127.0.0.1:1"], key)
        assert m.get_client("ws://127.0.0.1:1").public_key.startswith("044e3b81af9c2234")
    assert WsManager(["ws://127.0.0.1:1"]).get_client("ws://127.0.0.1:1").public_key is None


@pytest.mark.parametrize("key, kind", [(bytes.fromhex(KEY), "bytes"), (int(KEY, 16), "int"), ([KEY], "list")])
def test_direct_manager_refuses_other_key_types_without_echoing_them(key, kind):
    with pytest.raises(ConfigError, match=f"private_key must be a PrivateKey or a hex str, got {kind}$") as info:
        WsManager(["ws://127.0.0.1:1"], key)
    text = str(info.value) + repr(info.value)
    assert KEY[:12] not in text and str(int(KEY, 16))[:12] not in text


def test_direct_manager_bad_hex_key_names_the_problem_not_the_key():
    bad = "ab" * 31
    with pytest.raises(ConfigError, match="62") as info:
        WsManager(["ws://127.0.0.1:1"], bad)
    assert bad[:10] not in str(info.value)


def test_direct_manager_options_must_be_client_options():
    o = ClientOptions(request_timeout=3)
    assert WsManager(["ws://127.0.0.1:1"], None, o).get_client("ws://127.0.0.1:1").options is o
    with pytest.raises(ConfigError, match="options must be a ClientOptions, got dict"):
        WsManager(["ws://127.0.0.1:1"], None, {"request_timeout": 3})
    with pytest.raises(ConfigError, match="transport_factory must be callable, got str"):
        WsManager(["ws://127.0.0.1:1"], None, None, "native")


def test_clock_reaches_every_client():
    from circle_ws_web.testing import VirtualClock

    clock = VirtualClock()
    manager = ws_manager().add_server_url("ws://a.example").add_server_url("ws://b.example").clock(clock).build()
    assert all(manager.get_client(u)._engine.clock is clock for u in manager.urls)
    with pytest.raises(ConfigError, match="clock must have now"):
        WsManager(["ws://a.example"], clock=object())
