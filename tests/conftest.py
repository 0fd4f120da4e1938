"""Fixtures shared by the tests (more will move here with the redesign)."""

from __future__ import annotations

from typing import Iterator

import pytest

from nonblock import HddQueue


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> Iterator[HddQueue]:
    """A queue of the test's own, named after its module, shut down (drained) after the test."""
    queue = HddQueue(name=request.module.__name__.rpartition(".")[2].removeprefix("test_"))
    yield queue
    queue.shutdown()
