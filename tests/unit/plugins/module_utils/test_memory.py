# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""collector_paused: the collector is off inside the block and as it was before after it."""

from __future__ import annotations

import contextlib
import gc

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._memory import collector_paused


@pytest.mark.parametrize("enabled_before", [True, False])
@pytest.mark.parametrize("fails", [False, True])
def test_collector_is_paused_inside_and_restored_after(enabled_before: bool, fails: bool) -> None:
    """Paused inside, restored to what it was after, also when the block raises."""
    seen_inside = []
    (gc.enable if enabled_before else gc.disable)()
    try:
        with contextlib.suppress(RuntimeError), collector_paused():
            seen_inside.append(gc.isenabled())
            if fails:
                raise RuntimeError("the API went away")
        assert (seen_inside, gc.isenabled()) == ([False], enabled_before)
    finally:
        gc.enable()
