"""The challenge-response handshake as a small state machine. Plain code: no I/O.

``fetch_nonce`` -> sign the nonce (EIP-191) -> ``authenticate``. The I/O layer sends the calls
this object returns and feeds back what the server answered; every wrong turn ends in
``FAILED`` with an :class:`~circle_ws_web.errors.AuthError` that says why.
"""

from __future__ import annotations

import enum
from typing import Any, Callable

from .errors import AuthError, JsonRpcError

__all__ = ["AuthFlow", "AuthState", "MAX_NONCE_LENGTH"]

#: A server that sends a longer "nonce" is misbehaving; we will not sign arbitrary blobs.
MAX_NONCE_LENGTH = 1024


class AuthState(str, enum.Enum):
    IDLE = "idle"
    AWAITING_NONCE = "awaiting_nonce"
    AWAITING_RESULT = "awaiting_result"
    DONE = "done"
    FAILED = "failed"


Call = tuple[str, dict[str, Any]]


class AuthFlow:
    """One authentication attempt. Make a new one for every connection (fresh nonce each time)."""

    def __init__(self, public_key: str, sign: Callable[[str], str]) -> None:
        self.public_key = public_key
        self._sign = sign
        self.state = AuthState.IDLE

    def _expect(self, state: AuthState) -> None:
        if self.state is not state:
            raise RuntimeError(f"auth flow is {self.state.value}, expected {state.value}")

    def start(self) -> Call:
        """The first call to send: ask for a nonce bound to our public key."""
        self._expect(AuthState.IDLE)
        self.state = AuthState.AWAITING_NONCE
        return "fetch_nonce", {"pubkey": self.public_key}

    def receive_nonce(self, result: Any) -> Call:
        """Given the ``fetch_nonce`` result, the ``authenticate`` call to send next."""
        self._expect(AuthState.AWAITING_NONCE)
        nonce = result.get("nonce") if isinstance(result, dict) else None
        if not isinstance(nonce, str) or not nonce:
            raise self._fail(f"fetch_nonce returned no nonce string: {result!r:.100}")
        if len(nonce) > MAX_NONCE_LENGTH:
            raise self._fail(f"fetch_nonce returned a {len(nonce)}-character nonce (max {MAX_NONCE_LENGTH})")
        if not nonce.isascii():  # the usual nonce: no encoding to check
            try:  # EIP-191 signs the UTF-8 bytes: a lone surrogate (valid JSON: "\ud800") has none
                nonce.encode()
            except UnicodeEncodeError:
                raise self._fail(f"fetch_nonce returned a nonce that is not valid Unicode: {nonce!r:.100}") from None
        self.state = AuthState.AWAITING_RESULT
        return "authenticate", {"pubkey": self.public_key, "signature": self._sign(nonce)}

    def receive_result(self, result: Any) -> None:
        """Given the ``authenticate`` result: DONE, or FAILED with AuthError raised."""
        self._expect(AuthState.AWAITING_RESULT)
        if not (isinstance(result, dict) and result.get("authenticated") is True):
            raise self._fail(f"server did not confirm authentication: {result!r:.100}")
        self.state = AuthState.DONE

    def receive_error(self, error: JsonRpcError) -> AuthError:
        """The server answered a step with an error: FAILED; returns the AuthError to raise."""
        if self.state not in (AuthState.AWAITING_NONCE, AuthState.AWAITING_RESULT):
            raise RuntimeError(f"auth flow is {self.state.value}; no call is outstanding")
        step = "fetch_nonce" if self.state is AuthState.AWAITING_NONCE else "authenticate"
        exc = self._fail(f"{step} failed: {error.message} (code {error.code})")
        exc.__cause__ = error
        return exc

    def _fail(self, why: str) -> AuthError:
        self.state = AuthState.FAILED
        return AuthError(f"authentication failed: {why}")
