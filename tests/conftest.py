"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from casceq import tasks
from casceq.io import records


@pytest.fixture
def clean_task_registry() -> Iterator[None]:
    """Each test starts and ends with only the tasks registered before it (a tasks file registers globally)."""
    saved_user, saved_by = dict(tasks._USER), dict(tasks._BY_NAME)
    records.load_task.cache_clear()
    yield
    tasks._USER.clear()
    tasks._USER.update(saved_user)
    tasks._BY_NAME.clear()
    tasks._BY_NAME.update(saved_by)
    records.load_task.cache_clear()
