"""Fixtures shared by the tests."""

from __future__ import annotations

import logging
from typing import Iterator

import pytest

from nonblock import HddQueue


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> Iterator[HddQueue]:
    """A queue of the test's own, named after its module, shut down (drained) after the test."""
    queue = HddQueue(name=request.module.__name__.rpartition(".")[2].removeprefix("test_"))
    yield queue
    queue.shutdown()


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger of the test's own, not propagating, its handlers closed and removed afterwards."""
    log = logging.getLogger(f"nonblock-tests.{request.node.nodeid}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        if type(handler).__module__.startswith("nonblock."):  # pytest's capture handlers are its own
            handler.close()
            log.removeHandler(handler)
