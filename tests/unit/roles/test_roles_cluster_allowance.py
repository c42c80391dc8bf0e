# SPDX-License-Identifier: GPL-3.0-or-later
"""The enforce and audit roles pass the ``cluster`` allowance's variables to the compiler (real playbook runs, no host touched).

``enforce_upstream_dns``, ``enforce_api_access`` and ``enforce_overlay`` (``audit_*`` alike) win when set; left at
their empty defaults, the policy's own ``options:`` apply; ``enforce_implicit: {cluster: false}`` removes every rule.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.plugins.module_utils._policy.policy_seed import DNS_POD, WORDPRESS_POD, add_control_plane, seed_hostvars, seed_policy

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
HOSTS = ("upstream-dns", "k8s-node1", WORDPRESS_POD, DNS_POD)
TASKS = {"enforce": "compile.yml", "audit": "plan.yml"}


def cluster_origins(tmp_path: Path, role: str, variables: dict[str, Any]) -> dict[str, list[str]]:
    """Run the role's compile step; the ``implicit:cluster`` origins of each host in HOSTS, in chain order."""
    variables = {key.replace("enforce_", f"{role}_", 1): value for key, value in variables.items()}
    plan = f"{role}_plan"
    hostvars = seed_hostvars()
    add_control_plane(hostvars)
    del hostvars["localhost"]
    hosts = {host: {key: value for key, value in found.items() if key != "group_names"} for host, found in hostvars.items()}
    (tmp_path / "seed.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    out = tmp_path / "out.json"
    # The plan step keeps each host's part in a file of its own, which the outline names.
    plan_rulesets = f"{{{{ {plan} | to_json }}}}"
    play = [
        {
            "hosts": "haproxy",
            "gather_facts": False,
            "vars": {f"{role}_management_addresses": ["172.18.221.254"], **variables},
            "tasks": [
                {"ansible.builtin.include_role": {"name": f"zerotrust.workloads.{role}", "tasks_from": TASKS[role]}},
                {"ansible.builtin.copy": {"dest": str(out), "content": plan_rulesets}},
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false"}
    environment["ANSIBLE_NOCOLOR"] = "1"
    argv = [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "seed.yml"), "-c", "local"]
    argv += ["-e", f"ansible_python_interpreter={sys.executable}", str(tmp_path / "play.yml")]
    result = subprocess.run(argv, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outline = json.loads(out.read_text())
    rulesets = {}
    for host, entry in outline["hosts"].items():
        part = json.loads(Path(entry["file"]).read_text())
        rulesets[host] = part["ruleset"]
        rulesets.update({pod["host"]: pod["ruleset"] for pod in part["pods"]})
    shutil.rmtree(outline["path"])
    return {
        host: [
            f"{chain['name']} {rule['origin'].removeprefix('implicit:cluster ')} {rule['protocol']}/{','.join(rule['ports'])}"
            for chain in rulesets[host]["chains"]
            for rule in chain["rules"]
            if rule["origin"].startswith("implicit:cluster")
        ]
        for host in HOSTS
    }


def with_options(options: dict[str, Any]) -> dict[str, Any]:
    policy = seed_policy()
    policy["options"] = options
    return policy


NODE1 = [
    "ingress API server to kubelets tcp/10250",
    "ingress overlay calico-vxlan udp/4789",
    "egress nodes to API server tcp/6443",
    "egress overlay calico-vxlan udp/4789",
]
SET = {
    "upstream-dns": ["ingress DNS pods to upstream DNS udp/53", "ingress DNS pods to upstream DNS tcp/53"],
    "k8s-node1": NODE1,
    WORDPRESS_POD: ["egress pods to API server tcp/443,6443"],
    DNS_POD: [
        "egress DNS pods to API server tcp/443,6443",
        "egress DNS pods to upstream DNS udp/53",
        "egress DNS pods to upstream DNS tcp/53",
    ],
}
OPTIONS = {"upstream_dns": ["172.18.221.53"], "api_access": "namespace = wordpress", "overlay": "calico-vxlan"}


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        # The role variables reach the compiler.
        (
            {
                "enforce_policy": seed_policy(),
                "enforce_upstream_dns": ["172.18.221.53"],
                "enforce_api_access": "namespace = wordpress",
                "enforce_overlay": "calico-vxlan",
            },
            SET,
        ),
        # Left at their defaults, the policy's own options apply.
        ({"enforce_policy": with_options(OPTIONS)}, SET),
        # A set variable wins over the policy's option.
        # (the DNS pod still forwards, now to 192.0.2.53, which is no host here: upstream-dns opens nothing).
        (
            {"enforce_policy": with_options(OPTIONS), "enforce_overlay": ["flannel-vxlan"], "enforce_upstream_dns": ["192.0.2.53"]},
            {**SET, "upstream-dns": [], "k8s-node1": [item.replace("calico-vxlan udp/4789", "flannel-vxlan udp/8472") for item in NODE1]},
        ),
        # Switched off: nothing.
        ({"enforce_policy": with_options(OPTIONS), "enforce_implicit": {"cluster": False}}, {host: [] for host in HOSTS}),
    ],
)
@pytest.mark.parametrize("role", ["enforce", "audit"])
def test_role_variables_reach_the_cluster_allowance(
    tmp_path: Path, role: str, variables: dict[str, Any], expected: dict[str, list[str]]
) -> None:
    assert cluster_origins(tmp_path, role, variables) == expected
