"""secp256k1 keys and EIP-191 "personal_sign" signatures for the circle challenge-response login.

The server hands out a nonce; the client proves it holds the private key by signing it the way
Ethereum wallets do (SPEC section 2), so any Ethereum tool can produce or check the signature:

* digest = keccak256(b"\\x19Ethereum Signed Message:\\n" + str(len(msg)) + msg), msg UTF-8;
* deterministic ECDSA (RFC 6979, HMAC-SHA256) on secp256k1, low-S;
* encoded as r (32 bytes) || s (32) || v (1, 27 + recovery id), lowercase hex, no ``0x``.

Two interchangeable signing backends produce byte-identical signatures:

* ``"coincurve"``: libsecp256k1, fast and constant-time; CPython only (no wasm build), used
  automatically when importable;
* ``"ecdsa"``: pure Python, the only one that runs in the browser. It signs with its own
  fixed-base arithmetic (below) and RFC 6979 on :mod:`hmac`; the ``ecdsa`` package is what
  verifies, and what the tests compare it with. Like the ``ecdsa`` package it is not
  constant-time: no pure-Python code is.

Nothing heavy is imported here: coincurve is looked for when a backend is first chosen, the
``ecdsa`` package when a signature is first verified, so ``import circle_ws_web`` stays cheap
(the browser pays for every module it imports at each page load). The private key is never
put in a ``repr``, an exception message or a pickle.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterator, NoReturn

from . import keccak as _keccak
from .errors import ConfigError

_coincurve: Any = None  # the coincurve module, once _probe_native() found it

__all__ = [
    "PrivateKey",
    "available_backends",
    "default_backend",
    "eip191_digest",
    "generate_private_key",
    "parse_private_key",
    "precompute",
    "public_key_hex",
    "sign_message",
    "verify_signature",
]

#: Order n of the secp256k1 group; a private key is an integer in [1, n - 1].
CURVE_ORDER: int = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = CURVE_ORDER // 2
# secp256k1 (SEC 2, section 2.4.1): y^2 = x^3 + 7 over the prime field p; generator (GX, GY).
_P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
_GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
_GY = 0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8

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
    import secrets  # here, not at the top: it imports random, which a client never needs

    return format(secrets.randbelow(CURVE_ORDER - 1) + 1, "064x")


def eip191_digest(message: str | bytes) -> bytes:
    """The 32-byte EIP-191 "personal_sign" digest of ``message`` (str is encoded as UTF-8).

    The prefix binds the signature to "a text message", so a login signature can never be
    replayed as an Ethereum transaction.
    """
    data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    return _keccak.keccak256(_EIP191_PREFIX + str(len(data)).encode("ascii") + data)


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


# --- the pure-Python signer: fixed-base arithmetic on secp256k1 --------------------------------
# Signing is one multiplication k*G of the generator by the nonce. ecdsa's generic code does it
# with ~86 point additions (NAF over precomputed doublings); here the nonce is cut into signed
# w-bit digits, one per w-bit window, and each window has its multiples 1..2^(w-1) of 2^(wi)*G
# precomputed as affine points, so k*G is one mixed addition per window read from the table
# (x, p - y gives the negative digits). The window trades the table's size and build time for
# additions. Measured in Pyodide (node 20, CPU time; CPython about 1.5x faster): w = 6 is 43
# additions a signature, 1,376 points, ~15 ms to build; w = 7 (the default, built on the first
# signature) 37 additions, 2,368 points, ~25 ms (less than w = 6 took before precompute()
# built columns in affine, ~35 ms) and 0.06 ms less per signature than w = 6; w = 8 is 33
# additions, 4,224 points, ~40 ms, 0.9 MB of heap, what a memory snapshot takes (it builds the
# table once for every page: tools/snapshot_boot.mjs calls precompute(8)). Without a snapshot
# w = 8 would cost each page ~15 ms more at its first login to save ~0.04 ms per signature
# (break-even after ~400 signatures): not worth it for a page that signs once per connection.

_DEFAULT_WINDOW = 7
_TABLE: tuple[int, list[list[tuple[int, int]]]] | None = None  # (window, rows of multiples)


def _double(x: int, y: int, z: int) -> tuple[int, int, int]:
    """2P in Jacobian coordinates (dbl-2009-l, a = 0)."""
    p = _P
    a = x * x % p
    b = y * y % p
    c = b * b % p
    d = 2 * ((x + b) * (x + b) - a - c) % p
    e = 3 * a
    x3 = (e * e - 2 * d) % p
    return x3, (e * (d - x3) - 8 * c) % p, 2 * y * z % p


def _add_affine(x1: int, y1: int, z1: int, x2: int, y2: int) -> tuple[int, int, int]:
    """P + Q, P Jacobian (z1 = 0: infinity), Q affine; the complete cases included."""
    if not z1:
        return x2, y2, 1
    p = _P
    zz = z1 * z1 % p
    h = (x2 * zz - x1) % p
    r = (y2 * zz * z1 - y1) % p
    if not h:  # same x: P = Q (double) or P = -Q (infinity)
        return _double(x1, y1, z1) if not r else (0, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    return x3, (r * (v - x3) - y1 * hhh) % p, z1 * h % p


def _to_affine(points: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """Jacobian points (none at infinity) to affine with one inversion (Montgomery's trick)."""
    p = _P
    prefix = []
    acc = 1
    for _, _, z in points:
        prefix.append(acc)
        acc = acc * z % p
    inv = pow(acc, -1, p)
    out: list[tuple[int, int]] = [(0, 0)] * len(points)
    for i in range(len(points) - 1, -1, -1):
        x, y, z = points[i]
        zi = inv * prefix[i] % p
        inv = inv * z % p
        zi2 = zi * zi % p
        out[i] = (x * zi2 % p, y * zi2 * zi % p)
    return out


def _batch_inverse(values: list[int]) -> list[int]:
    """Inverses mod p of nonzero values with one ``pow`` (Montgomery's trick, 3 products each)."""
    p = _P
    prefix = []
    acc = 1
    for v in values:
        prefix.append(acc)
        acc = acc * v % p
    inv = pow(acc, -1, p)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % p
        inv = inv * values[i] % p
    return out


def precompute(window: int = _DEFAULT_WINDOW) -> None:
    """Build the generator table the pure-Python signer uses, now rather than at the first
    signature: for a memory snapshot (tools/snapshot.py, with ``window=8``), or to keep it off a
    first login. A wider ``window`` (4 to 10 bits) means fewer additions per signature and a
    table 2^(w-1) * (256/w + 1) points long. A table already built with the same or a wider
    window is kept.

    Built column by column in affine coordinates: the row bases 2^(w*i)*G by Jacobian doublings
    (one inversion for all), then the j-th multiple of every row at once, P_j = P_(j-1) + B,
    with the rows' denominators inverted together. That is ~6 products per point instead of a
    Jacobian addition and a conversion (~15), and 2^(w-1) inversions instead of 2 per row.
    """
    global _TABLE
    if not 4 <= window <= 10:
        raise ValueError(f"window must be 4 to 10 bits, not {window}")
    if _TABLE is not None and _TABLE[0] >= window:
        return
    p = _P
    nrows = 256 // window + 1  # the top window takes the carry of the signed recoding
    jacobian = []
    x, y, z = _GX, _GY, 1
    for i in range(nrows):
        jacobian.append((x, y, z))
        if i < nrows - 1:
            for _ in range(window):
                x, y, z = _double(x, y, z)
    bases = _to_affine(jacobian)
    # 2B: the tangent, lambda = 3x^2 / 2y.
    column = []
    for (bx, by), inv in zip(bases, _batch_inverse([2 * by % p for _, by in bases])):
        lam = 3 * bx * bx * inv % p
        x3 = (lam * lam - 2 * bx) % p
        column.append((x3, (lam * (bx - x3) - by) % p))
    rows = [[base, point] for base, point in zip(bases, column)]
    for _ in range((1 << (window - 1)) - 2):
        # jB + B for j >= 2: never the same x as B (j - 1 and j + 1 are far below the order n).
        invs = _batch_inverse([(px - bx) % p for (px, _), (bx, _) in zip(column, bases)])
        nxt = []
        for (px, py), (bx, by), inv, row in zip(column, bases, invs, rows):
            lam = (py - by) * inv % p
            x3 = (lam * lam - px - bx) % p
            point = (x3, (lam * (bx - x3) - by) % p)
            nxt.append(point)
            row.append(point)
        column = nxt
    _TABLE = (window, rows)


def _mul_g(k: int) -> tuple[int, int]:
    """k*G as affine (x, y), for 0 < k < n."""
    if _TABLE is None:
        precompute()
    assert _TABLE is not None
    window, rows = _TABLE
    p = _P
    mask = (1 << window) - 1
    full = 1 << window
    half = full >> 1
    x = y = z = 0  # z = 0: the point at infinity
    for row in rows:
        digit = k & mask
        k >>= window
        if digit > half:  # signed digit in (-half, half]: borrow from the next window
            k += 1
            x2, y2 = row[full - digit - 1]
            y2 = p - y2
        elif digit:
            x2, y2 = row[digit - 1]
        else:
            continue
        if not z:
            x, y, z = x2, y2, 1
            continue
        # Mixed addition (add-2007-bl with z2 = 1), inlined: this loop is the signature's cost.
        zz = z * z % p
        h = (x2 * zz - x) % p
        r = (y2 * zz * z - y) % p
        if not h:  # cannot happen for k < n (the windows' partial sums differ); kept complete
            x, y, z = _add_affine(x, y, z, x2, y2)
            continue
        hh = h * h % p
        hhh = h * hh % p
        v = x * hh % p
        x = (r * r - hhh - 2 * v) % p
        y = (r * (v - x) - y * hhh) % p
        z = z * h % p
    ((ax, ay),) = _to_affine([(x, y, z)])
    return ax, ay


def _rfc6979_nonces(secret: int, digest: bytes) -> Iterator[int]:
    """The RFC 6979 (section 3.2) nonces for ``digest`` with HMAC-SHA256 over secp256k1, in order.

    The first is what every RFC 6979 signer uses (ecdsa's ``sign_digest_deterministic``,
    libsecp256k1); the next ones are only needed if a nonce gives r = 0 or s = 0.
    """
    import hmac  # here, not at the top: only a signature needs it

    n = CURVE_ORDER
    h = (int.from_bytes(digest, "big") % n).to_bytes(32, "big")  # bits2octets (qlen = hlen = 256)
    x = secret.to_bytes(32, "big")

    def mac(key: bytes, msg: bytes) -> bytes:
        return hmac.digest(key, msg, "sha256")

    v = b"\x01" * 32
    k = mac(b"\x00" * 32, v + b"\x00" + x + h)
    v = mac(k, v)
    k = mac(k, v + b"\x01" + x + h)
    v = mac(k, v)
    while True:
        v = mac(k, v)  # one HMAC block is 256 bits = qlen: T = V
        candidate = int.from_bytes(v, "big")
        if 0 < candidate < n:
            yield candidate
        k = mac(k, v + b"\x00")
        v = mac(k, v)


class _EcdsaSigner(_NoSerialize):
    """Pure-Python signer (runs in Pyodide): RFC 6979 nonce, k*G from the generator table."""

    __slots__ = ("_secret",)
    name = "ecdsa"

    def __init__(self, secret: int) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return "<_EcdsaSigner>"

    def public_key(self) -> bytes:
        x, y = _mul_g(self._secret)
        return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")

    def sign(self, digest: bytes) -> tuple[int, int, int]:
        # Done by hand rather than with ecdsa's sign_digest_deterministic, which returns (r, s)
        # but throws away the nonce point R, whose y parity is the recovery id (recovering it
        # afterwards costs a double scalar multiplication, ~3x the signature).
        n = CURVE_ORDER
        d = self._secret
        z = int.from_bytes(digest, "big")  # 256-bit digest, 256-bit n: no truncation
        for k in _rfc6979_nonces(d, digest):
            rx, ry = _mul_g(k)
            r = rx % n
            s = pow(k, -1, n) * (z + r * d) % n
            if r and s:
                return r, s, (ry & 1) | (2 if rx >= n else 0)
        raise AssertionError("unreachable: the nonce generator never ends")  # pragma: no cover


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
    # The ecdsa package, imported here on first use: only a verifier (the server) needs it.
    from ecdsa import SECP256k1, VerifyingKey
    from ecdsa.ellipticcurve import INFINITY

    # from_string validates that the point is on the curve (cofactor 1: then it is in the group).
    q = VerifyingKey.from_string(pub, curve=SECP256k1).pubkey.point
    w = pow(s, -1, CURVE_ORDER)
    z = int.from_bytes(digest, "big")
    point = SECP256k1.generator.mul_add(z * w % CURVE_ORDER, q, r * w % CURVE_ORDER)
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


_Signer = type[_EcdsaSigner] | type[_CoincurveSigner]
_Verifier = Callable[[bytes, bytes, int, int, int], bool]
_PURE_SIGNERS: dict[str, _Signer] = {"ecdsa": _EcdsaSigner}
_SIGNERS = _PURE_SIGNERS  # coincurve goes in front once _probe_native() finds it
_VERIFIERS: dict[str, _Verifier] = {"ecdsa": _ecdsa_verify}


def _probe_native() -> None:
    """Look for coincurve, once, when a backend is first chosen (not at import: importing it
    loads cffi and libsecp256k1, ~40 ms, which ``import circle_ws_web`` should not pay)."""
    global _SIGNERS, _VERIFIERS, _coincurve
    if _SIGNERS is not _PURE_SIGNERS:  # done already, or replaced on purpose (tests)
        return
    try:
        import coincurve
    except (ImportError, OSError):  # OSError: a wheel whose shared library cannot load
        _SIGNERS = dict(_PURE_SIGNERS)  # a new object: probed, coincurve absent
        return
    _coincurve = coincurve
    _SIGNERS = {"coincurve": _CoincurveSigner, **_PURE_SIGNERS}
    _VERIFIERS = {"coincurve": _coincurve_verify, **_VERIFIERS}


def available_backends() -> list[str]:
    """Names of the signing backends importable here, fastest first."""
    _probe_native()
    return list(_SIGNERS)


def default_backend() -> str:
    """The backend used when none is named: coincurve when importable, else ecdsa."""
    _probe_native()
    return next(iter(_SIGNERS))


def _resolve_backend(backend: str | None) -> str:
    _probe_native()
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
    name = _resolve_backend(backend)  # first: it may add coincurve to _VERIFIERS
    verify = _VERIFIERS[name]
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
