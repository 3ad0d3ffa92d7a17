"""The signing layer: keccak256, EIP-191 signatures, key parsing and key secrecy.

Everything is checked against the vectors in tests/auth_vectors.json (produced by two
independent implementations; docs/protocol.md says what they cover), against eth-account as a
third independent implementation, and between the two backends (coincurve = libsecp256k1, ecdsa = the pure-Python signer the browser uses).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import random
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

try:
    import circle_ws_web  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from Crypto.Hash import keccak as pycryptodome_keccak
from ecdsa import SECP256k1, SigningKey
from ecdsa.util import sigencode_strings_canonize
from eth_account import Account
from eth_account.messages import encode_defunct

from circle_ws_web import auth
from circle_ws_web.auth import (
    CURVE_ORDER,
    PrivateKey,
    available_backends,
    default_backend,
    eip191_digest,
    generate_private_key,
    parse_private_key,
    public_key_hex,
    sign_message,
    verify_signature,
)
from circle_ws_web.errors import ConfigError
from circle_ws_web.keccak import KECCAK_BACKEND, keccak256, keccak256_pure

VECTORS_PATH = Path(__file__).resolve().parent / "auth_vectors.json"  # see docs/protocol.md
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
EIP191 = VECTORS["eip191"]
BACKENDS = ["coincurve", "ecdsa"]
N = CURVE_ORDER

RNG = random.Random(20240611)
RANDOM_KEYS = [format(RNG.randrange(1, N), "064x") for _ in range(6)]
MESSAGES = [
    "",
    "a",
    "hello",
    "héllo wörld ✓",
    "🦀 nonce with emoji and \n newline",
    "3f1c2a9e-7b4d-4f0e-9c1a-5e6d7f8a9b0c",
    "x" * 136,
    "ü" * 500,
]


#: SHA-256 of tests/auth_vectors.json as the two reference implementations produced it. The
#: vectors are the yardstick every backend is measured against, so an edit (even a "fix") to
#: make a failing backend pass must show up here as a deliberate change.
VECTORS_SHA256 = "fd07a257eb63994da90bd09e41fd6ff1bde0b6e707c443f10540ead456062547"


def test_vectors_file_is_the_expected_one() -> None:
    assert hashlib.sha256(VECTORS_PATH.read_bytes()).hexdigest() == VECTORS_SHA256
    assert len(EIP191) >= 4
    assert set(VECTORS["keccak256"]) >= {"", "abc"}


def test_environment_has_both_backends_and_fast_keccak() -> None:
    # The test extra installs coincurve and pycryptodome; without them the cross-backend
    # checks below would silently test one backend twice.
    assert available_backends() == ["coincurve", "ecdsa"]
    assert default_backend() == "coincurve"
    assert KECCAK_BACKEND == "pycryptodome"


# ---------------------------------------------------------------------------------- keccak


@pytest.mark.parametrize("impl", [keccak256, keccak256_pure], ids=["default", "pure"])
@pytest.mark.parametrize("text", sorted(VECTORS["keccak256"]))
def test_keccak_vectors(impl, text: str) -> None:
    assert impl(text.encode()).hex() == VECTORS["keccak256"][text]


@pytest.mark.parametrize("length", [0, 1, 31, 32, 135, 136, 137, 271, 272, 273, 1000, 4096])
def test_keccak_pure_matches_pycryptodome_around_rate_boundary(length: int) -> None:
    data = bytes(RNG.randrange(256) for _ in range(length))
    reference = pycryptodome_keccak.new(digest_bits=256, data=data).digest()
    assert keccak256_pure(data) == reference
    assert keccak256(data) == reference


def test_keccak_pure_accepts_bytearray_and_memoryview() -> None:
    data = b"abc" * 100
    assert keccak256_pure(bytearray(data)) == keccak256_pure(memoryview(data)) == keccak256(data)


def test_keccak_is_not_nist_sha3() -> None:
    assert keccak256_pure(b"") != hashlib.sha3_256(b"").digest()
    assert keccak256_pure(b"abc") != hashlib.sha3_256(b"abc").digest()


# ---------------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("vec", EIP191, ids=[v["message"] or "<empty>" for v in EIP191])
def test_eip191_vectors(backend: str, vec: dict) -> None:
    key = PrivateKey(vec["private_key"], backend=backend)
    assert key.backend == backend
    assert key.public_key_hex == vec["public_key"]
    assert public_key_hex(vec["private_key"], backend=backend) == vec["public_key"]
    assert eip191_digest(vec["message"]).hex() == vec["eip191_digest"]
    assert key.sign_message(vec["message"]) == vec["signature"]
    assert sign_message(vec["private_key"], vec["message"], backend=backend) == vec["signature"]
    for verifier in BACKENDS:
        assert verify_signature(vec["public_key"], vec["message"], vec["signature"], backend=verifier)


@pytest.mark.parametrize("vec", EIP191, ids=[v["message"] or "<empty>" for v in EIP191])
def test_eip191_digest_vectors_with_pure_keccak(vec: dict) -> None:
    data = vec["message"].encode()
    digest = keccak256_pure(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)
    assert digest.hex() == vec["eip191_digest"]


def test_default_helpers_use_default_backend() -> None:
    vec = EIP191[0]
    assert PrivateKey(vec["private_key"]).backend == default_backend()
    assert sign_message(vec["private_key"], vec["message"]) == vec["signature"]
    assert public_key_hex(vec["private_key"]) == vec["public_key"]
    assert verify_signature(vec["public_key"], vec["message"], vec["signature"])


def test_signature_format() -> None:
    sig = sign_message(RANDOM_KEYS[0], "nonce")
    assert len(sig) == 130
    assert sig == sig.lower() and not sig.startswith("0x")
    assert int(sig[128:], 16) in (27, 28)
    assert int(sig[64:128], 16) <= N // 2


def test_bytes_message_equals_utf8_text() -> None:
    text = "héllo ✓"
    assert sign_message(RANDOM_KEYS[1], text.encode()) == sign_message(RANDOM_KEYS[1], text)
    assert eip191_digest(text.encode()) == eip191_digest(text)


def test_sign_digest_rejects_wrong_length() -> None:
    key = PrivateKey(RANDOM_KEYS[0])
    with pytest.raises(ValueError):
        key.sign_digest(b"\x00" * 31)


# ---------------------------------------------------------------------------- eth-account


def _address(pubkey_hex: str) -> str:
    return "0x" + keccak256_pure(bytes.fromhex(pubkey_hex[2:]))[-20:].hex()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key", RANDOM_KEYS[:4])
def test_matches_eth_account(backend: str, key: str) -> None:
    ours = PrivateKey(key, backend=backend)
    address = Account.from_key(key).address
    assert _address(ours.public_key_hex) == address.lower()
    for message in MESSAGES:
        signable = encode_defunct(text=message)
        theirs = bytes(Account.sign_message(signable, private_key=key).signature).hex()
        mine = ours.sign_message(message)
        assert mine == theirs, message
        assert Account.recover_message(signable, signature=bytes.fromhex(mine)) == address
        assert verify_signature(ours.public_key_hex, message, theirs, backend=backend)


@pytest.mark.parametrize("key", RANDOM_KEYS)
def test_ecdsa_backend_matches_ecdsa_sign_digest_deterministic(key: str) -> None:
    # The ecdsa backend re-does the signing steps to keep the nonce point (for the recovery
    # id); it must give exactly the library's own RFC 6979 signature.
    sk = SigningKey.from_secret_exponent(int(key, 16), curve=SECP256k1)
    ours = PrivateKey(key, backend="ecdsa")
    for message in MESSAGES:
        digest = eip191_digest(message)
        r, s = sk.sign_digest_deterministic(
            digest, hashfunc=hashlib.sha256, sigencode=sigencode_strings_canonize
        )
        assert ours.sign_digest(digest)[:128] == (r + s).hex()


def test_backends_agree_on_many_random_digests() -> None:
    rng = random.Random(7)
    for _ in range(40):
        key = format(rng.randrange(1, N), "064x")
        digest = rng.randbytes(32)
        signatures = {PrivateKey(key, backend=b).sign_digest(digest) for b in BACKENDS}
        assert len(signatures) == 1
    # both recovery ids (v = 27 and 28) were exercised by the loop above and the vectors
    assert {int(v["signature"][128:], 16) for v in EIP191} == {27, 28}


# ------------------------------------------------------------------------ verify_signature


def _flip_hex_bit(sig: str, byte_index: int, bit: int = 0) -> str:
    raw = bytearray(bytes.fromhex(sig))
    raw[byte_index] ^= 1 << bit
    return raw.hex()


def _high_s(sig: str) -> str:
    r, s, v = sig[:64], int(sig[64:128], 16), int(sig[128:], 16)
    return r + format(N - s, "064x") + format(55 - v, "02x")  # mirrored R: v 27 <-> 28


@pytest.fixture(scope="module")
def signed() -> tuple[str, str, str]:
    key = RANDOM_KEYS[2]
    message = "server nonce 1234"
    pub = public_key_hex(key)
    return pub, message, sign_message(key, message)


@pytest.mark.parametrize("backend", BACKENDS)
def test_verify_accepts_good_signatures(backend: str, signed) -> None:
    pub, message, sig = signed
    assert verify_signature(pub, message, sig, backend=backend) is True
    assert verify_signature(pub.upper().replace("0X", "0x"), message, sig.upper(), backend=backend)
    assert verify_signature("0x" + pub, message, "0x" + sig, backend=backend)


def test_high_s_variant_is_a_valid_ecdsa_signature(signed) -> None:
    # Guard for the rejection test below: the mirrored signature really is mathematically
    # valid (eth-account's recovery, which allows high S, returns the same signer), so
    # rejecting it tests the low-S rule, not some other defect.
    pub, message, sig = signed
    recovered = Account.recover_message(
        encode_defunct(text=message), signature=bytes.fromhex(_high_s(sig))
    )
    assert recovered.lower() == _address(pub)


@pytest.mark.parametrize("backend", BACKENDS)
def test_verify_rejects_bad_signatures(backend: str, signed) -> None:
    pub, message, sig = signed
    other_pub = public_key_hex(RANDOM_KEYS[3])
    bad = {
        "tampered message": (pub, message + "!", sig),
        "other key": (other_pub, message, sig),
        "flipped bit in r": (pub, message, _flip_hex_bit(sig, 31)),
        "flipped high bit in r": (pub, message, _flip_hex_bit(sig, 0, 7)),
        "flipped bit in s": (pub, message, _flip_hex_bit(sig, 63)),
        "flipped bit in s (high byte)": (pub, message, _flip_hex_bit(sig, 33, 3)),
        "high-S variant": (pub, message, _high_s(sig)),
        "v swapped": (pub, message, sig[:128] + format(55 - int(sig[128:], 16), "02x")),
        "v=29": (pub, message, sig[:128] + "1d"),
        "v=26": (pub, message, sig[:128] + "1a"),
        "v=0": (pub, message, sig[:128] + "00"),
        "v=1": (pub, message, sig[:128] + "01"),
        "r=0": (pub, message, "00" * 32 + sig[64:]),
        "s=0": (pub, message, sig[:64] + "00" * 32 + sig[128:]),
        "r=n": (pub, message, format(N, "064x") + sig[64:]),
        "r=2^256-1": (pub, message, "ff" * 32 + sig[64:]),
        "s=n-1 (high)": (pub, message, sig[:64] + format(N - 1, "064x") + sig[128:]),
        "signature too short": (pub, message, sig[:-2]),
        "signature too long": (pub, message, sig + "00"),
        "signature odd length": (pub, message, sig[:-1]),
        "signature empty": (pub, message, ""),
        "signature non-hex": (pub, message, "zz" + sig[2:]),
        "signature with whitespace": (pub, message, sig[:64] + " " + sig[65:]),
        "signature with trailing newline": (pub, message, sig + "\n"),
        "signature: 0x replacing the first byte": (pub, message, "0x" + sig[2:]),
        "pubkey not on curve": (pub[:-2] + format(int(pub[-2:], 16) ^ 1, "02x"), message, sig),
        "pubkey compressed": ("02" + pub[2:66], message, sig),
        "pubkey hybrid prefix": ("06" + pub[2:], message, sig),
        "pubkey wrong prefix": ("05" + pub[2:], message, sig),
        "pubkey truncated": (pub[:-2], message, sig),
        "pubkey garbage": ("04" + "zz" * 64, message, sig),
        "pubkey point at x=0": ("04" + "00" * 64, message, sig),
        "pubkey empty": ("", message, sig),
        "pubkey not str": (bytes.fromhex(pub), message, sig),
        "signature not str": (pub, message, bytes.fromhex(sig)),
        "message not str": (pub, 12345, sig),
        "message None": (pub, None, sig),
        "pubkey None": (None, message, sig),
        "unencodable message": (pub, "\ud800", sig),
    }
    for name, (p, m, s) in bad.items():
        assert verify_signature(p, m, s, backend=backend) is False, name


def test_ecdsa_verifier_handles_point_at_infinity() -> None:
    # With Q = G, a digest z = -r (mod n) makes u1*G + u2*Q the point at infinity.
    r = 123456789
    pub = bytes.fromhex(public_key_hex("0" * 63 + "1"))
    digest = (N - r).to_bytes(32, "big")
    assert auth._ecdsa_verify(pub, digest, r, 987654321, 0) is False


def test_verify_unknown_backend_is_a_config_error(signed) -> None:
    with pytest.raises(ConfigError):
        verify_signature(*signed, backend="openssl")


# ------------------------------------------------------------------------ key parsing


def test_parse_private_key_accepts_variants() -> None:
    key = RANDOM_KEYS[4]
    value = int(key, 16)
    for text in (key, key.upper(), "0x" + key, "0X" + key, f"  {key}\n", f"\t0x{key.upper()} "):
        assert parse_private_key(text) == value
    assert parse_private_key("0" * 63 + "1") == 1
    assert parse_private_key(format(N - 1, "064x")) == N - 1


SECRET = RANDOM_KEYS[5]


def _bad_keys() -> list[tuple[object, str, str]]:
    """(input, expected words in the message, the key text that must not leak)."""
    s = SECRET
    return [
        (s.encode(), "not bytes", s),
        (int(s, 16), "not int", s),
        (None, "not NoneType", s),
        ("g" + s[1:], "not hex", s),
        ("0x" + s[:30] + "-" + s[31:], "not hex", s),
        (s[:20] + " " + s[21:], "not hex", s),
        (s[:40] + "_" + s[40:], "not hex", s),
        ("0x0x" + s[4:], "not hex", s),
        (s[:-1], "got 63 hex characters", s),
        ("0x" + s[:-1], "got 63 hex characters", s),
        (s + "a", "got 65 hex characters", s),
        (s + s, "got 128 hex characters", s),
        ("", "got 0 hex characters", s),
        ("0x", "got 0 hex characters", s),
        ("0" * 64, "zero", "0" * 64),
        ("0x" + "0" * 64, "zero", "0" * 64),
        (format(N, "064x"), "curve order", format(N, "064x")),
        (format(N + 1, "064x"), "curve order", format(N + 1, "064x")),
        ("0x" + "f" * 64, "curve order", "f" * 64),
    ]


@pytest.mark.parametrize("bad,words,secret", _bad_keys())
def test_parse_private_key_errors_name_problem_without_leaking(bad, words, secret) -> None:
    for call in (parse_private_key, PrivateKey, public_key_hex):
        with pytest.raises(ConfigError) as info:
            call(bad)
        exc = info.value
        assert isinstance(exc, ValueError)
        text = str(exc)
        assert words in text, (words, text)
        if "got" in words:
            assert "64 are expected" in text
        # no chained exception that could quote the input
        assert exc.__cause__ is None and exc.__context__ is None
        rendered = [text, repr(exc), "".join(traceback.format_exception(exc))]
        windows = {secret[i : i + 8] for i in range(0, len(secret) - 7, 4)}
        windows |= {secret, secret.upper(), "0x" + secret, secret[:16], secret[-16:]}
        for shown in rendered:
            for piece in windows:
                assert piece not in shown and piece.upper() not in shown, (piece, shown)
            decimal = str(int(secret, 16))
            if len(decimal) >= 8:  # "0" (the zero key) is in any traceback's line numbers
                assert decimal not in shown


def test_type_error_message_names_the_type() -> None:
    with pytest.raises(ConfigError, match="not bytes"):
        parse_private_key(SECRET.encode())


def test_backend_selection_errors() -> None:
    with pytest.raises(ConfigError, match="unknown signing backend"):
        PrivateKey(SECRET, backend="openssl")


def test_backend_coincurve_unavailable_is_config_error(monkeypatch) -> None:
    monkeypatch.setattr(auth, "_SIGNERS", {"ecdsa": auth._EcdsaSigner})
    monkeypatch.setattr(auth, "_VERIFIERS", {"ecdsa": auth._ecdsa_verify})
    assert available_backends() == ["ecdsa"]
    assert default_backend() == "ecdsa"
    with pytest.raises(ConfigError, match="not importable"):
        PrivateKey(SECRET, backend="coincurve")
    assert PrivateKey(SECRET).backend == "ecdsa"


def test_module_works_without_native_packages() -> None:
    # What Pyodide has: ecdsa (and six), no coincurve, no pycryptodome. A None entry in
    # sys.modules makes the import raise ImportError.
    src = Path(auth.__file__).resolve().parents[1]
    script = f"""
import json, sys
sys.modules["coincurve"] = None
sys.modules["Crypto"] = None
sys.modules["Crypto.Hash"] = None
sys.path.insert(0, {str(src)!r})
from circle_ws_web import auth, keccak
from circle_ws_web.errors import ConfigError
assert keccak.KECCAK_BACKEND == "pure", keccak.KECCAK_BACKEND
assert keccak.keccak256 is keccak.keccak256_pure
assert auth.available_backends() == ["ecdsa"], auth.available_backends()
assert auth.default_backend() == "ecdsa"
vectors = json.load(open({str(VECTORS_PATH)!r}, encoding="utf-8"))
for v in vectors["eip191"]:
    k = auth.PrivateKey(v["private_key"])
    assert k.backend == "ecdsa"
    assert k.public_key_hex == v["public_key"]
    assert auth.eip191_digest(v["message"]).hex() == v["eip191_digest"]
    assert k.sign_message(v["message"]) == v["signature"]
    assert auth.verify_signature(v["public_key"], v["message"], v["signature"])
    assert not auth.verify_signature(v["public_key"], v["message"] + "x", v["signature"])
try:
    auth.PrivateKey(vectors["eip191"][0]["private_key"], backend="coincurve")
except ConfigError as exc:
    assert "not importable" in str(exc)
else:
    raise AssertionError("backend='coincurve' accepted without coincurve")
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ------------------------------------------------------------------------ key secrecy


@pytest.mark.parametrize("backend", BACKENDS)
def test_private_key_repr_and_str_hide_secret(backend: str) -> None:
    key = PrivateKey("0x" + SECRET, backend=backend)
    pieces = {SECRET[i : i + 8] for i in range(0, 57, 4)} | {str(int(SECRET, 16))}
    for shown in (repr(key), str(key), f"{key}", repr([key]), repr(key._signer)):
        for piece in pieces:
            assert piece not in shown and piece.upper() not in shown, (piece, shown)
    assert repr(key).startswith(f"PrivateKey(public_key='{key.public_key_hex[:12]}")
    assert f"backend='{backend}'" in repr(key)
    assert not hasattr(key, "__dict__")  # nothing for vars() to expose


@pytest.mark.parametrize("backend", BACKENDS)
def test_private_key_cannot_be_pickled_or_copied(backend: str) -> None:
    key = PrivateKey(SECRET, backend=backend)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError):
            pickle.dumps(key, protocol=protocol)
    with pytest.raises(TypeError):
        pickle.dumps(key._signer)
    with pytest.raises(TypeError):
        copy.copy(key)
    with pytest.raises(TypeError):
        copy.deepcopy(key)


def test_generate_private_key() -> None:
    keys = {generate_private_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(key) == 64 and key == key.lower()
        assert 1 <= parse_private_key(key) < N
        pub = public_key_hex(key)
        assert verify_signature(pub, "m", sign_message(key, "m"))


# ------------------------------------------------------- the pure signer's own arithmetic
# The pure backend signs with its own fixed-base table and RFC 6979 (the ecdsa package's
# generic code was 2.5x slower); these pin each piece to an independent implementation, on
# top of the vectors and the cross-backend checks above.


def test_curve_constants_are_secp256k1() -> None:
    curve = SECP256k1.curve
    assert N == SECP256k1.order
    assert auth._P == curve.p()
    assert (auth._GX, auth._GY) == (SECP256k1.generator.x(), SECP256k1.generator.y())
    assert (auth._GY**2 - auth._GX**3 - 7) % auth._P == 0


#: Scalars where the signed recoding is at its edges, for 6-bit windows and for the default
#: 7-bit ones: every digit 0, the largest positive (32 / 64), the first to borrow (33 / 65), all
#: ones (a borrow into every window), and the carry into the top window.
EDGE_SCALARS = [
    1, 2, 31, 32, 33, 63, 64, 2**252 - 1, 2**255, 2**255 - 1, N - 1, N - 2, N // 2,
    int("20" * 32, 16) % N, int("21" * 32, 16), int("3f" * 32, 16) % N, int("7" + "f" * 63, 16),
    sum(32 << (6 * i) for i in range(42)) % N, sum(33 << (6 * i) for i in range(42)) % N,
    65, 127, 128, sum(64 << (7 * i) for i in range(36)) % N, sum(65 << (7 * i) for i in range(36)) % N,
    sum(127 << (7 * i) for i in range(36)) % N,
]


@pytest.mark.parametrize("k", EDGE_SCALARS + [RNG.randrange(1, N) for _ in range(30)])
def test_fixed_base_multiplication_matches_ecdsa(k: int) -> None:
    expected = (k * SECP256k1.generator).to_affine()
    assert auth._mul_g(k) == (expected.x(), expected.y())


def test_point_addition_handles_doubling_and_opposite_points() -> None:
    g = SECP256k1.generator
    two = (2 * g).to_affine()
    x, y, z = auth._add_affine(auth._GX, auth._GY, 1, auth._GX, auth._GY)  # P + P
    assert auth._to_affine([(x, y, z)]) == [(two.x(), two.y())]
    assert auth._add_affine(auth._GX, auth._GY, 1, auth._GX, auth._P - auth._GY)[2] == 0  # P - P
    assert auth._add_affine(0, 1, 0, auth._GX, auth._GY) == (auth._GX, auth._GY, 1)  # O + P


def test_precompute_builds_the_table_once() -> None:
    auth.precompute()
    table = auth._TABLE
    assert table is not None and table[0] >= auth._DEFAULT_WINDOW
    window, rows = table
    assert len(rows) == 256 // window + 1 and all(len(row) == 1 << (window - 1) for row in rows)
    auth.precompute()
    auth.precompute(4)  # narrower than the one there: kept
    assert auth._TABLE is table
    with pytest.raises(ValueError):
        auth.precompute(11)


def test_table_rows_are_the_multiples_of_their_window_base(monkeypatch) -> None:
    # precompute() builds column by column with batched inversions; check a table against
    # the ecdsa package's own multiplication, every point of the first, a middle and the top row.
    monkeypatch.setattr(auth, "_TABLE", None)
    auth.precompute(5)
    assert auth._TABLE is not None
    window, rows = auth._TABLE
    g = SECP256k1.generator
    for i in (0, len(rows) // 2, len(rows) - 1):
        for j, point in enumerate(rows[i], start=1):
            expected = (j * 2 ** (window * i) * g).to_affine()
            assert point == (expected.x(), expected.y()), (i, j)


def test_batch_inverse_inverts_each_value() -> None:
    values = [1, 2, auth._P - 1, RNG.randrange(1, auth._P), RNG.randrange(1, auth._P)]
    assert [v * inv % auth._P for v, inv in zip(values, auth._batch_inverse(values))] == [1] * 5


@pytest.mark.parametrize("window", [4, 5, 6, 8])
def test_every_window_gives_the_same_points_and_signatures(window: int, monkeypatch) -> None:
    # The snapshot builds a wider table than a page does on its own: both must sign alike.
    monkeypatch.setattr(auth, "_TABLE", None)
    auth.precompute(window)
    assert auth._TABLE is not None and auth._TABLE[0] == window
    for k in EDGE_SCALARS[:12]:
        expected = (k * SECP256k1.generator).to_affine()
        assert auth._mul_g(k) == (expected.x(), expected.y())
    vec = EIP191[1]
    assert PrivateKey(vec["private_key"], backend="ecdsa").sign_message(vec["message"]) == vec["signature"]


@pytest.mark.parametrize("seed", range(12))
def test_rfc6979_nonces_match_ecdsa_generate_k(seed: int) -> None:
    from ecdsa import rfc6979

    rng = random.Random(seed)
    secret = rng.randrange(1, N) if seed else 1
    digest = rng.randbytes(32) if seed != 1 else b"\xff" * 32  # a digest above n, reduced
    nonces = auth._rfc6979_nonces(secret, digest)
    for retry in range(3):  # the later ones: what a signer uses if r or s came out 0
        assert next(nonces) == rfc6979.generate_k(N, secret, hashlib.sha256, digest, retry_gen=retry)


def _reference_keccak_f1600(a: list[int]) -> None:
    """Keccak-f[1600] as FIPS 202 writes it (steps over tables), to check the unrolled one."""
    mask = 2**64 - 1
    rot = [[0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61], [28, 55, 25, 21, 56],
           [27, 20, 39, 8, 14]]  # rot[x][y]
    rc = [int(c, 16) for c in (
        "1 8082 800000000000808A 8000000080008000 808B 80000001 8000000080008081 8000000000008009 "
        "8A 88 80008009 8000000A 8000808B 800000000000008B 8000000000008089 8000000000008003 "
        "8000000000008002 8000000000000080 800A 800000008000000A 8000000080008081 8000000000008080 "
        "80000001 8000000080008008").split()]

    def rotl(v: int, r: int) -> int:
        return ((v << r) | (v >> (64 - r))) & mask if r else v

    for rnd in range(24):
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ rotl(c[(x + 1) % 5], 1) for x in range(5)]
        b = [0] * 25
        for x in range(5):
            for y in range(5):
                b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(a[x + 5 * y] ^ d[x], rot[x][y])
        for x in range(5):
            for y in range(5):
                a[x + 5 * y] = b[x + 5 * y] ^ (~b[(x + 1) % 5 + 5 * y] & b[(x + 2) % 5 + 5 * y])
        a[0] ^= rc[rnd]


@pytest.mark.parametrize("seed", range(5))
def test_unrolled_permutation_matches_the_reference(seed: int) -> None:
    from circle_ws_web import keccak as keccak_module

    rng = random.Random(seed)
    state = [rng.getrandbits(64) for _ in range(25)] if seed else [0] * 25
    expected = list(state)
    _reference_keccak_f1600(expected)
    keccak_module._keccak_f1600(state)
    assert state == expected


def test_first_verification_in_a_fresh_interpreter_finds_coincurve() -> None:
    # coincurve is looked for on first use; a verification that comes first (a server's) must
    # still reach the backend it was resolved to.
    vec = EIP191[0]
    script = f"""
from circle_ws_web import auth
assert auth._SIGNERS is auth._PURE_SIGNERS  # nothing probed yet
assert auth.verify_signature({vec["public_key"]!r}, {vec["message"]!r}, {vec["signature"]!r})
assert auth.default_backend() == "coincurve"
print("ok")
"""
    src = Path(auth.__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(src)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
