# SPDX-License-Identifier: GPL-3.0-or-later
"""The event source's reconnect backoff (issue 15, item 16).

After a long outage the delay has grown; a watch that then works (delivers events, or lasts past
its first second) and is broken again, whatever breaks it, must start the next outage from
``reconnect_min``, not from the grown delay (measured before: watchers back 22 s after the API
server was ready). A stream that ends at once without anything still backs off.
"""

from __future__ import annotations

import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import ClusterConnection
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ApiCallError

SOURCE = Path(__file__).resolve().parents[6] / "extensions" / "eda" / "plugins" / "event_source" / "kubernetes_workloads.py"
PLUGIN: dict[str, Any] = runpy.run_path(str(SOURCE))
SETTINGS = {**PLUGIN["DEFAULTS"], "reconnect_min": 0.5, "reconnect_max": 30.0}


class Clock:
    """A fake monotonic clock the scripted watches and the backoff waits advance."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Stop:
    """Stands for the watcher's threading.Event: records every wait and stops when the script is done."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []
        self.done = False

    def is_set(self) -> bool:
        return self.done

    def wait(self, seconds: float) -> bool:
        self.waits.append(round(seconds, 3))
        self.clock.now += seconds
        return self.done

    def set(self) -> None:
        self.done = True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    namespace = PLUGIN["Watcher"].run.__globals__
    monkeypatch.setattr(namespace["time"], "monotonic", fake.monotonic)
    monkeypatch.setattr(namespace["random"], "uniform", lambda low, high: 1.0)  # no jitter: exact delays
    yield fake


def scripted(clock: Clock, script: list[tuple[str, float]]) -> Any:
    """A Watcher whose list always works and whose watches follow ``script``: (outcome, seconds it runs)."""
    steps = iter(script)

    class Scripted(PLUGIN["Watcher"]):  # type: ignore[misc]
        def relist(self, reason: str) -> None:
            self.listed, self.resource_version = True, "1"

        def watch(self) -> None:
            try:
                outcome, seconds = next(steps)
            except StopIteration:
                self.stopping.set()
                return
            clock.now += seconds
            if outcome == "events":  # delivered events, then the stream broke (an API server restart)
                self.delivered = True
                raise ApiCallError("lab", "WATCH /api/v1/pods", "connection reset by peer")
            if outcome == "fail":
                raise ApiCallError("lab", "WATCH /api/v1/pods", "connection refused")
            # "end": the stream ended cleanly

    connection = ClusterConnection(name="lab", server="http://127.0.0.1:9")
    watcher = Scripted(connection, api.PODS, SETTINGS, lambda what, payload: None)
    watcher.stopping = Stop(clock)
    return watcher


def test_a_long_healthy_watch_broken_by_a_restart_starts_the_next_outage_from_the_minimum(clock: Clock) -> None:
    watcher = scripted(clock, [("fail", 0.0)] * 6 + [("events", 3600.0)] + [("fail", 0.0)] * 2)
    watcher.run()
    assert watcher.stopping.waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 0.5, 1.0, 2.0]


def test_a_watch_that_delivered_resets_even_when_it_broke_within_its_first_second(clock: Clock) -> None:
    watcher = scripted(clock, [("fail", 0.0)] * 4 + [("events", 0.2)] + [("fail", 0.0)])
    watcher.run()
    assert watcher.stopping.waits == [0.5, 1.0, 2.0, 4.0, 0.5, 1.0]


def test_a_silent_watch_that_lasted_resets_whatever_ended_it(clock: Clock) -> None:
    watcher = scripted(clock, [("fail", 0.0)] * 3 + [("fail", 5.0)] + [("fail", 0.0)])
    watcher.run()
    assert watcher.stopping.waits == [0.5, 1.0, 2.0, 0.5, 1.0]


def test_streams_that_end_at_once_without_events_still_back_off(clock: Clock) -> None:
    watcher = scripted(clock, [("end", 0.0)] * 4)
    watcher.run()
    assert watcher.stopping.waits == [0.5, 1.0, 2.0, 4.0]
