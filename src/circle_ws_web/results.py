"""Result types returned to callers."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PlayResult"]


@dataclass(frozen=True, slots=True)
class PlayResult:
    """The outcome of a successful ``play``: what the script printed or evaluated to."""

    output: str
