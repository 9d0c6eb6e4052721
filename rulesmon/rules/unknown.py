"""Missing data: a value that is neither true nor false.

A failed probe or a fact that has not appeared yet must not make a condition false (that
would resolve alerts and reset `for:` timers) nor true. `UNKNOWN` absorbs arithmetic and
comparisons; asking for its truth raises `Missing`, which sends evaluation to the three-valued
(Kleene) path.
"""

from __future__ import annotations

from typing import Any


class Missing(Exception):
    """Raised when a decision depends on an unknown value."""


class Unknown:
    """The single unknown value."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "unknown"

    def __bool__(self) -> bool:
        raise Missing

    def __hash__(self) -> int:
        return 0x5EED

    def _absorb(self, *_: Any) -> Unknown:
        return self

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _absorb  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _absorb
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _absorb
    __mod__ = __rmod__ = __pow__ = __rpow__ = _absorb
    __neg__ = __pos__ = __abs__ = _absorb


UNKNOWN = Unknown()
