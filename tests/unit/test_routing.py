"""Server choice (circle_ws_web.routing): priority, health, weight, load. Plain code, so each
rule is a table."""

from __future__ import annotations

from collections import Counter

import pytest

from circle_ws_web.errors import ConfigError
from circle_ws_web.routing import MAX_CONNECTIONS, Candidate, Router, ServerSettings, least_loaded


def cand(key: str, priority: int = 0, weight: int = 1, usable: bool = True, in_flight: int = 0,
         rtt: float | None = None) -> Candidate:
    return Candidate(key, priority, weight, usable, in_flight, rtt)


def firsts(router: Router, candidates: list[Candidate], n: int) -> list[str]:
    return [router.rank(candidates)[0].key for _ in range(n)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"priority": -1}, "priority must be an int >= 0, got -1"),
        ({"priority": 1.5}, "priority must be an int >= 0, got 1.5"),
        ({"weight": 0}, "weight must be an int >= 1, got 0"),
        ({"weight": True}, "weight must be an int >= 1, got True"),
        ({"connections": 0}, f"connections must be an int from 1 to {MAX_CONNECTIONS}, got 0"),
        ({"connections": 256}, f"connections must be an int from 1 to {MAX_CONNECTIONS}, got 256"),
        ({"connections": "2"}, "connections must be an int from 1 to 255, got '2'"),
    ],
)
def test_server_settings_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServerSettings(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_smooth_weighted_round_robin_is_deterministic() -> None:
    router = Router()
    group = [cand("a", weight=3), cand("b", weight=1)]
    assert firsts(router, group, 8) == ["a", "a", "b", "a"] * 2


def test_nginx_example_five_one_one() -> None:
    router = Router()
    group = [cand("a", weight=5), cand("b", weight=1), cand("c", weight=1)]
    assert firsts(router, group, 7) == ["a", "a", "b", "a", "c", "a", "a"]


def test_weights_split_exactly_over_a_cycle() -> None:
    router = Router()
    group = [cand("a", weight=2), cand("b", weight=3), cand("c", weight=5)]
    assert Counter(firsts(router, group, 100)) == {"a": 20, "b": 30, "c": 50}


def test_equal_weights_take_turns() -> None:
    router = Router()
    assert firsts(router, [cand("a"), cand("b"), cand("c")], 6) == ["a", "b", "c", "a", "b", "c"]


def test_lower_priority_number_first_and_fallbacks_after() -> None:
    router = Router()
    order = router.rank([cand("backup", priority=1), cand("main", priority=0), cand("far", priority=2)])
    assert [c.key for c in order] == ["main", "backup", "far"]


def test_a_preferred_server_that_cannot_take_calls_is_passed_over() -> None:
    router = Router()
    order = router.rank([cand("main", usable=False), cand("backup", priority=1)])
    assert [c.key for c in order] == ["backup", "main"]  # main after: it fails at once


def test_weights_only_among_usable_servers_of_the_best_priority() -> None:
    router = Router()
    group = [cand("a", weight=1), cand("b", weight=9, usable=False), cand("c", priority=1, weight=100)]
    assert firsts(router, group, 5) == ["a"] * 5


def test_fallbacks_by_load_per_weight_then_round_trip() -> None:
    router = Router()
    order = router.rank([
        cand("first", weight=100),
        cand("busy", in_flight=4, rtt=0.001),
        cand("slow", in_flight=1, rtt=0.5),
        cand("fast", in_flight=1, rtt=0.01),
        cand("heavy", weight=4, in_flight=4, rtt=0.2),  # 1 per unit of weight
    ])
    assert [c.key for c in order] == ["first", "fast", "heavy", "slow", "busy"]


def test_nothing_usable_still_gives_an_order() -> None:
    router = Router()
    order = router.rank([cand("b", priority=1, usable=False), cand("a", usable=False)])
    assert [c.key for c in order] == ["a", "b"]
    assert router.rank([]) == []


def test_forget_drops_the_score() -> None:
    router = Router()
    group = [cand("a", weight=3), cand("b", weight=1)]
    firsts(router, group, 3)
    router.forget("a")
    router.forget("b")
    assert firsts(router, group, 4) == ["a", "a", "b", "a"]


def test_least_loaded_ties_round_robin_and_skips_connections_not_ready() -> None:
    assert least_loaded([0, 0, 0], [True, True, True], 0) == 0
    assert least_loaded([0, 0, 0], [True, True, True], 2) == 2
    assert least_loaded([2, 1, 1], [True, True, True], 0) == 1
    assert least_loaded([2, 1, 1], [True, True, True], 2) == 2
    assert least_loaded([0, 5], [False, True], 0) == 1
    assert least_loaded([0, 0], [False, False], 0) is None
    picks = []
    cursor = 0
    for _ in range(6):
        slot = least_loaded([0, 0, 0], [True] * 3, cursor)
        assert slot is not None
        picks.append(slot)
        cursor = (slot + 1) % 3
    assert picks == [0, 1, 2, 0, 1, 2]
