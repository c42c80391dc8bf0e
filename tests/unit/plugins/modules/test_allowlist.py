# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the allowlist module's argument handling (no firewall is touched).

Every case here fails before any namespace is read or written; applying for real is
covered by tests/integration/test_allowlist_iptables.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.zerotrust.workloads.plugins.modules import allowlist

RULESET = {"chains": [{"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": []}]}
SHARING = {
    "chains": [{"name": "ingress", "hook": "input", "default_verdict": "deny",
                "rules": [{"verdict": "accept", "origin": "p", "peer_set": "zt-peers"}]}],
    "address_sets": [{"name": "zt-peers", "shared": True}],
}


def run_main(args: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run main() with ``args`` and return the JSON it printed."""
    with patch_module_args(args), pytest.raises(SystemExit):
        allowlist.main()
    return dict(json.loads(capsys.readouterr().out))


@pytest.mark.parametrize(("args", "message"), [
    ({"ruleset": RULESET, "log_rate": "lots"}, "log_rate 'lots' must look like 5/minute (units: second, minute, hour, day)"),
    ({"ruleset": RULESET, "rollback_timeout": -1}, "rollback_timeout must be 0 (off) or a number of seconds"),
    ({"ruleset": RULESET, "netns": "ztd-surely-not-created"}, "netns 'ztd-surely-not-created' does not exist: create it or fix the name"),
    ({"ruleset": {"chains": [{"name": "in", "hook": "sideways", "default_verdict": "deny"}]}, "netns": "x"},
     "netns 'x' does not exist: create it or fix the name"),
    ({"ruleset": {"chains": [{"name": "in", "hook": "sideways", "default_verdict": "deny"}]}},
     "the host ruleset: chain 'in': hook 'sideways' is not one of input, output, forward, prerouting"),
    ({"pods": [{"host": "p1", "name": "p1", "namespace": "ns", "ips": [], "ruleset": None}]},
     "pod p1: state present needs a ruleset (the compiled plan's ruleset field is null)"),
    ({"confirm": "zzz"}, "confirm token 'zzz' is not a token returned by this module (hex characters)"),
    # Options of the action in front of the module: reaching the module means the action was bypassed.
    ({"skip_unchanged_pods": "enforce_preview", "ruleset": RULESET},
     "plan and skip_unchanged_pods are read on the controller by the allowlist action, which this run bypassed"),
    # Shared sets: checked before anything else (a netns that does not exist is not even looked at).
    ({"ruleset": SHARING, "netns": "ztd-surely-not-created"},
     "the host ruleset: address set 'zt-peers' is shared, but sets has no set of that name "
     "(pass the compiled plan's sets of this host beside its rulesets)"),
    ({"ruleset": RULESET, "pods": [{"host": "p1", "ips": ["10.0.0.1"], "ruleset": SHARING}], "sets": {"zt-other": {"members": []}}},
     "pod p1: address set 'zt-peers' is shared, but sets has no set of that name "
     "(pass the compiled plan's sets of this host beside its rulesets)"),
    ({"ruleset": SHARING, "sets": {"zt-peers": {"members": ["10.0.0.300"]}}},
     "sets: address set 'zt-peers': member '10.0.0.300' is not an IP address or network: "
     "it does not appear to be an IPv4 or IPv6 address"),
    ({"ruleset": SHARING, "sets": {"zt-peers": {"members": ["10.0.0.1"], "size": 1}}},
     "sets: shared address set 'zt-peers' has unknown fields: size (known: comment, members)"),
])
def test_argument_errors(args: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_main(args, capsys)
    assert result["failed"] is True
    assert result["msg"] == message


SHARED_MISSING = ("the host ruleset: address set 'zt-peers' is shared, but sets has no set of that name "
                  "(pass the compiled plan's sets of this host beside its rulesets)")


@pytest.mark.parametrize(("args", "message"), [
    # The part in plan_json is what the module checks and applies: its ruleset, its sets, its pods.
    ({"plan_json": json.dumps({"ruleset": SHARING}), "netns": "ztd-surely-not-created"}, SHARED_MISSING),
    ({"plan_json": json.dumps({"ruleset": SHARING, "sets": {"zt-peers": {"members": ["10.0.0.1"]}}}), "netns": "ztd-surely-not-created"},
     "netns 'ztd-surely-not-created' does not exist: create it or fix the name"),
    ({"plan_json": json.dumps({"ruleset": SHARING}), "sets": {"zt-peers": {"members": ["10.0.0.1"]}}, "netns": "ztd-surely-not-created"},
     "netns 'ztd-surely-not-created' does not exist: create it or fix the name"),
    ({"plan_json": json.dumps({"pods": [{"host": "p1", "ips": [], "ruleset": None}]})},
     "pod p1: state present needs a ruleset (the compiled plan's ruleset field is null)"),
    # What it must look like.
    ({"plan_json": "{'ruleset': {}}"},
     "plan_json is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)): "
     "pass the host's part of the plan as one JSON object"),
    ({"plan_json": "[]"}, "plan_json must be a JSON object with ruleset, pods and sets (the host's part of the plan)"),
    ({"plan_json": json.dumps({"ruleset": RULESET, "rules": []})}, "plan_json has unknown keys: rules (known: ruleset, pods, sets)"),
    ({"plan_json": json.dumps({"pods": [None]})}, "plan_json: pods must be a list of objects, like the option pods"),
    ({"plan_json": json.dumps({"ruleset": []})}, "plan_json: ruleset must be an object (or null), like the option ruleset"),
    ({"plan_json": json.dumps({"sets": []})}, "plan_json: sets must be an object, like the option sets"),
    # Given twice: refused, not silently replaced.
    ({"plan_json": json.dumps({"ruleset": RULESET}), "ruleset": RULESET},
     "ruleset is given both as an option and in plan_json: give it in one place only"),
    ({"plan_json": json.dumps({"pods": []}), "pods": [{"host": "p1", "ips": ["10.0.0.1"], "ruleset": RULESET}]},
     "pods is given both as an option and in plan_json: give it in one place only"),
])
def test_plan_json(args: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_main(args, capsys)
    assert result["failed"] is True
    assert result["msg"] == message


def test_documentation_lists_every_argument() -> None:
    import yaml  # noqa: PLC0415  (only this test reads the documentation)

    documented = set(yaml.safe_load(allowlist.DOCUMENTATION)["options"])
    assert documented == {"plan", "plan_json", "skip_unchanged_pods", "ruleset", "pods", "state", "backend", "default_action",
                          "log_denied", "log_rate", "management_addresses",
                          "keep_ssh", "rollback_timeout", "confirm", "report_changes", "pristine_pods", "netns", "persist", "boot_policy",
                          "persist_dir",
                          "unit_dir", "sets", "read_cache"}
