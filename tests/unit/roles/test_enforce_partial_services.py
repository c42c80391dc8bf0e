# SPDX-License-Identifier: GPL-3.0-or-later
"""The enforce role and partly reachable services (issue 13), through a real ansible-playbook run of its
compile step (no host is touched): the warning is shown; ``enforce_fail_on_partial_services`` stops the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.plugins.module_utils._policy.policy_seed import seed_hostvars, seed_policy
from tests.unit.plugins.module_utils._policy.test_partial_services import quarantine_policy, with_second_endpoint
from tests.unit.roles.test_enforce_role_inputs import compile_facts

WARNING = "partial_service: service wordpress/wordpress is only partly reachable for vm haproxy"
STOPPED = "enforce_fail_on_partial_services is true, so no host was changed"


def inventory(directory: Path, *, quarantined: bool) -> Path:
    hostvars = with_second_endpoint(seed_hostvars(), quarantined=quarantined)
    hosts = {host: {key: value for key, value in variables.items() if key != "group_names"}
             for host, variables in hostvars.items() if host != "localhost"}
    path = directory / "partial.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return path


@pytest.mark.parametrize(("policy", "quarantined", "fail", "outcome"), [
    # outcome: (the run stops, the warning is shown)
    (quarantine_policy(), True, True, (True, True)),
    (quarantine_policy(), True, False, (False, True)),  # shown, enforcement goes on
    (quarantine_policy(), False, True, (False, False)),  # nothing partial: nothing to stop for
    (seed_policy(), True, True, (False, False)),
])
def test_fail_on_partial_services(
    tmp_path: Path, policy: dict[str, Any], quarantined: bool, fail: bool, outcome: tuple[bool, bool]
) -> None:
    stops, warns = outcome
    variables = {"enforce_policy": policy, "enforce_fail_on_partial_services": fail, "enforce_management_addresses": ["192.0.2.10"],
                 "enforce_allow_unmatched_filters": True}  # unquarantined, the quarantine filter matches nobody
    result = compile_facts(tmp_path, inventory(tmp_path, quarantined=quarantined), variables)
    flat = " ".join(result.stdout.split())
    assert (result.returncode != 0) == stops, result.stdout[-3000:] + result.stderr[-2000:]
    assert (STOPPED in flat) == stops
    assert (WARNING in flat) == warns
    assert (tmp_path / "out.json").exists() != stops
