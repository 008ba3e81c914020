"""Progress of long stages (load, universe regroup, reports), for whoever shows it.

The domain reports `(stage, done, total, unit)` through `stage_progress`; a front end (the CLI)
listens with `listen`. Without a listener, reporting costs a function call. Plain Python, no
Dagster: a listener sees the steps that run in its own process (the in-process executor).
"""

from __future__ import annotations

from typing import Callable

Listener = Callable[[str, int, int, str], None]
_LISTENERS: list[Listener] = []


def listen(listener: Listener) -> Callable[[], None]:
    """Register `listener(stage, done, total, unit)`; returns the function that unregisters it."""
    _LISTENERS.append(listener)
    return lambda: _LISTENERS.remove(listener) if listener in _LISTENERS else None


def stage_progress(stage: str, unit: str) -> Callable[[int, int], None]:
    """A `progress(done, total)` callback for one stage, passed to the domain functions."""

    def progress(done: int, total: int) -> None:
        for listener in list(_LISTENERS):
            listener(stage, int(done), int(total), unit)

    return progress
