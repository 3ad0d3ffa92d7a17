"""Builder and option validation: fail fast, name the problem, never echo the key."""

import pytest

from circle_ws_web import ConfigError, WsManager, ws_manager
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
        ("127.0.0.1:8701", "scheme"),
        ("ws://", "no host"),
        ("ws://:8701", "no host"),
        ("ws://host:99999", "malformed"),
        ("ws://host:abc", "malformed"),
        ("ws://host/#frag", "fragment"),
        ("", "empty"),
        ("ws://ho st", "whitespace"),
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
