"""Counters a client keeps about itself, for status pages and tests."""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Metrics"]


@dataclass(slots=True)
class Metrics:
    """What happened on a client since it was created. ``client.metrics`` returns a copy."""

    #: Calls sent (user calls, keep-alive pings and authentication steps).
    calls: int = 0
    #: Calls answered with a JSON-RPC error, or failed for lost connection / protocol errors.
    errors: int = 0
    #: Calls that got no answer within their timeout.
    timeouts: int = 0
    #: Successful reconnections after a connection was lost.
    reconnects: int = 0
    #: Frames from the server that were not valid JSON-RPC (or oversized / unmatched).
    bad_frames: int = 0
    #: Responses whose id matched no pending call (late answers after a timeout, or junk).
    unknown_ids: int = 0
    #: Notifications received.
    notifications: int = 0
    #: Round trip of the last answered call, in seconds (None before the first).
    last_rtt: float | None = None
    #: Mean round trip of all answered calls, in seconds.
    avg_rtt: float | None = None
    #: Number of answered calls behind ``avg_rtt``.
    rtt_samples: int = 0

    def record_rtt(self, rtt: float) -> None:
        self.last_rtt = rtt
        n = self.rtt_samples + 1
        self.rtt_samples = n
        self.avg_rtt = rtt if n == 1 else self.avg_rtt + (rtt - self.avg_rtt) / n  # type: ignore[operator]

    def snapshot(self) -> "Metrics":
        return replace(self)

    def as_dict(self) -> dict[str, float | int | None]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
