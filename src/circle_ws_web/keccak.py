"""Keccak-256, the hash Ethereum's EIP-191 "personal_sign" is defined over.

Why this module exists:

* ``hashlib.sha3_256`` is NIST SHA-3, which pads with ``0x06`` where the original Keccak
  submission (what Ethereum calls keccak256) pads with ``0x01``; its digests differ, so the
  standard library cannot be used.
* On CPython the fast path is pycryptodome's ``Crypto.Hash.keccak`` (a C implementation),
  installed with the ``fast`` extra.
* In the browser (Pyodide) pycryptodome has no wasm wheel and there is no well-kept
  pure-Python keccak on PyPI, so the permutation is written out here, over 25 local ints: it
  is a third of a login's signing time in the browser.

``keccak256`` picks the fast path when importable (decided on first use: importing
pycryptodome is slow); ``keccak256_pure`` is always the pure one (tests compare the two).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Callable

__all__ = ["keccak256", "keccak256_pure", "KECCAK_BACKEND"]

_MASK = 0xFFFFFFFFFFFFFFFF
_RATE = 136  # bytes absorbed per permutation: 1600 - 2 * 256 bits capacity, in bytes

# Round constants of Keccak-f[1600] (iota step), FIPS 202 section 3.2.5.
_RC = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)

# Rotation offsets (rho step), indexed by lane x + 5*y.
_ROT = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)


def _keccak_f1600(lanes: list[int]) -> None:
    """Apply the 24-round Keccak-f[1600] permutation to the 25 lanes (index x + 5*y), in place.

    Written out lane by lane with the lanes in local variables: in CPython (and more so in
    Pyodide's WebAssembly build) a local is far cheaper than a list item or a loop over a
    table, which makes this about 3x faster than the table-driven form. Each round is theta
    (c, d), rho and pi fused (b[y + 5*((2x + 3y) % 5)] = rot(a[x + 5y] ^ d[x], _ROT[x + 5y])),
    then chi and iota. tests/test_auth.py checks it against a plain table-driven permutation.
    """
    m = _MASK
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24 = lanes
    for rc in _RC:
        c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20
        c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21
        c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22
        c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23
        c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24
        d0 = c4 ^ ((c1 << 1 | c1 >> 63) & m)
        d1 = c0 ^ ((c2 << 1 | c2 >> 63) & m)
        d2 = c1 ^ ((c3 << 1 | c3 >> 63) & m)
        d3 = c2 ^ ((c4 << 1 | c4 >> 63) & m)
        d4 = c3 ^ ((c0 << 1 | c0 >> 63) & m)
        b0 = a0 ^ d0
        t = a6 ^ d1
        b1 = (t << 44 | t >> 20) & m
        t = a12 ^ d2
        b2 = (t << 43 | t >> 21) & m
        t = a18 ^ d3
        b3 = (t << 21 | t >> 43) & m
        t = a24 ^ d4
        b4 = (t << 14 | t >> 50) & m
        t = a3 ^ d3
        b5 = (t << 28 | t >> 36) & m
        t = a9 ^ d4
        b6 = (t << 20 | t >> 44) & m
        t = a10 ^ d0
        b7 = (t << 3 | t >> 61) & m
        t = a16 ^ d1
        b8 = (t << 45 | t >> 19) & m
        t = a22 ^ d2
        b9 = (t << 61 | t >> 3) & m
        t = a1 ^ d1
        b10 = (t << 1 | t >> 63) & m
        t = a7 ^ d2
        b11 = (t << 6 | t >> 58) & m
        t = a13 ^ d3
        b12 = (t << 25 | t >> 39) & m
        t = a19 ^ d4
        b13 = (t << 8 | t >> 56) & m
        t = a20 ^ d0
        b14 = (t << 18 | t >> 46) & m
        t = a4 ^ d4
        b15 = (t << 27 | t >> 37) & m
        t = a5 ^ d0
        b16 = (t << 36 | t >> 28) & m
        t = a11 ^ d1
        b17 = (t << 10 | t >> 54) & m
        t = a17 ^ d2
        b18 = (t << 15 | t >> 49) & m
        t = a23 ^ d3
        b19 = (t << 56 | t >> 8) & m
        t = a2 ^ d2
        b20 = (t << 62 | t >> 2) & m
        t = a8 ^ d3
        b21 = (t << 55 | t >> 9) & m
        t = a14 ^ d4
        b22 = (t << 39 | t >> 25) & m
        t = a15 ^ d0
        b23 = (t << 41 | t >> 23) & m
        t = a21 ^ d1
        b24 = (t << 2 | t >> 62) & m
        a0 = b0 ^ (~b1 & b2) ^ rc
        a1 = b1 ^ (~b2 & b3)
        a2 = b2 ^ (~b3 & b4)
        a3 = b3 ^ (~b4 & b0)
        a4 = b4 ^ (~b0 & b1)
        a5 = b5 ^ (~b6 & b7)
        a6 = b6 ^ (~b7 & b8)
        a7 = b7 ^ (~b8 & b9)
        a8 = b8 ^ (~b9 & b5)
        a9 = b9 ^ (~b5 & b6)
        a10 = b10 ^ (~b11 & b12)
        a11 = b11 ^ (~b12 & b13)
        a12 = b12 ^ (~b13 & b14)
        a13 = b13 ^ (~b14 & b10)
        a14 = b14 ^ (~b10 & b11)
        a15 = b15 ^ (~b16 & b17)
        a16 = b16 ^ (~b17 & b18)
        a17 = b17 ^ (~b18 & b19)
        a18 = b18 ^ (~b19 & b15)
        a19 = b19 ^ (~b15 & b16)
        a20 = b20 ^ (~b21 & b22)
        a21 = b21 ^ (~b22 & b23)
        a22 = b22 ^ (~b23 & b24)
        a23 = b23 ^ (~b24 & b20)
        a24 = b24 ^ (~b20 & b21)
    lanes[:] = (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24)



_LANES_IN = struct.Struct("<17Q")  # one 136-byte block as 17 little-endian lanes
_DIGEST_OUT = struct.Struct("<4Q")  # the first 4 lanes are the 32-byte digest


def keccak256_pure(data: bytes) -> bytes:
    """Keccak-256 of ``data`` (original Keccak padding, as Ethereum uses), pure Python."""
    data = bytes(data)
    # pad10*1 with the Keccak domain byte 0x01 (SHA-3 would use 0x06).
    pad_len = _RATE - (len(data) % _RATE)
    if pad_len == 1:
        padded = data + b"\x81"
    else:
        padded = data + b"\x01" + b"\x00" * (pad_len - 2) + b"\x80"
    state = [0] * 25
    for off in range(0, len(padded), _RATE):
        lanes = _LANES_IN.unpack_from(padded, off)
        for i in range(17):
            state[i] ^= lanes[i]
        _keccak_f1600(state)
    return _DIGEST_OUT.pack(*state[:4])


def _pycryptodome_keccak256(data: bytes) -> bytes:
    """Keccak-256 of ``data`` via pycryptodome (C); same result as ``keccak256_pure``."""
    return _pycryptodome_keccak.new(digest_bits=256, data=bytes(data)).digest()


def _choose() -> None:
    """Bind ``keccak256`` and ``KECCAK_BACKEND``: pycryptodome when it imports, else pure.

    Why on first use and not at import: importing pycryptodome (cffi/ctypes, its shared
    library) costs more than everything else ``import circle_ws_web`` does, and a client hashes
    only at its first login. Module ``__getattr__`` (PEP 562) runs this once; afterwards both
    are plain module globals, so ``keccak.keccak256 is keccak.keccak256_pure`` still holds in
    the browser.
    """
    global _pycryptodome_keccak, keccak256, KECCAK_BACKEND
    try:
        from Crypto.Hash import keccak as module
    except ImportError:  # the browser (Pyodide) and minimal installs
        keccak256, KECCAK_BACKEND = keccak256_pure, "pure"
    else:
        _pycryptodome_keccak = module
        keccak256, KECCAK_BACKEND = _pycryptodome_keccak256, "pycryptodome"


_pycryptodome_keccak: Any = None

if TYPE_CHECKING:
    #: Keccak-256 of bytes: pycryptodome when importable, else ``keccak256_pure``.
    keccak256: Callable[[bytes], bytes]
    #: ``"pycryptodome"`` or ``"pure"``: which implementation ``keccak256`` is.
    KECCAK_BACKEND: str
else:

    def __getattr__(name: str) -> Any:
        if name in ("keccak256", "KECCAK_BACKEND"):
            _choose()
            return globals()[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
