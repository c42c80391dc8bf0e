# SPDX-License-Identifier: GPL-3.0-or-later
"""The event source drops kubectl's last-applied-configuration as the inventory does (issue 15, item 15)."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api, builder

SOURCE = Path(__file__).resolve().parents[6] / "extensions" / "eda" / "plugins" / "event_source" / "kubernetes_workloads.py"
PLUGIN: dict[str, Any] = runpy.run_path(str(SOURCE))
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "labels": {"app": "web"},
                 "annotations": {LAST_APPLIED: '{"v": 1}', "team": "blue"}},
    "spec": {"nodeName": "node1", "containers": []},
    "status": {"phase": "Running", "podIP": "10.0.1.5"},
}


def test_a_reapplied_object_is_no_change_and_its_view_has_no_last_applied() -> None:
    settings = PLUGIN["parse_args"]({})
    annotations = builder.AnnotationFilter(settings["keep_annotations"], settings["drop_annotations"])
    before = PLUGIN["policy_view"](api.PODS, POD, "c1", annotations)
    reapplied = copy.deepcopy(POD)
    reapplied["metadata"]["annotations"][LAST_APPLIED] = '{"v": 2}'
    after = PLUGIN["policy_view"](api.PODS, reapplied, "c1", annotations)
    assert before["annotations"] == {"team": "blue"}
    assert PLUGIN["changed_fields"](before, after) == []


def test_drop_annotations_empty_keeps_everything() -> None:
    settings = PLUGIN["parse_args"]({"drop_annotations": []})
    annotations = builder.AnnotationFilter(settings["keep_annotations"], settings["drop_annotations"])
    assert LAST_APPLIED in PLUGIN["policy_view"](api.PODS, POD, "c1", annotations)["annotations"]


@pytest.mark.parametrize("value", ["team", 5, [1]])
def test_bad_annotation_arguments_are_named(value: Any) -> None:
    with pytest.raises(PLUGIN["EventSourceError"], match="keep_annotations must be a list of annotation keys"):
        PLUGIN["parse_args"]({"keep_annotations": value})
