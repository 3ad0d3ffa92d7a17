"""secp256k1 keys and EIP-191 "personal_sign" signatures for the circle challenge-response login.

The server hands out a nonce; the client proves it holds the private key by signing it the way
Ethereum wallets do (SPEC section 2), so any Ethereum tool can produce or check the signature:

* digest = keccak256(b"\\x19Ethereum Signed Message:\\n" + str(len(msg)) + msg), msg UTF-8;
* deterministic ECDSA (RFC 6979, HMAC-SHA256) on secp256k1, low-S;
* encoded as r (32 bytes) || s (32) || v (1, 27 + recovery id), lowercase hex, no ``0x``.

Two interchangeable signing backends produce byte-identical signatures:

* ``"coincurve"``: libsecp256k1, fast and constant-time; CPython only (no wasm build), used
  automatically when importable;
* ``"ecdsa"``: the pure-Python ``ecdsa`` package, the only one that runs in the browser.

Every import of a native package is optional, so this module imports under Pyodide with only
``ecdsa`` installed. The private key is never put in a ``repr``, an exception message or a
pickle.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import NoReturn

from ecdsa import SECP256k1, SigningKey, VerifyingKey
from ecdsa import rfc6979
from ecdsa.ellipticcurve import INFINITY
from ecdsa.numbertheory import inverse_mod

from .errors import ConfigError
from .keccak import keccak256

try:  # native fast path; absent in the browser and in minimal installs
    import coincurve as _coincurve
except (ImportError, OSError):  # OSError: a wheel whose shared library cannot load
    _coincurve = None  # type: ignore[assignment]

__all__ = [
    "PrivateKey",
    "available_backends",
    "default_backend",
    "eip191_digest",
    "generate_private_key",
    "parse_private_key",
    "public_key_hex",
    "sign_message",
    "verify_signature",
]

#: Order n of the secp256k1 group; a private key is an integer in [1, n - 1].
CURVE_ORDER: int = SECP256k1.order
_HALF_ORDER = CURVE_ORDER // 2
_G = SECP256k1.generator  # PointJacobi with precomputed multiples: fast fixed-base mults

_EIP191_PREFIX = b"\x19Ethereum Signed Message:\n"
_HEX_RE = re.compile(r"[0-9a-fA-F]*")
_PUBKEY_RE = re.compile(r"(?:0[xX])?(04[0-9a-fA-F]{128})")
_SIGNATURE_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]{130})")


# --------------------------------------------------------------------------------------------
# Key parsing
# --------------------------------------------------------------------------------------------


def parse_private_key(key: str) -> int:
    """Parse a hex private key (64 hex chars, optional ``0x``) into its integer value.

    Fails fast with :class:`ConfigError` so a bad key is reported at configuration time, not
    at the first authentication. The messages say what is wrong but never echo the key or any
    part of it (a typo'd key is still mostly the real key).
    """
    if not isinstance(key, str):
        raise ConfigError(
            f"private key must be a str of 64 hex characters, not {type(key).__name__}"
        )
    text = key.strip()
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    # Checked with a regex rather than int(text, 16): int() accepts "_" and inner whitespace,
    # and its error message would quote the key.
    if not _HEX_RE.fullmatch(text):
        raise ConfigError("private key is not hex: it contains non-hexadecimal characters")
    if len(text) != 64:
        raise ConfigError(
            f"private key has the wrong length: got {len(text)} hex characters, "
            "64 are expected (with an optional 0x prefix)"
        )
    value = int(text, 16)
    if value == 0:
        raise ConfigError("private key is zero, which is not a valid secp256k1 key")
    if value >= CURVE_ORDER:
        raise ConfigError(
            "private key is not below the secp256k1 curve order n; valid keys are in [1, n-1]"
        )
    return value


def generate_private_key() -> str:
    """A fresh random private key as 64 lowercase hex chars (from :mod:`secrets`)."""
    return format(secrets.randbelow(CURVE_ORDER - 1) + 1, "064x")


def eip191_digest(message: str | bytes) -> bytes:
    """The 32-byte EIP-191 "personal_sign" digest of ``message`` (str is encoded as UTF-8).

    The prefix binds the signature to "a text message", so a login signature can never be
    replayed as an Ethereum transaction.
    """
    data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    return keccak256(_EIP191_PREFIX + str(len(data)).encode("ascii") + data)


# --------------------------------------------------------------------------------------------
# Backends (private). Each signer holds the secret and returns the raw (r, s, recid); the
# low-S normalisation and encoding are shared in PrivateKey so both backends agree byte for
# byte. Each verifier answers "does (r, s, recid) over digest recover exactly this key".
# --------------------------------------------------------------------------------------------


class _NoSerialize:
    """Mixin: refuse pickling/copying so the secret cannot leak into a file or a cache."""

    __slots__ = ()

    def __reduce__(self) -> NoReturn:
        # object.__reduce_ex__ (used by pickle and copy) defers to this override.
        raise TypeError(f"{type(self).__name__} holds a private key and cannot be serialized")


class _EcdsaSigner(_NoSerialize):
    """Pure-Python signer on the ``ecdsa`` package (runs in Pyodide)."""

    __slots__ = ("_sk",)
    name = "ecdsa"

    def __init__(self, secret: int) -> None:
        self._sk = SigningKey.from_secret_exponent(secret, curve=SECP256k1, hashfunc=hashlib.sha256)

    def __repr__(self) -> str:
        return "<_EcdsaSigner>"

    def public_key(self) -> bytes:
        return self._sk.verifying_key.to_string("uncompressed")

    def sign(self, digest: bytes) -> tuple[int, int, int]:
        # ecdsa's sign_digest_deterministic returns (r, s) but throws away the nonce point R,
        # and the recovery id is R's y parity. Recovering it afterwards costs a full double
        # scalar multiplication (~3x the signing cost), so the same steps are done here with
        # ecdsa's own pieces: its RFC 6979 nonce generator (exactly the k that
        # sign_digest_deterministic(digest, hashfunc=sha256) uses; the tests check equality)
        # and its precomputed generator point.
        n = CURVE_ORDER
        d = self._sk.privkey.secret_multiplier
        z = int.from_bytes(digest, "big")  # 256-bit digest, 256-bit n: no truncation
        retry = 0
        while True:
            k = rfc6979.generate_k(n, d, hashlib.sha256, digest, retry_gen=retry)
            # Same trick as ecdsa.ecdsa.Private_key.sign: a fixed bit length for the
            # multiplier, so the loop count does not leak k's length.
            kt = k + n
            if kt.bit_length() == n.bit_length():
                kt += n
            point = (kt * _G).to_affine()
            rx, ry = point.x(), point.y()
            r = rx % n
            s = inverse_mod(k, n) * (z + r * d) % n
            if r and s:
                return r, s, (ry & 1) | (2 if rx >= n else 0)
            retry += 1  # pragma: no cover - probability ~2^-256, as in ecdsa itself


class _CoincurveSigner(_NoSerialize):
    """libsecp256k1 signer via coincurve (CPython only)."""

    __slots__ = ("_key",)
    name = "coincurve"

    def __init__(self, secret: int) -> None:
        assert _coincurve is not None
        self._key = _coincurve.PrivateKey(secret.to_bytes(32, "big"))

    def __repr__(self) -> str:
        return "<_CoincurveSigner>"

    def public_key(self) -> bytes:
        return self._key.public_key.format(compressed=False)

    def sign(self, digest: bytes) -> tuple[int, int, int]:
        # hasher=None: sign the 32-byte digest as is (RFC 6979 nonce, low-S, recid included).
        raw = self._key.sign_recoverable(digest, hasher=None)
        return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]


def _ecdsa_verify(pub: bytes, digest: bytes, r: int, s: int, recid: int) -> bool:
    # from_string validates that the point is on the curve (cofactor 1: then it is in the group).
    q = VerifyingKey.from_string(pub, curve=SECP256k1).pubkey.point
    w = inverse_mod(s, CURVE_ORDER)
    z = int.from_bytes(digest, "big")
    point = _G.mul_add(z * w % CURVE_ORDER, q, r * w % CURVE_ORDER)
    if point == INFINITY:  # u1*G + u2*Q can cancel out; no x coordinate to compare
        return False
    point = point.to_affine()
    # Plain ECDSA checks only x(R) mod n == r; also checking R's y parity against the recovery
    # id makes this equal to "ecrecover(signature) == pubkey", what an Ethereum verifier does.
    return point.x() == r and (point.y() & 1) == recid


def _coincurve_verify(pub: bytes, digest: bytes, r: int, s: int, recid: int) -> bool:
    assert _coincurve is not None
    expected = _coincurve.PublicKey(pub).format(compressed=False)  # raises if not on the curve
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([recid])
    recovered = _coincurve.PublicKey.from_signature_and_message(sig, digest, hasher=None)
    return recovered.format(compressed=False) == expected


_SIGNERS: dict[str, type[_EcdsaSigner] | type[_CoincurveSigner]] = {"ecdsa": _EcdsaSigner}
_VERIFIERS = {"ecdsa": _ecdsa_verify}
if _coincurve is not None:
    _SIGNERS = {"coincurve": _CoincurveSigner, **_SIGNERS}
    _VERIFIERS = {"coincurve": _coincurve_verify, **_VERIFIERS}


def available_backends() -> list[str]:
    """Names of the signing backends importable here, fastest first."""
    return list(_SIGNERS)


def default_backend() -> str:
    """The backend used when none is named: coincurve when importable, else ecdsa."""
    return next(iter(_SIGNERS))


def _resolve_backend(backend: str | None) -> str:
    if backend is None:
        return default_backend()
    if backend in _SIGNERS:
        return backend
    if backend == "coincurve":
        raise ConfigError(
            "signing backend 'coincurve' is not importable here (install circle-ws-web[fast]; "
            "it does not exist in the browser); use backend='ecdsa' or None"
        )
    raise ConfigError(
        f"unknown signing backend {backend!r}; available: {', '.join(available_backends())}"
    )


# --------------------------------------------------------------------------------------------
# Public key object
# --------------------------------------------------------------------------------------------


class PrivateKey(_NoSerialize):
    """A secp256k1 private key that signs EIP-191 messages; its repr shows only the public key.

    Parsing happens once, here, so a bad key fails when the client is configured. The secret
    lives only inside the backend object: ``repr``/``str`` show the public key, and pickling
    or copying raises ``TypeError`` so the key cannot be written out by accident.
    """

    __slots__ = ("_signer", "_public_key_hex")

    def __init__(self, key: str, *, backend: str | None = None) -> None:
        name = _resolve_backend(backend)
        self._signer = _SIGNERS[name](parse_private_key(key))
        self._public_key_hex: str = self._signer.public_key().hex()

    @property
    def backend(self) -> str:
        """Name of the signing backend in use (``"coincurve"`` or ``"ecdsa"``)."""
        return self._signer.name

    @property
    def public_key_hex(self) -> str:
        """Uncompressed SEC1 public key: lowercase hex, 130 chars, starting ``04``."""
        return self._public_key_hex

    def sign_digest(self, digest: bytes) -> str:
        """Sign a 32-byte digest: r || s || v as 130 lowercase hex chars (low-S, v = 27 + recid).

        A recovery id of 2 or 3 (x(R) >= n, probability about 2^-127) would give v = 29/30,
        which Ethereum's 27/28 encoding cannot express; it is emitted as is, not hidden.
        """
        if len(digest) != 32:
            raise ValueError(f"digest must be 32 bytes, got {len(digest)}")
        r, s, recid = self._signer.sign(bytes(digest))
        if s > _HALF_ORDER:  # low-S (EIP-2): (r, n - s) is the same signature, mirrored R
            s = CURVE_ORDER - s
            recid ^= 1
        return (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + recid])).hex()

    def sign_message(self, message: str | bytes) -> str:
        """EIP-191 ``personal_sign`` of ``message``; what ``authenticate`` sends as SIG."""
        return self.sign_digest(eip191_digest(message))

    def __repr__(self) -> str:
        return f"PrivateKey(public_key='{self._public_key_hex[:12]}…', backend={self.backend!r})"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------
# Module-level helpers (SPEC section 3)
# --------------------------------------------------------------------------------------------


def public_key_hex(private_key: str, *, backend: str | None = None) -> str:
    """Uncompressed SEC1 public key (130 lowercase hex chars) of a hex private key."""
    return PrivateKey(private_key, backend=backend).public_key_hex


def sign_message(private_key: str, message: str | bytes, *, backend: str | None = None) -> str:
    """EIP-191 signature of ``message`` with a hex private key (see :class:`PrivateKey`)."""
    return PrivateKey(private_key, backend=backend).sign_message(message)


def verify_signature(
    pubkey: str, message: str | bytes, signature: str, *, backend: str | None = None
) -> bool:
    """True iff ``signature`` is a valid EIP-191 signature of ``message`` by ``pubkey``.

    Strict, because the server trusts it: r and s in [1, n-1], low-S only, v 27 or 28 and
    matching the key (i.e. ``ecrecover`` gives back exactly ``pubkey``). Any malformed input
    (wrong type or length, bad hex, point not on the curve, ...) gives False, never an
    exception. Accepts hex in either case and an optional ``0x``. Only an unknown or
    unavailable ``backend`` name raises :class:`ConfigError` (a programming error).
    """
    verify = _VERIFIERS[_resolve_backend(backend)]
    if not isinstance(pubkey, str) or not isinstance(signature, str):
        return False
    if not isinstance(message, (str, bytes)):
        return False
    pub_match = _PUBKEY_RE.fullmatch(pubkey)
    sig_match = _SIGNATURE_RE.fullmatch(signature)
    if pub_match is None or sig_match is None:
        return False
    raw = bytes.fromhex(sig_match.group(1))
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    v = raw[64]
    if not (0 < r < CURVE_ORDER and 0 < s <= _HALF_ORDER and v in (27, 28)):
        return False
    try:
        digest = eip191_digest(message)
        return bool(verify(bytes.fromhex(pub_match.group(1)), digest, r, s, v - 27))
    except Exception:  # invalid point, unencodable message, backend refusal: all "not valid"
        return False
