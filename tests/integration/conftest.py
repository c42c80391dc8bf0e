# SPDX-License-Identifier: GPL-3.0-or-later
"""Artefacts several integration modules share, built once per test session.

- ``collection_tarball``: the tarball users get, made by ``scripts/build-collection.sh`` (a staged
  copy of what a fresh clone holds, CHANGELOG.rst rendered by antsibull-changelog, build_ignore
  applied).
- ``user_environment``: a fresh virtual environment holding only ansible-core and the packages that
  the collection's ``requirements.txt`` pulls in, plus an empty HOME: what a user starts from.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Console scripts a user's environment gets from ansible-core (ours are written, not copied: the
# development environment's scripts point at its own interpreter).
ANSIBLE_SCRIPTS = {"ansible": "ansible.cli.adhoc", "ansible-playbook": "ansible.cli.playbook", "ansible-galaxy": "ansible.cli.galaxy",
                   "ansible-inventory": "ansible.cli.inventory", "ansible-doc": "ansible.cli.doc", "ansible-config": "ansible.cli.config"}


@pytest.fixture(scope="session")
def collection_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection tarball, built the way a release builds it."""
    dist = tmp_path_factory.mktemp("zt-dist")
    built = subprocess.run(["bash", str(REPO / "scripts" / "build-collection.sh"), str(dist)], check=False, capture_output=True, text=True,
                           timeout=300, env={**os.environ, "ZT_BIN": str(BIN)})
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = Path(built.stdout.strip().splitlines()[-1])
    assert tarball.is_file() and tarball.parent == dist
    return tarball


def requirement_closure(lines: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions that the requirement lines need, with their dependencies (markers evaluated)."""
    found: dict[str, metadata.Distribution] = {}
    pending = [Requirement(line) for line in lines]
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        if name in found:
            continue
        distribution = metadata.distribution(name)
        assert not requirement.specifier or distribution.version in requirement.specifier, f"{requirement}: {distribution.version}"
        found[name] = distribution
        pending.extend(Requirement(text) for text in distribution.requires or [])
    return found


def _requirement_lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


@pytest.fixture(scope="session")
def user_environment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A new virtual environment (with pip) holding ansible-core and requirements.txt's closure only.

    Nothing is downloaded: the distributions are linked file by file (their RECORD) from this
    environment, so the new one sees exactly those packages and no test tool, lab module or
    collection. HOME is empty: no ~/.ansible, no ~/.kube, no ansible.cfg.
    """
    root = tmp_path_factory.mktemp("zt-user")
    venv, home = root / "venv", root / "home"
    home.mkdir()
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    [site_packages] = (venv / "lib").glob("python3*/site-packages")
    core = re.search(r"^ansible-core==\S+", (REPO / "requirements-dev.txt").read_text(), re.M)
    assert core is not None
    wanted = [core.group(0), *_requirement_lines((REPO / "requirements.txt").read_text())]
    closure = requirement_closure(wanted)
    for distribution in closure.values():
        for file in distribution.files or []:
            source = Path(str(distribution.locate_file(file))).resolve()
            if file.parts[0] == ".." or "__pycache__" in file.parts or not source.is_file():
                continue  # console scripts (written below) and byte code
            target = site_packages / file
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(source)
    for script, module in ANSIBLE_SCRIPTS.items():
        path = venv / "bin" / script
        path.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import main\nsys.exit(main())\n")
        path.chmod(0o755)
    env = {"PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           # Offline: pip may only find what is installed already.
           "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    isolated = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.util as u; print([m for m in "
                               "('ansible', 'kubernetes', 'netaddr', 'jmespath', 'yaml', 'kmock', 'pytest', 'molecule', 'lab') "
                               "if u.find_spec(m)])"], check=True, capture_output=True, text=True, env=env, cwd=home)
    assert isolated.stdout.strip() == "['ansible', 'kubernetes', 'netaddr', 'jmespath', 'yaml']", isolated.stdout
    return {"venv": venv, "home": home, "env": env, "root": root, "distributions": sorted(closure)}
