# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the orchestration that needs no namespace: targets, backend choice, flavour detection."""

from __future__ import annotations

import os
from typing import Any, Optional

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter import apply
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import BackendUnavailableError, NetfilterError
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.iptables import IptablesLegacyBackend
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import CommandResult, Namespace, Runner

RULESET = {"chains": [{"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": []}]}
SSH = {"SSH_CONNECTION": "192.0.2.50 40000 192.0.2.1 22"}
GONE_POD = {"host": "gone.pod", "name": "gone", "namespace": "x", "ips": ["192.0.2.250"], "netns": "ztd-surely-not-created",
            "ruleset": RULESET}


def describe(targets: list[apply.Target]) -> list[tuple[str, Optional[str], Optional[list[str]], str]]:
    """(label, namespace, origins of the first chain's rules, skip reason) per target."""
    return [
        (target.label, target.namespace.label if target.namespace else None,
         [rule.origin for rule in target.ruleset.chains[0].rules] if target.ruleset else None, target.skip_reason[:27])
        for target in targets
    ]


@pytest.mark.parametrize(("ruleset", "pods", "options", "environ", "expected"), [
    (RULESET, [], apply.RunOptions(), SSH, [("host", "host", ["implicit:never-lock-out"], "")]),
    (RULESET, [], apply.RunOptions(keep_ssh=False), SSH, [("host", "host", [], "")]),
    (RULESET, [], apply.RunOptions(management_addresses=("10.0.0.0/8",)), {}, [("host", "host", ["implicit:never-lock-out"], "")]),
    (RULESET, [], apply.RunOptions(), {}, [("host", "host", [], "")]),
    (None, [], apply.RunOptions(state="absent"), {}, [("host", "host", None, "")]),
    (None, [], apply.RunOptions(), SSH, []),
    (None, [GONE_POD], apply.RunOptions(), SSH, [("gone.pod", None, [], "network namespace not found")]),
    (None, [GONE_POD], apply.RunOptions(state="absent"), SSH, [("gone.pod", None, None, "network namespace not found")]),
])
def test_build_targets(ruleset: Optional[dict[str, Any]], pods: list[dict[str, Any]], options: apply.RunOptions,
                       environ: dict[str, str], expected: list[Any]) -> None:
    assert describe(apply.build_targets(ruleset, pods, options, environ)) == expected


def test_management_set_holds_configured_and_ssh_addresses() -> None:
    targets = apply.build_targets(RULESET, [], apply.RunOptions(management_addresses=("10.0.0.0/8",)), SSH)
    assert targets[0].ruleset is not None
    assert targets[0].ruleset.address_set("zt-mgmt").members == ("10.0.0.0/8", "192.0.2.50")


def test_pods_never_get_the_management_rule() -> None:
    pod = {**GONE_POD, "netns": None, "ips": []}
    targets = apply.build_targets(None, [pod], apply.RunOptions(), SSH)
    assert targets[0].ruleset is not None and targets[0].ruleset.chains[0].rules == ()


def test_unknown_host_netns_is_an_error() -> None:
    with pytest.raises(NetfilterError, match="netns 'ztd-surely-not-created' does not exist: create it or fix the name"):
        apply.build_targets(RULESET, [], apply.RunOptions(host_netns="ztd-surely-not-created"), {})


def test_backend_class() -> None:
    assert apply.backend_class("iptables-legacy") is IptablesLegacyBackend
    assert apply.backend_class("nftables").name == "nftables"
    with pytest.raises(BackendUnavailableError, match="backend 'pf' is not one of auto, iptables"):
        apply.backend_class("pf")


class SaveRunner(Runner):
    """Returns canned output per command (what the host's tools would print)."""

    def __init__(self, outputs: dict[str, str]) -> None:
        super().__init__(Namespace())
        self.outputs = outputs

    def run(self, argv: Any, stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        return CommandResult(tuple(argv), 0, self.outputs.get(argv[0], ""), "")


KUBE = "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"


@pytest.mark.parametrize(("outputs", "expected"), [
    ({"iptables-legacy-save": KUBE}, "iptables-legacy"),
    ({"iptables-nft-save": KUBE}, "iptables-nft"),
    ({"iptables-legacy-save": KUBE, "iptables-nft-save": KUBE}, "iptables-nft"),
    ({"nft": "table ip filter\ntable ip kube-proxy\n"}, "nftables"),
])
def test_detect_follows_kube_proxy(outputs: dict[str, str], expected: str) -> None:
    assert apply.detect_backend(SaveRunner(outputs)) == expected


@pytest.mark.skipif(os.path.realpath("/usr/sbin/iptables") != "/usr/sbin/xtables-nft-multi",
                    reason="the host's iptables alternative is not the nft flavour")
def test_detect_falls_back_to_the_default_alternative() -> None:
    assert apply.detect_backend(SaveRunner({"iptables-legacy-save": "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"})) == "iptables-nft"
