# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's reboot: which address a pod gets with --new-pod-ips, and how the restore unit is read."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from lab import reboot
from lab.errors import LabError
from lab.scenario import load_scenario

SEED = Path(__file__).resolve().parents[3] / "lab" / "scenarios" / "seed.yml"


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("10.244.1.94", "10.244.1.101"),  # seven further on
        ("10.244.1.250", "10.244.1.4"),  # wraps, skipping .0 and the gateway .1
    ],
)
def test_new_pod_ip_is_free_and_in_the_node_cidr(current: str, expected: str) -> None:
    scenario = load_scenario(str(SEED))
    chosen = reboot._new_pod_ip(scenario, "k8s-node1", ipaddress.IPv4Address(current))
    assert chosen == expected
    assert chosen not in {str(pod.ip) for pod in scenario.pods}


def test_unknown_host_is_named() -> None:
    scenario = load_scenario(str(SEED))
    with pytest.raises(LabError, match="'k8s-node9' is not a node or VM of this lab"):
        reboot._host(scenario, {}, "k8s-node9")


def test_unit_exec_start_lines_are_read_by_the_collection() -> None:
    unit = "[Unit]\nDescription=x\n[Service]\nType=oneshot\nExecStart=/usr/sbin/ipset -exist -file /p/ipset.restore restore\n" \
           "ExecStart=/usr/sbin/iptables-restore -w 30 --noflush /p/iptables-v4.restore\n[Install]\nWantedBy=multi-user.target\n"
    assert reboot.exec_start_commands(unit) == [
        ["/usr/sbin/ipset", "-exist", "-file", "/p/ipset.restore", "restore"],
        ["/usr/sbin/iptables-restore", "-w", "30", "--noflush", "/p/iptables-v4.restore"],
    ]
