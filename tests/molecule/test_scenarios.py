# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles tested the way role users test them: every molecule scenario (molecule/*/molecule.yml) runs as
one test through pytest-ansible's molecule integration (its ``molecule_scenario`` fixture runs
``molecule test -s NAME`` from the repository root), so ``make test`` reports each scenario as a test.

Scenarios: ``default`` (the enforce role, iptables backend chosen by detection), ``nftables`` (the enforce
role with ``enforce_backend: nftables``), ``audit`` (the audit role after enforcement). Each brings the seed
lab up in ``create`` and takes it down in ``destroy``.

pytest-ansible lists the scenarios that git tracks; a new scenario is found once it is committed.
pytest-ansible marks its molecule integration deprecated in favour of ``molecule test --all``; it is still
the one way pytest reports scenarios as tests, so its warning is silenced (pyproject.toml).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from pytest_ansible.molecule import MoleculeScenario

REPO = Path(__file__).resolve().parents[2]


def _imported_roles(scenario: Path, step: str) -> set[str]:
    """Roles a scenario's playbook step runs, through the collection's playbooks it imports."""
    config = yaml.safe_load((scenario / "molecule.yml").read_text())
    path = (scenario / config["ansible"]["playbooks"][step]).resolve()
    roles = set()
    for play in yaml.safe_load(path.read_text()):
        imported = play.get("ansible.builtin.import_playbook")
        target = (path.parent / imported).resolve() if imported else path
        for entry in yaml.safe_load(target.read_text()):
            roles.update(re.sub(r"^zerotrust\.workloads\.", "", role["role"]) for role in entry.get("roles", []))
    return roles


def test_every_role_has_a_scenario_and_nftables_has_its_own() -> None:
    scenarios = sorted(path.parent for path in (REPO / "molecule").glob("*/molecule.yml"))
    converged = {scenario.name: _imported_roles(scenario, "converge") for scenario in scenarios}
    roles = {path.name for path in (REPO / "roles").iterdir() if (path / "tasks" / "main.yml").is_file()}
    assert roles <= set().union(*converged.values()), f"roles without a scenario: {roles - set().union(*converged.values())}"
    assert converged["audit"] == {"audit"} and converged["nftables"] == {"enforce"}
    nftables = yaml.safe_load((REPO / "molecule" / "nftables" / "converge.yml").read_text())
    assert nftables[0]["vars"]["enforce_backend"] == "nftables"


@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="the scenarios build the lab: root only")
def test_molecule_scenario(molecule_scenario: MoleculeScenario, monkeypatch: pytest.MonkeyPatch) -> None:
    # molecule runs ansible-config, ansible-playbook ... by name: this environment's, as `make` puts them first.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    completed = molecule_scenario.test()
    assert completed.returncode == 0, f"molecule test -s {molecule_scenario.name} failed with {completed.returncode} (its output is above)"
