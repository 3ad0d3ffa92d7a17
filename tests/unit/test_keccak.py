"""The pure Keccak-256: its generated permutation is what its generator says, and it hashes
like pycryptodome's C implementation at every length that exercises the padding and the blocks.

Why: the permutation is written out by ``keccak._permutation_source()`` (tripled lanes, lane
complementing); a hand edit, or a generator change not pasted over, would leave code that no
longer matches its explanation. Lengths 135/136/137 (and two blocks' worth) are where the
padding byte shares a byte with the end marker, fills a block exactly, or spills into the next.
"""

from __future__ import annotations

import inspect
import random

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak

from circle_ws_web import keccak

RATE = 136


def reference(data: bytes) -> bytes:
    return pycryptodome_keccak.new(digest_bits=256, data=data).digest()


def test_written_out_permutation_is_the_generators_output() -> None:
    assert inspect.getsource(keccak._permute) == keccak._permutation_source()


def test_permutation_keeps_its_operation_budget() -> None:
    # The point of the generated form: fewer Python operations a round. Counted from the
    # source (not timed): the loop body's binary operators (it holds keccak._GROUP rounds).
    body = keccak._permutation_source().split("in _RC_GROUPS:")[1].split("return")[0]
    ops = sum(body.count(op) for op in (" ^ ", " & ", " | ", " >> ", " * "))
    assert ops / keccak._GROUP <= 160, ops  # the plain unrolled round: 242


def test_periodic_lanes_keep_enough_valid_bits_for_a_group_of_rounds() -> None:
    # Each round spends at most 63 + 63 valid bits; the last round of a group still needs 64.
    assert 64 * keccak._COPIES >= 64 + keccak._GROUP * (63 + 63)
    assert 24 % keccak._GROUP == 0 and len(keccak._RC_GROUPS) * keccak._GROUP == 24


@pytest.mark.parametrize(
    "length",
    [0, 1, 31, 32, 33, 64, 92, 134, 135, 136, 137, 200, 2 * RATE - 1, 2 * RATE, 2 * RATE + 1, 3 * RATE + 5, 1000],
)
def test_pure_matches_pycryptodome_at_padding_and_block_boundaries(length: int) -> None:
    data = random.Random(length).randbytes(length)
    assert keccak.keccak256_pure(data) == reference(data)


@pytest.mark.parametrize("seed", range(4))
def test_pure_matches_pycryptodome_on_random_lengths(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(25):
        data = rng.randbytes(rng.randrange(0, 4 * RATE))
        assert keccak.keccak256_pure(data) == reference(data), len(data)


@pytest.mark.parametrize("fill", [0x00, 0xFF])
def test_pure_matches_pycryptodome_on_all_zero_and_all_one_blocks(fill: int) -> None:
    # All-ones lanes are where a complemented or tripled representation would go wrong first.
    for length in (RATE - 1, RATE, 2 * RATE):
        data = bytes([fill]) * length
        assert keccak.keccak256_pure(data) == reference(data), (fill, length)


def test_permutation_of_all_one_lanes_matches_the_table_driven_form() -> None:
    mask = 2**64 - 1
    lanes = [mask] * 25
    expected = list(lanes)
    _table_driven(expected)
    keccak._keccak_f1600(lanes)
    assert lanes == expected


def _table_driven(a: list[int]) -> None:
    """Keccak-f[1600] from the module's own tables, the textbook way (steps in loops)."""
    mask = 2**64 - 1

    def rotl(v: int, r: int) -> int:
        return ((v << r) | (v >> (64 - r))) & mask if r else v

    for rc in keccak._RC:
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ rotl(c[(x + 1) % 5], 1) for x in range(5)]
        b = [0] * 25
        for x in range(5):
            for y in range(5):
                b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(a[x + 5 * y] ^ d[x], keccak._ROT[x + 5 * y])
        for i in range(25):
            row = i - i % 5
            a[i] = b[i] ^ (~b[row + (i + 1) % 5] & b[row + (i + 2) % 5])
        a[0] ^= rc
