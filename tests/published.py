"""A published (or reference) number a zoo model is checked against, shared by the zoo tests."""

from __future__ import annotations

from typing import NamedTuple


class Published(NamedTuple):
    """One published number a model is checked against."""

    name: str
    quantity: str  # a key of the test file's MEASURES
    value: float
    tol: float  # relative
    source: str
    resolution: int = 224
