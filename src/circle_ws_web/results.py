"""Result types returned to callers."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PlayResult"]


@dataclass(frozen=True, slots=True)
class PlayResult:
    """The outcome of a successful ``play``: what the script printed or evaluated to."""

    output: str

    def _repr_html_(self) -> str:  # notebooks: the output, escaped (circle_ws_web.display)
        from .display import result_html; return result_html(self)  # noqa: E702
