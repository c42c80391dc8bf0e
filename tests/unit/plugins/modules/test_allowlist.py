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


def test_documentation_lists_every_argument() -> None:
    import yaml  # noqa: PLC0415  (only this test reads the documentation)

    documented = set(yaml.safe_load(allowlist.DOCUMENTATION)["options"])
    assert documented == {"plan", "ruleset", "pods", "state", "backend", "default_action", "log_denied", "log_rate", "management_addresses",
                          "keep_ssh", "rollback_timeout", "confirm", "netns", "persist", "boot_policy", "persist_dir", "unit_dir", "sets"}
