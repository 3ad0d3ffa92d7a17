"""Keccak-256, the hash Ethereum's EIP-191 "personal_sign" is defined over.

Why this module exists:

* ``hashlib.sha3_256`` is NIST SHA-3, which pads with ``0x06`` where the original Keccak
  submission (what Ethereum calls keccak256) pads with ``0x01``; its digests differ, so the
  standard library cannot be used.
* On CPython the fast path is pycryptodome's ``Crypto.Hash.keccak`` (a C implementation),
  installed with the ``fast`` extra.
* In the browser (Pyodide) pycryptodome has no wasm wheel and there is no well-kept
  pure-Python keccak on PyPI, so the permutation is written out here. The client hashes one
  short nonce per (re)authentication, so a pure implementation is plenty fast; it is kept
  tight anyway (precomputed constants, 25 plain ints, no per-lane function calls).

``keccak256`` picks the fast path when importable; ``keccak256_pure`` is always the pure one
(tests compare the two).
"""

from __future__ import annotations

import struct

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


def _rho_pi_table() -> tuple[tuple[int, int, int, int], ...]:
    """(source lane, source column, destination lane, rotation) for the fused rho+pi step.

    pi moves lane (x, y) to (y, 2x + 3y mod 5); rho rotates it by _ROT[x + 5y] on the way.
    """
    table = []
    for y in range(5):
        for x in range(5):
            src = x + 5 * y
            dst = y + 5 * ((2 * x + 3 * y) % 5)
            table.append((src, x, dst, _ROT[src]))
    return tuple(table)


_RHO_PI = _rho_pi_table()


def _keccak_f1600(a: list[int]) -> None:
    """Apply the 24-round Keccak-f[1600] permutation to the 25 lanes ``a``, in place."""
    mask = _MASK
    rho_pi = _RHO_PI
    b = [0] * 25
    for rc in _RC:
        # theta: XOR each lane with the parities of two neighbouring columns.
        c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20]
        c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21]
        c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22]
        c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23]
        c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24]
        d = (
            c4 ^ (((c1 << 1) | (c1 >> 63)) & mask),
            c0 ^ (((c2 << 1) | (c2 >> 63)) & mask),
            c1 ^ (((c3 << 1) | (c3 >> 63)) & mask),
            c2 ^ (((c4 << 1) | (c4 >> 63)) & mask),
            c3 ^ (((c0 << 1) | (c0 >> 63)) & mask),
        )
        # rho + pi: rotate every lane and move it to its new position.
        for src, col, dst, rot in rho_pi:
            v = a[src] ^ d[col]
            b[dst] = ((v << rot) | (v >> (64 - rot))) & mask
        # chi: non-linear mix along each row (~x & y stays non-negative for y >= 0).
        for y in (0, 5, 10, 15, 20):
            b0, b1, b2, b3, b4 = b[y], b[y + 1], b[y + 2], b[y + 3], b[y + 4]
            a[y] = b0 ^ (~b1 & b2)
            a[y + 1] = b1 ^ (~b2 & b3)
            a[y + 2] = b2 ^ (~b3 & b4)
            a[y + 3] = b3 ^ (~b4 & b0)
            a[y + 4] = b4 ^ (~b0 & b1)
        # iota
        a[0] ^= rc


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


try:  # pragma: no branch - which path runs depends on the environment
    from Crypto.Hash import keccak as _pycryptodome_keccak
except ImportError:  # the browser (Pyodide) and minimal installs
    _pycryptodome_keccak = None  # type: ignore[assignment]

if _pycryptodome_keccak is not None:
    KECCAK_BACKEND = "pycryptodome"

    def keccak256(data: bytes) -> bytes:
        """Keccak-256 of ``data`` via pycryptodome (C); same result as ``keccak256_pure``."""
        return _pycryptodome_keccak.new(digest_bits=256, data=bytes(data)).digest()

else:
    KECCAK_BACKEND = "pure"
    keccak256 = keccak256_pure
