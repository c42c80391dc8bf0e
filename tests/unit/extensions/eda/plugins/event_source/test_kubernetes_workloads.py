# SPDX-License-Identifier: GPL-3.0-or-later
"""The event source's pure parts: what counts as a change, how bursts coalesce, the event shape."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api

SOURCE = Path(__file__).resolve().parents[6] / "extensions" / "eda" / "plugins" / "event_source" / "kubernetes_workloads.py"
# ansible-rulebook loads the plugin with runpy.run_path: so do the tests.
PLUGIN: dict[str, Any] = runpy.run_path(str(SOURCE))

POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}, "resourceVersion": "10",
                 "annotations": {}},
    "spec": {"nodeName": "node1", "containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}]},
    "status": {"phase": "Running", "podIP": "10.0.1.5", "podIPs": [{"ip": "10.0.1.5"}], "containerStatuses": [{"containerID": "containerd://a"}],
               "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None}]},
}


def _pod(**changes: Any) -> dict[str, Any]:
    pod = copy.deepcopy(POD)
    for path, value in changes.items():
        target = pod
        *parents, last = path.split("__")
        for parent in parents:
            target = target[parent]
        target[last] = value
    return pod


@pytest.mark.parametrize(("changed", "fields"), [
    ({"status__podIP": "10.0.2.7", "status__podIPs": [{"ip": "10.0.2.7"}]}, ["addresses"]),
    ({"status__phase": "Failed"}, ["phase"]),
    ({"metadata__labels": {"app": "web", "tier": "front"}}, ["labels"]),
    ({"metadata__annotations": {"zt/zone": "a"}}, ["annotations"]),
    ({"spec__nodeName": "node2"}, ["node"]),
    ({"spec__containers": [{"name": "c", "ports": [{"containerPort": 8080, "name": "http"}]}]}, ["ports"]),
    ({"status__containerStatuses": [{"containerID": "containerd://b"}]}, ["container_ids"]),
    # What the policy cannot see: no change at all.
    ({"metadata__resourceVersion": "11"}, []),
    ({"status__conditions": [{"type": "Ready", "status": "False"}]}, []),
])
def test_a_pod_change_reports_exactly_the_policy_fields_that_moved(changed: dict[str, Any], fields: list[str]) -> None:
    before = PLUGIN["policy_view"](api.PODS, POD, "c1")
    after = PLUGIN["policy_view"](api.PODS, _pod(**changed), "c1")
    change = PLUGIN["diff_object"]("c1", api.PODS, ("shop", "web-1"), before, after)
    if not fields:
        assert change is None
        return
    assert change.as_dict() == {"kind": "Pod", "namespace": "shop", "name": "web-1", "action": "modified", "fields": fields}
    assert set(change.nodes) == {"node1", "node2"} if "node" in fields else change.nodes == ("node1",)


def test_added_and_deleted_objects_are_reported_with_all_their_fields() -> None:
    view = PLUGIN["policy_view"](api.PODS, POD, "c1")
    added = PLUGIN["diff_object"]("c1", api.PODS, ("shop", "web-1"), None, view)
    deleted = PLUGIN["diff_object"]("c1", api.PODS, ("shop", "web-1"), view, None)
    assert (added.action, deleted.action) == ("added", "deleted")
    assert added.fields == deleted.fields == tuple(sorted(view))


def test_an_endpointslice_change_is_reported_under_its_service_and_the_endpoint_nodes() -> None:
    endpoint_slice = {"metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
                      "endpoints": [{"addresses": ["10.0.1.5"], "nodeName": "node1", "conditions": {"ready": True}}],
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    moved = copy.deepcopy(endpoint_slice)
    moved["endpoints"] = [{"addresses": ["10.0.2.7"], "nodeName": "node2", "conditions": {"ready": True}}]
    change = PLUGIN["diff_object"]("c1", api.ENDPOINT_SLICES, ("shop", "web-abc"),
                                   PLUGIN["policy_view"](api.ENDPOINT_SLICES, endpoint_slice, "c1"),
                                   PLUGIN["policy_view"](api.ENDPOINT_SLICES, moved, "c1"))
    assert change.fields == ("endpoints",)
    assert change.service == "shop/web"
    assert change.nodes == ("node1", "node2")


def test_a_node_heartbeat_is_no_change_but_a_new_address_is() -> None:
    node: dict[str, Any] = {"metadata": {"name": "node1", "labels": {}}, "spec": {"podCIDR": "10.0.1.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}], "conditions": [{"lastHeartbeatTime": "t1"}]}}
    heartbeat = copy.deepcopy(node)
    heartbeat["status"]["conditions"] = [{"lastHeartbeatTime": "t2"}]
    readdressed = copy.deepcopy(node)
    readdressed["status"]["addresses"] = [{"type": "InternalIP", "address": "192.0.2.9"}]
    view = PLUGIN["policy_view"]
    assert PLUGIN["diff_object"]("c1", api.NODES, ("", "node1"), view(api.NODES, node, "c1"), view(api.NODES, heartbeat, "c1")) is None
    change = PLUGIN["diff_object"]("c1", api.NODES, ("", "node1"), view(api.NODES, node, "c1"), view(api.NODES, readdressed, "c1"))
    assert (change.fields, change.nodes, change.namespace) == (("addresses",), ("node1",), None)


def _change(name: str, action: str = "modified", fields: tuple[str, ...] = ("addresses",), nodes: tuple[str, ...] = ("node1",)) -> Any:
    return PLUGIN["Change"]("c1", "Pod", "shop", name, action, fields, nodes)


def test_a_burst_is_due_after_the_quiet_period_and_never_later_than_max_delay() -> None:
    coalescer = PLUGIN["Coalescer"](debounce=1.0, max_delay=5.0)
    assert coalescer.deadline() is None
    coalescer.add(_change("a"), now=100.0)
    assert coalescer.deadline() == 101.0
    for step in range(1, 10):  # a change every 0.5 s keeps the burst open ...
        coalescer.add(_change(f"p{step}"), now=100.0 + step * 0.5)
    assert coalescer.deadline() == 105.0  # ... but not beyond max_delay after the first change
    burst = coalescer.drain()
    assert [change.name for change in burst] == ["a"] + [f"p{step}" for step in range(1, 10)]
    assert coalescer.deadline() is None


def test_repeated_changes_of_one_object_merge_into_one_entry() -> None:
    coalescer = PLUGIN["Coalescer"](debounce=1.0, max_delay=5.0)
    coalescer.add(_change("a", action="added", fields=("addresses",), nodes=("node1",)), now=0.0)
    coalescer.add(_change("a", action="modified", fields=("node",), nodes=("node2",)), now=0.1)
    coalescer.add(_change("b", action="deleted"), now=0.2)
    [first, second] = coalescer.drain()
    assert (first.name, first.action, first.fields, first.nodes) == ("a", "added", ("addresses", "node"), ("node1", "node2"))
    assert (second.name, second.action) == ("b", "deleted")


def test_a_rollout_of_a_hundred_pods_is_one_event_with_its_scope() -> None:
    coalescer = PLUGIN["Coalescer"](debounce=1.0, max_delay=5.0)
    for index in range(100):
        coalescer.add(_change(f"web-{index}", nodes=(f"node{index % 3}",)), now=index * 0.01)
    event = PLUGIN["build_event"]("change", "watch", "c1", coalescer.drain())["zerotrust"]
    assert event["count"] == 100 and len(event["changes"]) == 100
    assert event["scope"] == {"namespaces": ["shop"], "nodes": ["node0", "node1", "node2"],
                              "pods": sorted(f"shop/web-{index}" for index in range(100)), "services": []}


def test_watch_stream_lines_are_split_across_chunk_boundaries() -> None:
    chunks = [b'{"a": 1}\n{"b"', b': 2}\n\n', b'{"c": 3}']
    assert list(PLUGIN["_lines"](iter(chunks))) == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']


@pytest.mark.parametrize(("args", "message"), [
    ({"debounce": "soon"}, "debounce must be a number of seconds, got 'soon'"),
    ({"max_delay": 0}, "max_delay must be positive, got 0"),
    ({"kinds": ["pods", "secrets"]},
     "kinds must be a list of pods, services, endpointslices, nodes, vulnerabilityreports, got ['pods', 'secrets']"),
    ({"kinds": "pods"}, "kinds must be a list of pods, services, endpointslices, nodes, vulnerabilityreports, got 'pods'"),
    ({"debounse": 1}, "unknown arguments ['debounse']"),
])
def test_invalid_arguments_are_refused_with_the_argument_named(args: dict[str, Any], message: str) -> None:
    with pytest.raises(PLUGIN["EventSourceError"]) as raised:
        PLUGIN["parse_args"](args)
    assert message in str(raised.value)


def test_defaults_watch_every_kind() -> None:
    settings = PLUGIN["parse_args"]({})
    assert [kind.name for kind in settings["kinds"]] == ["Pod", "Service", "EndpointSlice", "Node"]
    assert (settings["debounce"], settings["max_delay"], settings["watch_timeout"]) == (1.0, 5.0, 300)
