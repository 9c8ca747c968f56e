"""Shared fixtures: suite files written to a temporary folder, the shared reference data."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: ../shared beside the checkout (present in CI, absent in a user's clone).
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[[str, str], Path]:
    """Return a function writing dedented YAML text to ``tmp_path/<name>.yaml`` and returning its path."""

    def write(text: str, name: str = "suite") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
