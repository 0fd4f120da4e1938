"""Old import path: ``from nonblock.BackgroundRead import bgread`` keeps working."""

from nonblock.background_read import BackgroundReadData, bgread  # noqa: F401

__all__ = ["BackgroundReadData", "bgread"]
