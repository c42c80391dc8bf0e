# SPDX-License-Identifier: GPL-3.0-or-later
"""Two audit scenarios built on the seed lab.

- *quarantine*: the wordpress Service gets a second endpoint, a pod on k8s-node2 labelled
  ``quarantine=true`` that still matches the selector, and the policy an absolute
  ``everyone -> quarantined`` deny: haproxy is allowed to the Service, one of its two
  endpoints refuses (issue 13).
- *thirteen filters*: a policy of 13 filters whose graph has chains, a cycle, a filter that is
  its own provider, parallel policies, a deny and NodePort notes: the layout's test bed.
"""

from __future__ import annotations

import copy
from typing import Any

from audit_seed import seed_hostvars, seed_policy

QUARANTINED_POD = "wordpress-6dfdd9f64f-q7x9z.wordpress.pod.lab"
QUARANTINED_ADDRESS = "10.244.2.77"


def quarantine_hostvars(*, local: bool = False) -> dict[str, dict[str, Any]]:
    """The seed plus a quarantined second wordpress endpoint on k8s-node2."""
    hostvars = seed_hostvars()
    pod = copy.deepcopy(hostvars["wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"])
    workload = pod["workload"]
    workload.update(
        name="wordpress-6dfdd9f64f-q7x9z",
        node="k8s-node2",
        addresses=[QUARANTINED_ADDRESS],
        uid="2c543aa7-7ee1-57b0-9c98-8fb6cca9e454",
        container_ids=["containerd://" + "ab" * 32],
    )
    workload["labels"] = dict(workload["labels"], quarantine="true")
    pod.update(ansible_host="172.18.221.12", zt_enforce_host="k8s-node2")
    hostvars[QUARANTINED_POD] = pod
    service = hostvars["wordpress.wordpress.service.lab"]["workload"]
    service["endpoints"].append(
        {
            "addresses": [QUARANTINED_ADDRESS],
            "node": "k8s-node2",
            "pod": "wordpress/wordpress-6dfdd9f64f-q7x9z",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            "ready": True,
        }
    )
    if local:
        service["external_traffic_policy"] = "Local"
    return hostvars


def quarantine_policy() -> dict[str, Any]:
    """The seed policy with ``everyone -> quarantined`` as an absolute deny."""
    policy = seed_policy()
    policy["filters"]["quarantined"] = "label.quarantine = true"
    policy["filters"]["everyone"] = "address = 0.0.0.0/0"
    policy["policies"]["absolute"] = [{"consumer": "everyone", "provider": "quarantined", "ports": ["any"], "action": "deny"}]
    return policy


def thirteen_filter_policy() -> dict[str, Any]:
    """13 filters over the seed (four match nothing), 16 policies."""
    filters = {
        "haproxy": "address = 172.18.221.1",
        "outsider": "address = 172.18.221.99",
        "frontend": "pod_name = wordpress-6dfdd9f64f-d75j2",
        "wordpress": "service_name = wordpress and namespace = wordpress",
        "db": "pod_name contains wordpress-mysql",
        "db-service": "service_name = wordpress-mysql",
        "nodes": "kind = node",
        "master": "name = k8s-master",
        "monitoring": "address = 10.50.0.0/24",
        "backup": "address = 10.60.0.0/24",
        "cache": "label.app = memcached",
        "search": "label.app = elasticsearch",
        "mail": "label.app = postfix",
    }

    def rule(consumer: str, provider: str, *ports: str, action: str = "allow") -> dict[str, Any]:
        return {"consumer": consumer, "provider": provider, "ports": list(ports), "action": action}

    default = [
        rule("haproxy", "wordpress", "tcp/80"),
        rule("haproxy", "wordpress", "tcp/443"),
        rule("outsider", "wordpress", "tcp/80"),
        rule("frontend", "db", "tcp/3306"),
        rule("frontend", "db-service", "tcp/3306"),
        rule("frontend", "cache", "tcp/11211"),
        rule("frontend", "search", "tcp/9200"),
        rule("frontend", "mail", "tcp/25", "tcp/587"),
        rule("monitoring", "nodes", "tcp/9100"),
        rule("monitoring", "db", "tcp/9104"),
        rule("monitoring", "frontend", "tcp/9117"),
        rule("backup", "db", "tcp/3306"),
        rule("nodes", "master", "tcp/6443"),
        rule("master", "nodes", "tcp/10250"),
        rule("search", "search", "tcp/9300"),
        rule("cache", "frontend", "tcp/8080"),
    ]
    absolute = [rule("outsider", "db", "any", action="deny")]
    return {"filters": filters, "policies": {"absolute": absolute, "default": default, "catch_all": "deny"}}
