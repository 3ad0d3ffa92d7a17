"""Where a call goes: server choice by priority, health, load and weight. Plain code.

Why a module of its own: the choice is pure arithmetic on a few numbers per server (priority,
weight, whether it can take a call now, calls in flight, recent round trip), and keeping it
away from sockets and asyncio makes every rule testable as a table
(tests/unit/test_routing.py). The manager gathers the numbers; this module only ranks.

The rules, in order:

1. lowest ``priority`` number first (0 before 1): a higher number is a fallback;
2. then health: a server that can take a call now (a connection ready, its breaker closed or
   half-open with no probe out) before one that cannot (reconnecting, breaker open);
3. among the servers that can, of the best priority: smooth weighted round-robin on
   ``weight`` (deterministic: weights 3 and 1 give a, a, b, a, ...), so traffic splits by
   weight;
4. the rest (the fallbacks, tried in this order when the first choice cannot take the call):
   fewest calls in flight per unit of weight, then the shortest recent round trip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from .errors import ConfigError

__all__ = [
    "MAX_CONNECTIONS",
    "Candidate",
    "Router",
    "ServerSettings",
    "least_loaded",
]

#: Most connections one manager keeps to one server: a browser page can hold 255 WebSockets
#: in all, so more than that could never open.
MAX_CONNECTIONS = 255


def _int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"from {low} to {high}"
        raise ConfigError(f"{name} must be an int {span}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How a manager uses one server: ``priority`` (lower first; higher numbers are
    fallbacks), ``weight`` (its share of the calls among servers of equal priority) and
    ``connections`` (authenticated sockets kept to it; calls go to the least loaded)."""

    priority: int = 0
    weight: int = 1
    connections: int = 1

    def __post_init__(self) -> None:
        _int("priority", self.priority, 0)
        _int("weight", self.weight, 1)
        _int("connections", self.connections, 1, MAX_CONNECTIONS)


class Candidate(NamedTuple):
    """What the router knows of one server at the moment of a call."""

    key: str
    priority: int
    weight: int
    #: A connection is ready and the breaker would let a call through.
    usable: bool
    #: Calls in flight on all of its connections.
    in_flight: int
    #: Recent round trip (seconds), None before the first answer.
    rtt: float | None


def _fallback_key(c: Candidate) -> tuple[int, bool, float, float]:
    return (c.priority, not c.usable, c.in_flight / c.weight, math.inf if c.rtt is None else c.rtt)


class Router:
    """Ranks servers for one call. Holds the smooth weighted round-robin state (nginx's
    algorithm: each pick adds every candidate's weight to its score, takes the highest score,
    ties in list order, and takes the total off the winner), so picks are deterministic."""

    __slots__ = ("_score",)

    def __init__(self) -> None:
        self._score: dict[str, int] = {}

    def forget(self, key: str) -> None:
        """A server left: drop its score."""
        self._score.pop(key, None)

    def pick(self, group: Sequence[Candidate]) -> Candidate:
        """One smooth weighted round-robin step over ``group`` (not empty)."""
        score = self._score
        total = 0
        best: Candidate | None = None
        best_score = 0
        for c in group:
            s = score.get(c.key, 0) + c.weight
            score[c.key] = s
            total += c.weight
            if best is None or s > best_score:
                best, best_score = c, s
        assert best is not None, "pick() needs at least one candidate"
        score[best.key] = best_score - total
        return best

    def first(self, candidates: Sequence[Candidate]) -> Candidate | None:
        """The first choice (rules 1-3), advancing the round-robin; None if no candidate can
        take a call now. Cheap: the common case needs nothing more (see :meth:`fallbacks`)."""
        top: int | None = None
        group: list[Candidate] = []
        for c in candidates:
            if c.usable:
                if top is None or c.priority < top:
                    top, group = c.priority, [c]
                elif c.priority == top:
                    group.append(c)
        if not group:
            return None
        return group[0] if len(group) == 1 else self.pick(group)

    @staticmethod
    def fallbacks(candidates: Sequence[Candidate], first: Candidate | None) -> list[Candidate]:
        """Everything but ``first``, in the order to try them (rule 4). A server of better
        priority that cannot take a call now fails at once (refused by its breaker, or not
        connected), so it costs nothing where it stands."""
        return sorted((c for c in candidates if c is not first), key=_fallback_key)

    def rank(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Every candidate, in the order to try them (see the module's rules)."""
        first = self.first(candidates)
        rest = self.fallbacks(candidates, first)
        return rest if first is None else [first, *rest]


def least_loaded(loads: Sequence[int], ready: Sequence[bool], start: int = 0) -> int | None:
    """The index of the ready connection with the fewest calls in flight, ties going to the
    first one at or after ``start`` (a rotating start makes ties round-robin); None if none is
    ready."""
    n = len(loads)
    best: int | None = None
    best_load = 0
    for step in range(n):
        i = (start + step) % n
        if ready[i] and (best is None or loads[i] < best_load):
            best, best_load = i, loads[i]
    return best
