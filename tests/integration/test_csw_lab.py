# SPDX-License-Identifier: GPL-3.0-or-later
"""A Secure Workload workspace, imported and enforced on the seed lab, gives the seed's truth table (issue 17).

The workspace (tests/unit/plugins/module_utils/_policy/csw/seed-workspace.json) is written from the documented
format with Kubernetes fields, the NodePort service behind the HAProxy VM and a catch-all deny. It is imported with
playbooks/import_csw.yml as an operator would, the policy file it writes is enforced with playbooks/enforce.yml,
and the lab's probe measures every flow against the seed scenario's expectations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.integration import test_enforce
from tests.integration.test_enforce import PLAN_HOSTS, explain, playbook, probe, recap

# The enforce tests' lab fixtures: a fresh seed lab per test body, held against rebuilds, taken down at the end.
seed_lab = test_enforce.seed_lab
run_on_fresh_lab = test_enforce.run_on_fresh_lab

REPO = Path(__file__).resolve().parents[2]
WORKSPACE = REPO / "tests" / "unit" / "plugins" / "module_utils" / "_policy" / "csw" / "seed-workspace.json"

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]


def test_imported_workspace_enforces_the_seed_truth_table(tmp_path: Path, run_on_fresh_lab: Callable[[Callable[[], None]], None]) -> None:
    policy_file = tmp_path / "policy.yml"
    imported = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            str(REPO / "playbooks" / "import_csw.yml"),
            "-e",
            f"csw_workspace_file={WORKSPACE}",
            "-e",
            f"csw_policy_file={policy_file}",
        ],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    scenario = yaml.safe_load((REPO / "lab" / "scenarios" / "seed.yml").read_text())
    assert yaml.safe_load(policy_file.read_text()) == scenario["policy"]

    def body() -> None:
        before = probe("--expect-open")
        assert before["mismatches"] == [], f"the fresh lab is not fully open: {before['mismatches']}"
        enforced = playbook("enforce.yml", extra={"enforce_policy_file": str(policy_file)})
        assert enforced.returncode == 0, explain(enforced)
        assert all(recap(enforced)[host]["changed"] >= 1 for host in PLAN_HOSTS), recap(enforced)
        after = probe("--expect-from-scenario")
        assert after["mismatches"] == [], f"truth table differs from the seed's: {after['mismatches']}"
        allowed = {cell["source"] + " -> " + cell["target"] for cell in after["cells"] if cell["result"] == "."}
        assert {
            "vm:haproxy -> nodeport:wordpress/wordpress:tcp/80",
            "pod:wordpress/wordpress-6dfdd9f64f-d75j2 -> pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4:tcp/3306",
        } <= allowed
        denied = {cell["source"] + " -> " + cell["target"] for cell in after["cells"] if cell["result"] != "."}
        assert "vm:outsider -> nodeport:wordpress/wordpress:tcp/80" in denied, sorted(denied)
        assert after["health_failures"] == [], after["health_failures"]

    run_on_fresh_lab(body)
