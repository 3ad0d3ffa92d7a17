"""The authentication handshake state machine, every path."""

import pytest

from circle_ws_web.auth_flow import MAX_NONCE_LENGTH, AuthFlow, AuthState
from circle_ws_web.errors import AuthError, JsonRpcError

PUB = "04" + "ab" * 64


def flow():
    return AuthFlow(PUB, lambda nonce: f"sig({nonce})")


def test_happy_path():
    f = flow()
    assert f.start() == ("fetch_nonce", {"pubkey": PUB})
    assert f.state is AuthState.AWAITING_NONCE
    assert f.receive_nonce({"nonce": "n1"}) == ("authenticate", {"pubkey": PUB, "signature": "sig(n1)"})
    assert f.state is AuthState.AWAITING_RESULT
    f.receive_result({"authenticated": True})
    assert f.state is AuthState.DONE


@pytest.mark.parametrize("result", [None, {}, {"nonce": ""}, {"nonce": 5}, "n", {"nonce": "x" * (MAX_NONCE_LENGTH + 1)},
                                    {"nonce": "\ud800"}, {"nonce": "ab\udfffcd"}])
def test_bad_nonce_fails(result):
    f = flow()
    f.start()
    with pytest.raises(AuthError, match="fetch_nonce"):
        f.receive_nonce(result)
    assert f.state is AuthState.FAILED


@pytest.mark.parametrize("result", [None, {"authenticated": False}, {"authenticated": "true"}, True])
def test_unconfirmed_result_fails(result):
    f = flow()
    f.start()
    f.receive_nonce({"nonce": "n"})
    with pytest.raises(AuthError, match="did not confirm"):
        f.receive_result(result)
    assert f.state is AuthState.FAILED


def test_server_errors_name_the_step():
    f = flow()
    f.start()
    err = f.receive_error(JsonRpcError(-32602, "bad pubkey"))
    assert isinstance(err, AuthError) and "fetch_nonce failed: bad pubkey (code -32602)" in str(err)
    g = flow()
    g.start()
    g.receive_nonce({"nonce": "n"})
    err = g.receive_error(JsonRpcError(-32002, "bad signature"))
    assert "authenticate failed: bad signature" in str(err) and g.state is AuthState.FAILED


def test_out_of_order_steps_are_bugs():
    f = flow()
    with pytest.raises(RuntimeError):
        f.receive_nonce({"nonce": "n"})
    with pytest.raises(RuntimeError):
        f.receive_error(JsonRpcError(1, "x"))
    f.start()
    with pytest.raises(RuntimeError):
        f.start()
    with pytest.raises(RuntimeError):
        f.receive_result({"authenticated": True})


def test_a_nonce_beyond_ascii_is_signed_as_utf8():
    f = flow()
    f.start()
    assert f.receive_nonce({"nonce": "nonce-é✓"})[1]["signature"] == "sig(nonce-é✓)"
