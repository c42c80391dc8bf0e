# SPDX-License-Identifier: GPL-3.0-or-later
"""The planning step's inputs: tables of request -> effective options, guard outcomes, discovered addresses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.errors import PlanningError
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.inputs import (
    EMPTY_POLICY,
    Request,
    check_findings,
    check_kubernetes_inventory,
    client_address,
    discovered_addresses,
    effective,
    kubernetes_hosts,
    kubernetes_sources,
    load_policy,
    load_yaml,
    run_options,
)

ALL_ON = {"established": True, "loopback": True, "icmpv6_neighbour_discovery": True, "management_ssh": True,
          "node_to_pods": True, "dns": True, "cluster": True}
POLICY = {"filters": {}, "policies": {"default": [], "catch_all": "deny"}}


def with_options(**options: Any) -> dict[str, Any]:
    return {**POLICY, "options": options}


# request, policy, discovered ->
# (implicit switches that differ from all on, management addresses, discover, compile options besides those two)
EFFECTIVE = [
    # Nothing given anywhere: every switch on, the controller's address is to be read from the hosts.
    (Request(), POLICY, None, ({}, [], True, {})),
    # ... and once read, it is the management address.
    (Request(), POLICY, ["192.0.2.7"], ({}, ["192.0.2.7"], True, {})),
    # The policy's own options apply when the request leaves them empty.
    (Request(), with_options(management_addresses=["192.0.2.10"], implicit={"dns": False}, scope="kind = vm"),
     None, ({"dns": False}, ["192.0.2.10"], False, {})),
    # A policy's single address (a string) counts as stated.
    (Request(), with_options(management_addresses="192.0.2.10"), None, ({}, ["192.0.2.10"], False, {})),
    # The request wins; implicit merges switch by switch (the policy's dns stays off, cluster goes off).
    (Request(management_addresses=["192.0.2.99"], implicit={"cluster": False}),
     with_options(management_addresses=["192.0.2.10"], implicit={"dns": False}),
     ["192.0.2.7"], ({"dns": False, "cluster": False}, ["192.0.2.99"], False, {})),
    (Request(implicit={"dns": True}), with_options(implicit={"dns": False}), None, ({}, [], True, {})),
    # Without the management SSH allowance there is nothing to discover.
    (Request(implicit={"management_ssh": False}), POLICY, ["192.0.2.7"], ({"management_ssh": False}, [], False, {})),
    # absent, or a caller that does not want the hosts asked (the audit in observe mode): no discovery.
    (Request(state="absent"), EMPTY_POLICY, None, ({}, [], False, {})),
    (Request(discover_management=False), POLICY, ["192.0.2.7"], ({}, [], False, {})),
    # Compile options: set ones are passed, empty ones are not (the policy's then apply in the compiler).
    (Request(scope="kind = vm", dns_service="", upstream_dns=[], api_access="namespace = x", overlay=["calico-vxlan"],
             management_addresses=["192.0.2.1"]),
     POLICY, None, ({}, ["192.0.2.1"], False, {"scope": "kind = vm", "api_access": "namespace = x", "overlay": ["calico-vxlan"]})),
    (Request(overlay="none", dns_service="kube-system/coredns", upstream_dns=["192.0.2.53"], management_addresses=["192.0.2.1"]),
     POLICY, None, ({}, ["192.0.2.1"], False, {"overlay": "none", "dns_service": "kube-system/coredns", "upstream_dns": ["192.0.2.53"]})),
]


@pytest.mark.parametrize(("request_", "policy", "discovered", "expected"), EFFECTIVE)
def test_effective_options(request_: Request, policy: Any, discovered: Any, expected: tuple[Any, ...]) -> None:
    implicit_changes, management, discover, others = expected
    found = effective(request_, policy, discovered)
    assert found.implicit == {**ALL_ON, **implicit_changes}
    assert (found.management_addresses, found.discover) == (management, discover)
    assert found.compile_options == {"implicit": found.implicit, "management_addresses": management, **others}


def test_run_options_pass_what_is_given_and_derive_ssh() -> None:
    request_ = Request.from_args({"state": "absent", "run": {"backend": "nftables", "persist": None, "log_denied": True}, "policy": {}})
    assert run_options(request_, ["192.0.2.1"], keep_ssh=False) == {
        "state": "absent", "backend": "nftables", "log_denied": True, "management_addresses": ["192.0.2.1"], "keep_ssh": False}
    # A stored request comes back the same.
    assert Request.from_args(request_.to_dict()).to_dict() == request_.to_dict()
    with pytest.raises(PlanningError) as raised:
        Request.from_args({"run": {"backend": "auto", "ruleset": {}, "rollback_timeout": 5}})
    assert str(raised.value) == (
        "run: rollback_timeout, ruleset is not an allowlist option the plan can pass on; "
        "expected backend, default_action, log_denied, persist, boot_policy, persist_dir, unit_dir")


# -- the policy ---------------------------------------------------------------------------------


def test_policy_inline_from_a_file_or_a_scenario(tmp_path: Path) -> None:
    plain, scenario = tmp_path / "policy.yml", tmp_path / "scenario.yml"
    plain.write_text(yaml.safe_dump(POLICY))
    scenario.write_text(yaml.safe_dump({"topology": {}, "policy": POLICY, "expect": {}}))
    assert load_policy(Request(policy=POLICY)) == POLICY
    assert load_policy(Request(policy_file=str(plain))) == POLICY
    assert load_policy(Request(policy_file=str(scenario))) == POLICY
    # absent needs no policy and compiles the empty one.
    assert load_policy(Request(state="absent", policy=POLICY)) == EMPTY_POLICY


@pytest.mark.parametrize(("request_", "message"), [
    (Request(), "Give the policy either inline (policy) or as a file (policy_file), not both and not neither."),
    (Request(policy=POLICY, policy_file="x.yml", variables_prefix="enforce_"),
     "Give the policy either inline (enforce_policy) or as a file (enforce_policy_file), not both and not neither."),
    (Request(policy_file="/nonexistent/zt-policy.yml"),
     "cannot read the policy file /nonexistent/zt-policy.yml: No such file or directory"),
])
def test_policy_errors(request_: Request, message: str) -> None:
    with pytest.raises(PlanningError) as raised:
        load_policy(request_)
    assert str(raised.value) == message


def test_a_policy_file_that_is_not_yaml(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("filters: [unclosed\n")
    with pytest.raises(PlanningError) as raised:
        load_policy(Request(policy_file=str(broken)))
    # The pure-Python loader's wording, which quotes the line and points at the column (libyaml's does not).
    assert str(raised.value) == (
        f"the policy file {broken} is not valid YAML or JSON: while parsing a flow sequence\n"
        f'  in "<unicode string>", line 1, column 10:\n    filters: [unclosed\n             ^\n'
        "expected ',' or ']', but got '<stream end>'\n"
        f'  in "<unicode string>", line 2, column 1:\n    \n    ^'
    )


# text -> what yaml.safe_load makes of it: the fast loader must read every document as the pure-Python one does.
YAML_DOCUMENTS = [
    "filters: {web: 'app = web'}\npolicies: {default: [], catch_all: deny}\n",
    '{"filters": {}, "policies": {"absolute": [], "catch_all": "allow"}}',
    "ports: [80, '443', 0x1F, 1_000, 08]\nflag: yes\nempty:\ndate: 2026-12-03\n",
    "anchors: &a {k: v}\nuse: *a\nmerge: {<<: *a, x: 1}\n",
    "",
]


@pytest.mark.parametrize("text", YAML_DOCUMENTS)
def test_load_yaml_reads_as_safe_load(text: str) -> None:
    assert load_yaml(text) == yaml.safe_load(text)


def test_load_yaml_refuses_python_tags() -> None:
    with pytest.raises(yaml.YAMLError, match=r"could not determine a constructor for the tag 'tag:yaml\.org,2002:python/name:os\.system'"):
        load_yaml("!!python/name:os.system ''\n")


# -- guards ------------------------------------------------------------------------------------

UNMATCHED = {"code": "unmatched_filter",
             "text": "policy default[0] a->b tcp/80: provider filter 'b' matches no workload; the policy has no effect"}
PARTIAL = {"code": "partial_service", "text": "partial_service: service s/s is only partly reachable for vm a."}
OTHER = {"code": "host_network", "text": "pod x/y uses the host network; it is a peer but not an enforcement point (its node is)"}


@pytest.mark.parametrize(("request_", "findings", "message"), [
    (Request(), [OTHER], None),
    (Request(), [OTHER, UNMATCHED],
     "The inventory lacks workloads the policy needs: " + UNMATCHED["text"] + ". Check that every source the policy refers to is "
     "in the inventory (for example the Kubernetes inventory source for filters on pod_name, service_name or namespace) and that "
     "the filters are spelled right; set allow_unmatched_filters=true to enforce such a policy anyway."),
    (Request(allow_unmatched_filters=True), [UNMATCHED], None),
    (Request(state="absent"), [UNMATCHED, PARTIAL], None),
    # The decision is on the code: a warning whose text looks alike but has another code is no reason to refuse.
    (Request(fail_on_partial_services=True), [{"code": "compiler", "text": "matches no workload partial_service"}], None),
    (Request(), [PARTIAL], None),
    (Request(fail_on_partial_services=True, variables_prefix="enforce_"), [PARTIAL, PARTIAL],
     "2 consumer x service pair(s) are only partly reachable and enforce_fail_on_partial_services is true, so no host was "
     "changed: " + PARTIAL["text"] + " " + PARTIAL["text"]),
])
def test_guards_on_codes(request_: Request, findings: list[dict[str, Any]], message: Any) -> None:
    if message is None:
        check_findings(request_, findings)
        return
    with pytest.raises(PlanningError) as raised:
        check_findings(request_, findings)
    assert str(raised.value) == message


def test_kubernetes_sources_are_our_plugin_files(tmp_path: Path) -> None:
    (tmp_path / "cluster.kubernetes.yml").write_text("plugin: zerotrust.workloads.kubernetes\n")
    (tmp_path / "other.k8s.yml").write_text("plugin: kubernetes.core.k8s\n")
    (tmp_path / "hosts.yml").write_text("plugin: zerotrust.workloads.kubernetes\n")  # not a *.kubernetes.yml name
    (tmp_path / "broken.k8s.yaml").write_text("plugin: [\n")
    single = tmp_path / "single.kubernetes.yaml"
    single.write_text("plugin: zerotrust.workloads.kubernetes\n")
    assert kubernetes_sources([str(tmp_path)]) == [str(tmp_path / "cluster.kubernetes.yml"), str(single)]
    assert kubernetes_sources([str(single), str(tmp_path / "missing.kubernetes.yml")]) == [str(single)]


KINDS = {"k8s-node1": "node", "node-ssh": None}


@pytest.mark.parametrize(("sources", "groups", "allow", "message"), [
    ([], {"vms": ["haproxy"]}, False, None),  # no cluster configured
    (["c.kubernetes.yml"], {"k8s_pods": ["p"]}, False, None),  # a pod was read
    (["c.kubernetes.yml"], {"k8s_nodes": ["k8s-node1"]}, False, None),  # a node read from the cluster
    ([], {"k8s_nodes": ["node-ssh"], "k8s_pods": []}, True, None),
    ([], {"k8s_nodes": ["node-ssh"], "k8s_pods": []}, False, "(k8s_nodes)"),  # only an SSH entry; empty groups do not count
    (["c.kubernetes.yml"], {"vms": ["haproxy"]}, False, "(c.kubernetes.yml)"),
])
def test_kubernetes_inventory_check(sources: list[str], groups: dict[str, list[str]], allow: bool, message: Any) -> None:
    request_ = Request(allow_empty_kubernetes=allow, variables_prefix="enforce_")
    hosts = kubernetes_hosts(groups, KINDS.get)
    if message is None:
        check_kubernetes_inventory(request_, sources, groups, hosts)
        return
    with pytest.raises(PlanningError) as raised:
        check_kubernetes_inventory(request_, sources, groups, hosts)
    text = str(raised.value)
    assert text.startswith(f"The inventory configures Kubernetes {message} but holds no Kubernetes host: no pod, no service and no node")
    assert text.endswith("Set enforce_allow_empty_kubernetes=true if the cluster is really empty.")


# -- the controller's address ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("192.0.2.7 51234 192.0.2.1 22", "192.0.2.7"),
    ("2001:db8::7 51234 2001:db8::1 22", "2001:db8::7"),
    ("192.0.2.7", "192.0.2.7"),  # the flows module reports the address alone
    ("", None),
    ("   ", None),
    (None, None),
    ("controller 51234 192.0.2.1 22", None),  # not an address: never becomes a rule
    ("$(reboot) 1 2 3", None),
])
def test_client_address(text: Any, expected: Any) -> None:
    assert client_address(text) == expected


def test_discovered_addresses_from_facts_raw_output_and_flows() -> None:
    raw = {"stdout_lines": ["Welcome to host", "zerotrust-ssh-connection=192.0.2.8 40000 192.0.2.2 22", "bash: complaint"]}
    reports = [
        ("192.0.2.7 51234 192.0.2.1 22", None),  # facts gathered before
        (None, raw),
        (None, {"ssh_client": "192.0.2.7"}),  # the audit's flows result: the same controller again
        (None, {"skipped": True}),  # a host whose facts answered already
        (None, {"stdout_lines": ["zerotrust-ssh-connection="]}),  # no SSH (a local connection)
        (None, {"stdout_lines": ["zerotrust-ssh-connection=not-an-address 1 2 3"]}),
    ]
    assert discovered_addresses(reports) == ["192.0.2.7", "192.0.2.8"]
    assert discovered_addresses([]) == []
