# SPDX-License-Identifier: GPL-3.0-or-later
"""Callback for benchmarks/bench_enforce.py: when the play starts, how long each task takes, and the bytes per host.

Enabled for the benchmark only (``ANSIBLE_CALLBACK_PLUGINS=benchmarks/callback_plugins``,
``ANSIBLE_CALLBACKS_ENABLED=zt_bench_phases``); writes JSON to ``$ZT_BENCH_PHASES_FILE`` at the
end of the run:

    {"play_start": epoch, "end": epoch,
     "tasks": [{"name", "file", "action", "start", "end"}],
     "args_bytes": {host: bytes of the host's part of the plan, as the plan step wrote it},
     "host_seconds": {task name: {host: seconds from the host's start of the task to its result}}}

A task lasts from its start to the next task's start (the linear strategy runs each task on every
host before the next). The bytes per host come from the outline the plan step returns (its
``hosts``: each host's part as written to the plan's directory, what the allowlist action hands
to that host's module as ``plan_json``); the last complete plan of the run counts. Reading them
there costs the run nothing, where echoing every module's arguments back
(``ANSIBLE_INJECT_INVOCATION``) would add each host's part to each result and slow the run measured.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: zt_bench_phases
type: aggregate
short_description: task timings and per-host argument sizes for bench_enforce.py
description: Records task start and end times and the largest module arguments per host into $ZT_BENCH_PHASES_FILE.
requirements: [enable in ANSIBLE_CALLBACKS_ENABLED]
"""


class CallbackModule(CallbackBase):  # type: ignore[misc] # ansible-core ships no type hints
    """Record timings and argument sizes; write them once the playbook ends."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "zt_bench_phases"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._play_start: float | None = None
        self._tasks: list[dict[str, Any]] = []
        self._args_bytes: dict[str, int] = {}
        self._host_start: dict[tuple[str, str], float] = {}
        self._host_seconds: dict[str, dict[str, float]] = {}

    def _close_task(self, now: float) -> None:
        if self._tasks and self._tasks[-1]["end"] is None:
            self._tasks[-1]["end"] = now

    def v2_playbook_on_play_start(self, play: Any) -> None:
        """The inventory is loaded and the play begins."""
        if self._play_start is None:
            self._play_start = time.time()

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        """A task begins: the previous one ended."""
        now = time.time()
        self._close_task(now)
        path = task.get_path() or ""
        self._tasks.append({"name": task.get_name(), "file": os.path.basename(path.rsplit(":", 1)[0]), "action": task.action,
                            "start": now, "end": None})

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        """Handlers count as tasks."""
        self.v2_playbook_on_task_start(task, False)

    def v2_runner_on_start(self, host: Any, task: Any) -> None:
        """A task starts on one host."""
        self._host_start[(host.get_name(), task._uuid)] = time.time()

    def _record(self, result: Any) -> None:
        host = result._host.get_name()
        started = self._host_start.pop((host, result._task._uuid), None)
        if started is not None:
            self._host_seconds.setdefault(result._task.get_name(), {})[host] = time.time() - started
        outline = result._result.get("hosts")
        if result._task.action.endswith("plan") and isinstance(outline, dict):
            sizes = {name: entry["bytes"] for name, entry in outline.items() if isinstance(entry, dict) and "bytes" in entry}
            if sizes:
                self._args_bytes = sizes

    def v2_runner_on_ok(self, result: Any) -> None:
        """A task finished on a host."""
        self._record(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        """A task failed on a host (its arguments were still handed over)."""
        self._record(result)

    def v2_runner_on_skipped(self, result: Any) -> None:
        """A task was skipped on a host."""
        self._record(result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        """The run is over: write what was recorded."""
        now = time.time()
        self._close_task(now)
        target = os.environ.get("ZT_BENCH_PHASES_FILE")
        if target:
            with open(target, "w", encoding="utf-8") as handle:
                json.dump({"play_start": self._play_start, "end": now, "tasks": self._tasks, "args_bytes": self._args_bytes,
                           "host_seconds": self._host_seconds}, handle)
