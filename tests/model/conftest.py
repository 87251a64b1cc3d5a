"""Fixtures of the model tests: one thread (the CPU is shared; random tiny models are in helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this folder runs on one thread (fixture in tests/conftest.py)."""
