"""Keccak-256, the hash Ethereum's EIP-191 "personal_sign" is defined over.

Why this module exists:

* ``hashlib.sha3_256`` is NIST SHA-3, which pads with ``0x06`` where the original Keccak
  submission (what Ethereum calls keccak256) pads with ``0x01``; its digests differ, so the
  standard library cannot be used.
* On CPython the fast path is pycryptodome's ``Crypto.Hash.keccak`` (a C implementation),
  installed with the ``fast`` extra.
* In the browser (Pyodide) pycryptodome has no wasm wheel on PyPI and there is no well-kept
  pure-Python keccak, so the permutation is here, generated (``_permutation_source``) over 25
  local ints: it is about half of a signature's time in the browser.

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
# Lanes kept complemented (stored as lane ^ _MASK) through the rounds: the "bebigokimisa" set
# of the Keccak team's lane-complementing transform (Keccak implementation overview 3.0,
# section 2.2), which lets chi use | and & on stored values with one complement per row
# instead of five NOTs.
_COMPLEMENTED = frozenset({1, 2, 8, 12, 17, 20})
# Lanes are kept as _COPIES side-by-side copies of themselves ("periodic" ints), renewed every
# _GROUP rounds: a round spends at most 126 of the valid bits (63 in theta's c >> 63, up to 63
# in a rotation's shift), so 3 rounds need 64 + 3 * 126 = 442 bits: 7 copies.
_GROUP = 3
_COPIES = 7
_SPREAD = sum(1 << (64 * i) for i in range(_COPIES))  # x * _SPREAD: _COPIES copies of a lane x
_WIDE = (1 << (64 * _COPIES)) - 1  # the complement mask of a periodic value
# The round constants in groups of _GROUP, each spread like a lane (iota xors every copy).
_RC_GROUPS = tuple(tuple(rc * _SPREAD for rc in _RC[i : i + _GROUP]) for i in range(0, 24, _GROUP))


def _permutation_source() -> str:
    """The source of ``_permute`` below, which is this function's output written out.

    Why generated: the fast form is a few hundred lines of lane arithmetic whose indices,
    shifts and chi forms follow mechanically from the tables above; written by hand, a typo
    would show only for some inputs. tests/unit/test_keccak.py checks ``_permute`` is still
    exactly this output (regenerate: ``python -c "from circle_ws_web import keccak;
    print(keccak._permutation_source())"`` and paste it over).

    The tricks, counted in Python operations (what costs, in CPython and more so in Pyodide,
    where every operation on a multi-digit int allocates):

    * lanes are periodic ints, ``_COPIES`` copies side by side, so a rotation is one right
      shift (a window of a periodic value is the rotated lane) instead of two shifts, an or and
      a mask, and theta's rotation by one is a bare ``c >> 63``. Shifting spends valid bits, so
      every ``_GROUP`` rounds chi's output is masked to 64 bits and spread again (``* _SPREAD``);
    * lane complementing (``_COMPLEMENTED``) turns chi's 25 ``~b1 & b2`` into ``&`` / ``|`` on
      the stored values with five complements (``^ w``) a round instead of 25 NOTs, and keeps
      every value non-negative (a negative int makes each bitwise operation slower);
    * rho and pi are one step (each ``b`` reads its source lane), the lanes are locals.

    About 155 operations a round instead of the plain form's 242; the complement status of
    each value is tracked here, so every expression computes the true chi of the true lanes.
    """
    src = [0] * 25  # src[j]: the lane that rho-pi moves to position j
    for x in range(5):
        for y in range(5):
            src[y + 5 * ((2 * x + 3 * y) % 5)] = x + 5 * y
    st = [1 if i in _COMPLEMENTED else 0 for i in range(25)]  # 1: stored complemented
    args = ", ".join(f"a{i}" for i in range(25))
    rcs = ", ".join(f"rc{q}" for q in range(_GROUP))
    out = [
        f"def _permute({args}) -> tuple[int, ...]:",
        '    """Keccak-f[1600] of the 25 lanes (index x + 5*y); generated by _permutation_source()."""',
        "    m = _MASK",
        "    w = _WIDE",
        "    spread = _SPREAD",
    ]
    for i in range(25):
        out.append(f"    a{i} = (a{i} ^ m) * spread" if st[i] else f"    a{i} = a{i} * spread")
    out.append(f"    for {rcs} in _RC_GROUPS:")
    cs = [st[x] ^ st[x + 5] ^ st[x + 10] ^ st[x + 15] ^ st[x + 20] for x in range(5)]
    for q in range(_GROUP):
        last = q == _GROUP - 1
        out.append(f"        # round {q + 1} of {_GROUP}" + (": chi's output masked and spread again" if last else ""))
        for x in range(5):
            out.append(f"        c{x} = a{x} ^ a{x + 5} ^ a{x + 10} ^ a{x + 15} ^ a{x + 20}")
        for x in range(5):  # theta: d[x] = c[x-1] ^ rot(c[x+1], 1)
            out.append(f"        d{x} = c{(x - 1) % 5} ^ (c{(x + 1) % 5} >> 63)")
        bs = [0] * 25
        for j in range(25):  # theta applied, rho and pi fused: b[j] = rot(a[src] ^ d[x], r)
            i = src[j]
            x, r = i % 5, _ROT[i]
            bs[j] = st[i] ^ cs[(x - 1) % 5] ^ cs[(x + 1) % 5]
            out.append(f"        b{j} = (a{i} ^ d{x}) >> {64 - r}" if r else f"        b{j} = a{i} ^ d{x}")
        for j in range(25):  # chi: a = b0 ^ (~b1 & b2), on stored values, to the status st[j]
            row = j - j % 5
            j1, j2 = row + (j + 1) % 5, row + (j + 2) % 5
            u0, u1, u2 = f"b{j}", f"b{j1}", f"b{j2}"
            s1, s2 = bs[j1], bs[j2]
            if (s1, s2) == (1, 0):  # ~b1 = u1, b2 = u2
                forms = [(f"{u0} ^ ({u1} & {u2})", 0)]
            elif (s1, s2) == (0, 1):  # ~b1 & b2 = ~(u1 | u2)
                forms = [(f"{u0} ^ ({u1} | {u2})", 1)]
            elif (s1, s2) == (0, 0):  # ~u1 & u2 = (u1 | u2) ^ u1; its complement u1 | ~u2
                forms = [(f"{u0} ^ (({u1} | {u2}) ^ {u1})", 0), (f"{u0} ^ ({u1} | ({u2} ^ w))", 1)]
            else:  # u1 & ~u2 = (u1 | u2) ^ u2; its complement ~u1 | u2
                forms = [(f"{u0} ^ (({u1} | {u2}) ^ {u2})", 0), (f"{u0} ^ (({u1} ^ w) | {u2})", 1)]
            want = st[j] ^ bs[j]  # whether the chi term must come out complemented
            expr = next((e for e, flip in forms if flip == want), None)
            if expr is None:
                expr = f"{forms[0][0]} ^ w"
            if j == 0:
                expr += f" ^ rc{q}"  # iota
            out.append(f"        a{j} = (({expr}) & m) * spread" if last else f"        a{j} = {expr}")
    rets = [f"a{i} & m ^ m" if st[i] else f"a{i} & m" for i in range(25)]
    out.append("    return (" + ", ".join(rets) + ")")
    return "\n".join(out) + "\n"


# --- generated by _permutation_source() (see there); do not edit by hand ----------------------
def _permute(a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24) -> tuple[int, ...]:
    """Keccak-f[1600] of the 25 lanes (index x + 5*y); generated by _permutation_source()."""
    m = _MASK
    w = _WIDE
    spread = _SPREAD
    a0 = a0 * spread
    a1 = (a1 ^ m) * spread
    a2 = (a2 ^ m) * spread
    a3 = a3 * spread
    a4 = a4 * spread
    a5 = a5 * spread
    a6 = a6 * spread
    a7 = a7 * spread
    a8 = (a8 ^ m) * spread
    a9 = a9 * spread
    a10 = a10 * spread
    a11 = a11 * spread
    a12 = (a12 ^ m) * spread
    a13 = a13 * spread
    a14 = a14 * spread
    a15 = a15 * spread
    a16 = a16 * spread
    a17 = (a17 ^ m) * spread
    a18 = a18 * spread
    a19 = a19 * spread
    a20 = (a20 ^ m) * spread
    a21 = a21 * spread
    a22 = a22 * spread
    a23 = a23 * spread
    a24 = a24 * spread
    for rc0, rc1, rc2 in _RC_GROUPS:
        # round 1 of 3
        c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20
        c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21
        c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22
        c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23
        c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24
        d0 = c4 ^ (c1 >> 63)
        d1 = c0 ^ (c2 >> 63)
        d2 = c1 ^ (c3 >> 63)
        d3 = c2 ^ (c4 >> 63)
        d4 = c3 ^ (c0 >> 63)
        b0 = a0 ^ d0
        b1 = (a6 ^ d1) >> 20
        b2 = (a12 ^ d2) >> 21
        b3 = (a18 ^ d3) >> 43
        b4 = (a24 ^ d4) >> 50
        b5 = (a3 ^ d3) >> 36
        b6 = (a9 ^ d4) >> 44
        b7 = (a10 ^ d0) >> 61
        b8 = (a16 ^ d1) >> 19
        b9 = (a22 ^ d2) >> 3
        b10 = (a1 ^ d1) >> 63
        b11 = (a7 ^ d2) >> 58
        b12 = (a13 ^ d3) >> 39
        b13 = (a19 ^ d4) >> 56
        b14 = (a20 ^ d0) >> 46
        b15 = (a4 ^ d4) >> 37
        b16 = (a5 ^ d0) >> 28
        b17 = (a11 ^ d1) >> 54
        b18 = (a17 ^ d2) >> 49
        b19 = (a23 ^ d3) >> 8
        b20 = (a2 ^ d2) >> 2
        b21 = (a8 ^ d3) >> 9
        b22 = (a14 ^ d4) >> 25
        b23 = (a15 ^ d0) >> 23
        b24 = (a21 ^ d1) >> 62
        a0 = b0 ^ (b1 | b2) ^ rc0
        a1 = b1 ^ ((b2 ^ w) | b3)
        a2 = b2 ^ (b3 & b4)
        a3 = b3 ^ (b4 | b0)
        a4 = b4 ^ (b0 & b1)
        a5 = b5 ^ (b6 | b7)
        a6 = b6 ^ (b7 & b8)
        a7 = b7 ^ (b8 | (b9 ^ w))
        a8 = b8 ^ (b9 | b5)
        a9 = b9 ^ (b5 & b6)
        a10 = b10 ^ (b11 | b12)
        a11 = b11 ^ (b12 & b13)
        a12 = b12 ^ ((b13 | b14) ^ b13)
        a13 = b13 ^ (b14 | b10) ^ w
        a14 = b14 ^ (b10 & b11)
        a15 = b15 ^ (b16 & b17)
        a16 = b16 ^ (b17 | b18)
        a17 = b17 ^ ((b18 ^ w) | b19)
        a18 = b18 ^ (b19 & b15) ^ w
        a19 = b19 ^ (b15 | b16)
        a20 = b20 ^ ((b21 | b22) ^ b21)
        a21 = b21 ^ (b22 | b23) ^ w
        a22 = b22 ^ (b23 & b24)
        a23 = b23 ^ (b24 | b20)
        a24 = b24 ^ (b20 & b21)
        # round 2 of 3
        c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20
        c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21
        c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22
        c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23
        c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24
        d0 = c4 ^ (c1 >> 63)
        d1 = c0 ^ (c2 >> 63)
        d2 = c1 ^ (c3 >> 63)
        d3 = c2 ^ (c4 >> 63)
        d4 = c3 ^ (c0 >> 63)
        b0 = a0 ^ d0
        b1 = (a6 ^ d1) >> 20
        b2 = (a12 ^ d2) >> 21
        b3 = (a18 ^ d3) >> 43
        b4 = (a24 ^ d4) >> 50
        b5 = (a3 ^ d3) >> 36
        b6 = (a9 ^ d4) >> 44
        b7 = (a10 ^ d0) >> 61
        b8 = (a16 ^ d1) >> 19
        b9 = (a22 ^ d2) >> 3
        b10 = (a1 ^ d1) >> 63
        b11 = (a7 ^ d2) >> 58
        b12 = (a13 ^ d3) >> 39
        b13 = (a19 ^ d4) >> 56
        b14 = (a20 ^ d0) >> 46
        b15 = (a4 ^ d4) >> 37
        b16 = (a5 ^ d0) >> 28
        b17 = (a11 ^ d1) >> 54
        b18 = (a17 ^ d2) >> 49
        b19 = (a23 ^ d3) >> 8
        b20 = (a2 ^ d2) >> 2
        b21 = (a8 ^ d3) >> 9
        b22 = (a14 ^ d4) >> 25
        b23 = (a15 ^ d0) >> 23
        b24 = (a21 ^ d1) >> 62
        a0 = b0 ^ (b1 | b2) ^ rc1
        a1 = b1 ^ ((b2 ^ w) | b3)
        a2 = b2 ^ (b3 & b4)
        a3 = b3 ^ (b4 | b0)
        a4 = b4 ^ (b0 & b1)
        a5 = b5 ^ (b6 | b7)
        a6 = b6 ^ (b7 & b8)
        a7 = b7 ^ (b8 | (b9 ^ w))
        a8 = b8 ^ (b9 | b5)
        a9 = b9 ^ (b5 & b6)
        a10 = b10 ^ (b11 | b12)
        a11 = b11 ^ (b12 & b13)
        a12 = b12 ^ ((b13 | b14) ^ b13)
        a13 = b13 ^ (b14 | b10) ^ w
        a14 = b14 ^ (b10 & b11)
        a15 = b15 ^ (b16 & b17)
        a16 = b16 ^ (b17 | b18)
        a17 = b17 ^ ((b18 ^ w) | b19)
        a18 = b18 ^ (b19 & b15) ^ w
        a19 = b19 ^ (b15 | b16)
        a20 = b20 ^ ((b21 | b22) ^ b21)
        a21 = b21 ^ (b22 | b23) ^ w
        a22 = b22 ^ (b23 & b24)
        a23 = b23 ^ (b24 | b20)
        a24 = b24 ^ (b20 & b21)
        # round 3 of 3: chi's output masked and spread again
        c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20
        c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21
        c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22
        c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23
        c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24
        d0 = c4 ^ (c1 >> 63)
        d1 = c0 ^ (c2 >> 63)
        d2 = c1 ^ (c3 >> 63)
        d3 = c2 ^ (c4 >> 63)
        d4 = c3 ^ (c0 >> 63)
        b0 = a0 ^ d0
        b1 = (a6 ^ d1) >> 20
        b2 = (a12 ^ d2) >> 21
        b3 = (a18 ^ d3) >> 43
        b4 = (a24 ^ d4) >> 50
        b5 = (a3 ^ d3) >> 36
        b6 = (a9 ^ d4) >> 44
        b7 = (a10 ^ d0) >> 61
        b8 = (a16 ^ d1) >> 19
        b9 = (a22 ^ d2) >> 3
        b10 = (a1 ^ d1) >> 63
        b11 = (a7 ^ d2) >> 58
        b12 = (a13 ^ d3) >> 39
        b13 = (a19 ^ d4) >> 56
        b14 = (a20 ^ d0) >> 46
        b15 = (a4 ^ d4) >> 37
        b16 = (a5 ^ d0) >> 28
        b17 = (a11 ^ d1) >> 54
        b18 = (a17 ^ d2) >> 49
        b19 = (a23 ^ d3) >> 8
        b20 = (a2 ^ d2) >> 2
        b21 = (a8 ^ d3) >> 9
        b22 = (a14 ^ d4) >> 25
        b23 = (a15 ^ d0) >> 23
        b24 = (a21 ^ d1) >> 62
        a0 = ((b0 ^ (b1 | b2) ^ rc2) & m) * spread
        a1 = ((b1 ^ ((b2 ^ w) | b3)) & m) * spread
        a2 = ((b2 ^ (b3 & b4)) & m) * spread
        a3 = ((b3 ^ (b4 | b0)) & m) * spread
        a4 = ((b4 ^ (b0 & b1)) & m) * spread
        a5 = ((b5 ^ (b6 | b7)) & m) * spread
        a6 = ((b6 ^ (b7 & b8)) & m) * spread
        a7 = ((b7 ^ (b8 | (b9 ^ w))) & m) * spread
        a8 = ((b8 ^ (b9 | b5)) & m) * spread
        a9 = ((b9 ^ (b5 & b6)) & m) * spread
        a10 = ((b10 ^ (b11 | b12)) & m) * spread
        a11 = ((b11 ^ (b12 & b13)) & m) * spread
        a12 = ((b12 ^ ((b13 | b14) ^ b13)) & m) * spread
        a13 = ((b13 ^ (b14 | b10) ^ w) & m) * spread
        a14 = ((b14 ^ (b10 & b11)) & m) * spread
        a15 = ((b15 ^ (b16 & b17)) & m) * spread
        a16 = ((b16 ^ (b17 | b18)) & m) * spread
        a17 = ((b17 ^ ((b18 ^ w) | b19)) & m) * spread
        a18 = ((b18 ^ (b19 & b15) ^ w) & m) * spread
        a19 = ((b19 ^ (b15 | b16)) & m) * spread
        a20 = ((b20 ^ ((b21 | b22) ^ b21)) & m) * spread
        a21 = ((b21 ^ (b22 | b23) ^ w) & m) * spread
        a22 = ((b22 ^ (b23 & b24)) & m) * spread
        a23 = ((b23 ^ (b24 | b20)) & m) * spread
        a24 = ((b24 ^ (b20 & b21)) & m) * spread
    return (a0 & m, a1 & m ^ m, a2 & m ^ m, a3 & m, a4 & m, a5 & m, a6 & m, a7 & m, a8 & m ^ m, a9 & m, a10 & m, a11 & m, a12 & m ^ m, a13 & m, a14 & m, a15 & m, a16 & m, a17 & m ^ m, a18 & m, a19 & m, a20 & m ^ m, a21 & m, a22 & m, a23 & m, a24 & m)
# --- end of generated code ---------------------------------------------------------------------


def _keccak_f1600(lanes: list[int]) -> None:
    """Keccak-f[1600] on a list of 25 lanes (index x + 5*y), in place (tests use this form)."""
    lanes[:] = _permute(*lanes)


_LANES_IN = struct.Struct("<17Q")  # one 136-byte block as 17 little-endian lanes
_DIGEST_OUT = struct.Struct("<4Q")  # the first 4 lanes are the 32-byte digest
_CAPACITY: tuple[int, ...] = (0,) * 8  # lanes 17..24 of the first block's state


def keccak256_pure(data: bytes) -> bytes:
    """Keccak-256 of ``data`` (original Keccak padding, as Ethereum uses), pure Python."""
    data = bytes(data)
    # pad10*1 with the Keccak domain byte 0x01 (SHA-3 would use 0x06).
    pad_len = _RATE - (len(data) % _RATE)
    if pad_len == 1:
        padded = data + b"\x81"
    else:
        padded = data + b"\x01" + bytes(pad_len - 2) + b"\x80"
    # The first block goes straight in (the state is zero): one call for messages under 136
    # bytes, which every login nonce is.
    state = _permute(*_LANES_IN.unpack_from(padded), *_CAPACITY)
    for off in range(_RATE, len(padded), _RATE):
        block = _LANES_IN.unpack_from(padded, off)
        state = _permute(*[s ^ b for s, b in zip(state, block)], *state[17:])
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
