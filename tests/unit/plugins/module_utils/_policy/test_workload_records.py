# SPDX-License-Identifier: GPL-3.0-or-later
"""A ``workload`` record parsed once into typed fields: what each record gives, and the exact error for a bad one."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import WorkloadError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import (
    Endpoint,
    NamedPort,
    ServicePort,
    workload_from_record,
    workloads_from_hostvars,
)

from tests.unit.plugins.module_utils._policy.policy_seed import MYSQL_POD, WORDPRESS_SERVICE, seed_hostvars

SEED = seed_hostvars()
SERVICE: dict[str, Any] = SEED[WORDPRESS_SERVICE]["workload"]
POD: dict[str, Any] = SEED[MYSQL_POD]["workload"]


def service(**changes: Any) -> dict[str, Any]:
    """The seed's wordpress service record with ``changes`` (None removes a key)."""
    record = copy.deepcopy(SERVICE)
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def one_port(**fields: Any) -> list[dict[str, Any]]:
    return [{"name": "http", "port": 80, "protocol": "TCP", **fields}]


def endpoint(**fields: Any) -> list[dict[str, Any]]:
    return [{"addresses": ["10.244.1.94"], "node": "k8s-node1", "pod": "wordpress/w", "ready": True, "ports": one_port(), **fields}]


PORT_NUMBER = "must be a port number (1-65535), got"
HTTP = (NamedPort("http", 80, "tcp"),)
W_ADDRESS = ("10.244.1.94",)
WORDPRESS_ENDPOINT = Endpoint(
    addresses=("10.244.1.94",),
    node="k8s-node1",
    pod="wordpress/wordpress-6dfdd9f64f-d75j2",
    ready=True,
    ports=HTTP,
)

# (case, record, field, expected value)
GOOD: list[tuple[str, dict[str, Any], str, Any]] = [
    ("seed service type", service(), "service_type", "NodePort"),
    ("seed service ports", service(), "service_ports", (ServicePort("http", 80, 80, 30358, "tcp"),)),
    ("seed endpoints", service(), "endpoints", (WORDPRESS_ENDPOINT,)),
    ("seed cluster IPs", service(), "cluster_ips", ("172.18.202.253",)),
    ("seed selector", service(), "selector", {"app": "wordpress", "tier": "frontend"}),
    ("seed traffic policy", service(), "external_traffic_policy", "Cluster"),
    ("a service's ports are not container ports", service(), "ports", ()),
    ("no type is ClusterIP", service(type=None), "service_type", "ClusterIP"),
    ("no traffic policy is Cluster", service(external_traffic_policy=None), "external_traffic_policy", "Cluster"),
    ("Local", service(external_traffic_policy="Local"), "local_traffic", True),
    ("a named target port", service(ports=one_port(target_port=" web ")), "service_ports", (ServicePort("http", 80, "web", None, "tcp"),)),
    ("target port digits", service(ports=one_port(target_port="8080")), "service_ports", (ServicePort("http", 80, 8080, None, "tcp"),)),
    ("no target port is the port", service(ports=one_port(target_port=None)), "service_ports", (ServicePort("http", 80, 80, None, "tcp"),)),
    (
        "empty node port and name, no protocol",
        service(ports=[{"name": "", "port": "53", "node_port": ""}]),
        "service_ports",
        (ServicePort(None, 53, 53, None, "tcp"),),
    ),
    ("UDP in lower case", service(ports=one_port(protocol="UDP")), "service_ports", (ServicePort("http", 80, 80, None, "udp"),)),
    (
        "hostnames in LB ingress are ignored, addresses canonical",
        service(load_balancer_ingress=["lb.example.org", "2001:DB8::7", "192.0.2.7", "192.0.2.7"]),
        "load_balancer_ingress",
        ("2001:db8::7", "192.0.2.7"),
    ),
    ("external IPs", service(external_ips=["198.51.100.4"]), "external_ips", ("198.51.100.4",)),
    (
        "health check port",
        service(type="LoadBalancer", external_traffic_policy="Local", health_check_node_port=32001),
        "health_check_port",
        32001,
    ),
    ("health check port only with Local", service(type="LoadBalancer", health_check_node_port=32001), "health_check_port", None),
    ("ready", service(endpoints=endpoint(ready=None)), "endpoints", (Endpoint(W_ADDRESS, "k8s-node1", "wordpress/w", True, HTTP),)),
    ("unready", service(endpoints=endpoint(ready=False)), "endpoints", (Endpoint(W_ADDRESS, "k8s-node1", "wordpress/w", False, HTTP),)),
    (
        "a slice port without a number is left out; addresses canonical, in order",
        service(endpoints=endpoint(addresses=["10.0.0.9", "2001:DB8::1", "10.0.0.9"], ports=[{"name": "all", "port": None}])),
        "endpoints",
        (Endpoint(("10.0.0.9", "2001:db8::1"), "k8s-node1", "wordpress/w", True, ()),),
    ),
    ("endpoint addresses of a service", service(), "endpoint_addresses", ("10.244.1.94",)),
    ("pod container ports", POD, "ports", (NamedPort("mysql", 3306, "tcp"),)),
    ("pod phase", POD, "phase", "Running"),
    ("pod not on the host network", POD, "host_network", False),
    ("pod on the host network", {**POD, "host_network": True}, "host_network", True),
    ("a pod has no service fields", POD, "service_type", None),
]


@pytest.mark.parametrize(("case", "record", "field", "expected"), GOOD, ids=[case[0] for case in GOOD])
def test_record_fields(case: str, record: dict[str, Any], field: str, expected: Any) -> None:
    workload = workload_from_record("h", record, {})
    value = getattr(workload, field)
    assert (value() if callable(value) else value) == expected


# (case, record, the error)
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("port not a number", service(ports=one_port(port="http")), f"host h: workload.ports[0].port {PORT_NUMBER} 'http'"),
    ("port out of range", service(ports=one_port(port=70000)), f"host h: workload.ports[0].port {PORT_NUMBER} 70000"),
    ("port missing", service(ports=[{"name": "http"}]), f"host h: workload.ports[0].port {PORT_NUMBER} None"),
    ("a boolean node port", service(ports=one_port(node_port=True)), f"host h: workload.ports[0].node_port {PORT_NUMBER} True"),
    ("target port zero", service(ports=one_port(target_port=0)), f"host h: workload.ports[0].target_port {PORT_NUMBER} 0"),
    ("protocol not a name", service(ports=one_port(protocol=6)),
     "host h: workload.ports[0].protocol must be a protocol name such as TCP, got 6"),
    ("ports not a list", service(ports={"port": 80}), "host h: workload.ports must be a list of mappings"),
    ("endpoints not a list", service(endpoints="10.0.0.1"), "host h: workload.endpoints must be a list of mappings"),
    (
        "endpoint addresses as text",
        service(endpoints=endpoint(addresses="10.0.0.1")),
        "host h: workload.endpoints[0].addresses must be a list of IP addresses, got text",
    ),
    (
        "endpoint address not an IP",
        service(endpoints=endpoint(addresses=["db.example.org"])),
        "host h: workload.endpoints[0].addresses holds something that is not an IP address: "
        "'db.example.org' does not appear to be an IPv4 or IPv6 address",
    ),
    (
        "endpoint port not a number",
        service(endpoints=endpoint(ports=[{"name": "http", "port": "eighty"}])),
        f"host h: workload.endpoints[0].ports[0].port {PORT_NUMBER} 'eighty'",
    ),
    (
        "traffic policy in the wrong case",
        service(external_traffic_policy="local"),
        "host h: workload.external_traffic_policy must be Cluster or Local, got 'local'",
    ),
    ("type not text", service(type=["NodePort"]), "host h: workload.type must be text such as NodePort, got a list"),
    ("selector not a mapping", service(selector=["app"]), "host h: workload.selector must be a mapping, got a list"),
    (
        "cluster IP not an IP",
        service(cluster_ips=["none"]),
        "host h: workload.cluster_ips holds something that is not an IP address: 'none' does not appear to be an IPv4 or IPv6 address",
    ),
    ("LB ingress as text", service(load_balancer_ingress="192.0.2.7"),
     "host h: workload.load_balancer_ingress must be a list of IP addresses, got text"),
    (
        "health check port not a number",
        service(health_check_node_port="soon"),
        f"host h: workload.health_check_node_port {PORT_NUMBER} 'soon'",
    ),
    ("container port without a number", {**POD, "ports": [{"name": "mysql"}]}, f"host h: workload.ports[0].port {PORT_NUMBER} None"),
    ("container ports not mappings", {**POD, "ports": [3306]}, "host h: workload.ports must be a list of mappings"),
]


@pytest.mark.parametrize(("case", "record", "message"), BAD, ids=[case[0] for case in BAD])
def test_malformed_record_names_host_and_field(case: str, record: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkloadError) as raised:
        workload_from_record("h", record, {})
    assert str(raised.value) == message


def test_a_malformed_service_fails_the_inventory_unless_skipped() -> None:
    hostvars = seed_hostvars()
    hostvars[WORDPRESS_SERVICE]["workload"]["ports"][0]["node_port"] = "30358x"
    message = (
        f"malformed host records: host {WORDPRESS_SERVICE}: workload.ports[0].node_port must be a port number (1-65535), "
        "got '30358x'; fix them, or set zt_skip_malformed: true on a host to leave it out of the policy with a warning"
    )
    with pytest.raises(WorkloadError) as raised:
        workloads_from_hostvars(hostvars)
    assert str(raised.value) == message
    hostvars[WORDPRESS_SERVICE]["zt_skip_malformed"] = True
    workloads, warnings = workloads_from_hostvars(hostvars)
    assert WORDPRESS_SERVICE not in {workload.host for workload in workloads}
    assert warnings == [
        f"host {WORDPRESS_SERVICE}: workload.ports[0].node_port must be a port number (1-65535), got '30358x'; "
        "the host is left out of the policy (zt_skip_malformed)"
    ]


def test_the_raw_record_is_not_kept() -> None:
    workload = workload_from_record("h", service(), {"zt_netns": "/run/netns/x"})
    assert not hasattr(workload, "record")
    assert workload.hostvars == {"zt_netns": "/run/netns/x"}
