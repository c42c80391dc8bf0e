# SPDX-License-Identifier: GPL-3.0-or-later
"""zerotrust.workloads.from_csw / to_csw and playbooks/import_csw.yml, export_csw.yml (issue 17), run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.zerotrust.workloads.plugins.filter import from_csw as from_csw_plugin
from ansible_collections.zerotrust.workloads.plugins.filter import to_csw as to_csw_plugin

from tests.unit.plugins.module_utils._policy.policy_seed import seed_policy
from tests.unit.plugins.module_utils._policy.test_csw import UNTRANSLATABLE

REPO = Path(__file__).resolve().parents[4]
WORKSPACES = REPO / "tests" / "unit" / "plugins" / "module_utils" / "_policy" / "csw"


def test_filter_modules_register_their_names() -> None:
    assert list(from_csw_plugin.FilterModule().filters()) == ["from_csw"]
    assert list(to_csw_plugin.FilterModule().filters()) == ["to_csw"]


def test_from_csw_takes_a_mapping_or_json_text() -> None:
    text = (WORKSPACES / "seed-workspace.json").read_text()
    assert from_csw_plugin.from_csw(text) == from_csw_plugin.from_csw(json.loads(text)) == seed_policy()


ERRORS = [
    (
        lambda: from_csw_plugin.from_csw("[1]"),
        r"^zerotrust.workloads.from_csw: the workspace has 1 item that cannot be translated, nothing was"
        r" written:\n  - workspace: must be a mapping \(a JSON object\), got a list$",
    ),
    (
        lambda: from_csw_plugin.from_csw({}, widen_icmp="yes"),
        r"^zerotrust.workloads.from_csw: widen_icmp must be true or false, got 'yes'$",
    ),
    (lambda: to_csw_plugin.to_csw(seed_policy(), name=""), r"^zerotrust.workloads.to_csw: name must be non-empty text, got ''$"),
    (
        lambda: to_csw_plugin.to_csw({"filters": {"a": "kind = pod"}, "policies": {}}),
        r"^zerotrust.workloads.to_csw: the policy has 1 item that cannot be translated, nothing was written:\n"
        r"  - filters.a: attribute 'kind' has no Secure Workload equivalent \(in 'kind = pod' at position 0\)$",
    ),
    (
        lambda: to_csw_plugin.to_csw({"filters": {"a": "colour = red"}, "policies": {}}),
        r"^zerotrust.workloads.to_csw: the policy has 1 problem:\n  - filters.a: unknown attribute 'colour'",
    ),
]


@pytest.mark.parametrize(("call", "pattern"), ERRORS)
def test_errors_are_filter_errors(call: object, pattern: str) -> None:
    with pytest.raises(AnsibleFilterError, match=pattern):
        call()  # type: ignore[operator]


def _playbook(name: str, *extra: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCALHOST_WARNING": "false"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), str(REPO / "playbooks" / name), *extra],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_import_playbook_writes_the_policy_file(tmp_path: Path) -> None:
    target = tmp_path / "policy.yml"
    result = _playbook(
        "import_csw.yml", "-e", f"csw_workspace_file={WORKSPACES / 'seed-workspace.json'}", "-e", f"csw_policy_file={target}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert yaml.safe_load(target.read_text()) == seed_policy()
    # again: nothing to change
    again = _playbook("import_csw.yml", "-e", f"csw_workspace_file={WORKSPACES / 'seed-workspace.json'}", "-e", f"csw_policy_file={target}")
    assert "changed=0" in again.stdout, again.stdout


def test_relative_file_names_are_the_callers_directory(tmp_path: Path) -> None:
    # As docs/csw.md runs them: bare names, from the directory that holds the workspace. The files are
    # written there, not beside the playbook (where the copy module alone would put a relative dest).
    (tmp_path / "workspace.json").write_text((WORKSPACES / "seed-workspace.json").read_text())
    before = sorted((REPO / "playbooks").iterdir())
    imported = _playbook("import_csw.yml", "-e", "csw_workspace_file=workspace.json", "-e", "csw_policy_file=policy.yml", cwd=tmp_path)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert yaml.safe_load((tmp_path / "policy.yml").read_text()) == seed_policy()
    exported = _playbook("export_csw.yml", "-e", "csw_policy_file=policy.yml", "-e", "csw_workspace_file=exported.json", cwd=tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert [entry["name"] for entry in json.loads((tmp_path / "exported.json").read_text())["inventory_filters"]] == [
        "db", "frontend", "haproxy", "wordpress"]
    assert sorted((REPO / "playbooks").iterdir()) == before


def test_import_playbook_lists_everything_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "policy.yml"
    target.write_text("# the policy in force\n")
    result = _playbook(
        "import_csw.yml", "-e", f"csw_workspace_file={WORKSPACES / 'untranslatable-workspace.json'}", "-e", f"csw_policy_file={target}"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "the workspace has 14 items that cannot be translated, nothing was written" in result.stdout
    for line in UNTRANSLATABLE:
        assert json.dumps(line)[1:-1] in result.stdout, line
    assert target.read_text() == "# the policy in force\n"


def test_import_playbook_needs_both_files() -> None:
    result = _playbook("import_csw.yml", "-e", "csw_workspace_file=x.json")
    assert result.returncode == 2
    assert "Name the workspace and the policy file: -e csw_workspace_file=workspace.json -e csw_policy_file=policy.yml" in result.stdout


def test_export_then_import_gives_the_policy_back(tmp_path: Path) -> None:
    (tmp_path / "policy.yml").write_text(yaml.safe_dump(seed_policy()))
    exported = _playbook(
        "export_csw.yml",
        "-e",
        f"csw_policy_file={tmp_path / 'policy.yml'}",
        "-e",
        f"csw_workspace_file={tmp_path / 'workspace.json'}",
        "-e",
        "csw_workspace_name=wordpress",
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    document = json.loads((tmp_path / "workspace.json").read_text())
    assert document["name"] == "wordpress"
    assert [entry["name"] for entry in document["inventory_filters"]] == ["db", "frontend", "haproxy", "wordpress"]
    imported = _playbook(
        "import_csw.yml", "-e", f"csw_workspace_file={tmp_path / 'workspace.json'}", "-e", f"csw_policy_file={tmp_path / 'back.yml'}"
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert yaml.safe_load((tmp_path / "back.yml").read_text()) == seed_policy()
