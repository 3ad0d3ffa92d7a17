"""Result types returned to callers."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PlayResult", "ServerHealth"]


@dataclass(frozen=True, slots=True)
class PlayResult:
    """The outcome of a successful ``play``: what the script printed or evaluated to.

    ``url``: the server that ran it, when a manager chose it (``execute_script_any``) or ran
    it (``execute_script``, ``execute_script_all``); None from a bare client. It is left out
    of comparisons: two results are equal when their outputs are, wherever they ran.
    """

    output: str
    url: str | None = field(default=None, compare=False)

    def _repr_html_(self) -> str:  # notebooks: the output, escaped (circle_ws_web.display)
        from .display import result_html; return result_html(self)  # noqa: E702


@dataclass(frozen=True, slots=True)
class ServerHealth:
    """One server as ``WsManager.health()`` sees it, from what the manager measured itself.

    Round trips are over the manager's recent calls to it (a bounded window: the last
    ``samples`` of at most 256), in seconds; None before the first answer.
    """

    url: str
    priority: int
    weight: int
    #: Connections kept to it (``connections=k``) and how many are ready now.
    connections: int
    connected: int
    #: ``"closed"``, ``"open"`` or ``"half-open"`` (a :class:`~circle_ws_web.breaker.BreakerState`).
    breaker: str
    consecutive_failures: int
    #: Seconds until an open breaker lets a probe through (0 otherwise).
    retry_in: float
    in_flight: int
    rtt_p50: float | None
    rtt_p95: float | None
    rtt_p99: float | None
    samples: int
    #: Reconnections of its connections (summed over them).
    reconnects: int
    #: The last failure seen (a lost connection, a failed attempt, a timeout), or None.
    last_error: str | None

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
