# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection as a user gets it: the tarball's contents, and the users' page (docs/README.md) followed
word for word from an empty HOME and a fresh virtual environment.

The quick start runs against the lab: its files are the page's own blocks (``file=PATH``), its commands
the page's ``$`` lines. Two things come from the lab, as they would from a user's site: the kubeconfig
(copied to ``~/.kube/config``, where the page reads it, wherever the lab serves its API) and the SSH
settings (``inventory/group_vars/all.yml``, copied from the lab's inventory).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
USERS_PAGE = REPO / "docs" / "README.md"
LAB_DIR = REPO / ".lab"
SEED = REPO / "lab" / "scenarios" / "seed.yml"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)

# What galaxy.yml's build_ignore keeps out: development tools, the lab, the checkout's own pages.
NOT_SHIPPED = re.compile(r"^(tests|lab|benchmarks|molecule|scripts|collections|\.ci|\.lab|\.venv[^/]*|\.build|\.git|\.collections)(/|$)"
                         r"|(^|/)(__pycache__|\.mypy_cache|\.ruff_cache|\.pytest_cache|\.hypothesis|\.ansible)(/|$)|\.pyc$|\.tar\.gz$"
                         r"|^(README\.md|CONTRIBUTING\.md|Makefile|ansible\.cfg|pyproject\.toml|requirements-dev\.txt|\.ansible-lint|\.gitignore"
                         r"|playbooks/lab\.yml|changelogs/fragments(/.*)?|changelogs/\.plugin-cache\.yaml|docs/contracts\.md)$")
# Words in a shipped page that only make sense in a checkout.
CHECKOUT_WORDS = re.compile(r"\.venv/|\.lab/|`lab/|lab/scenarios|\bmake (demo|test|lab-up|probe|bench)|tests/(integration|unit|docs)|"
                            r"scripts/|\.\./benchmarks|\.\./shared|design\.md|contracts\.md|\.build/")


def _blocks(page: Path) -> list[tuple[dict[str, str], str]]:
    """(attributes of the info string, body) of every fenced block."""
    found = []
    for match in FENCE.finditer(page.read_text()):
        words = match.group("info").split()
        attributes = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        found.append((attributes, match.group("body")))
    return found


def _commands(kind: str, home: Path | None = None) -> list[list[str]]:
    """The page's ``$`` lines of one kind, split as a shell would (``~/`` is HOME)."""
    commands = [shlex.split(line[2:]) for attributes, body in _blocks(USERS_PAGE) if attributes.get("example") == kind
                for line in body.splitlines() if line.startswith("$ ")]
    if home is None:
        return commands
    return [[str(home) + word[1:] if word.startswith("~/") else word for word in argv] for argv in commands]


def _tarball_names(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as archive:
        return archive.getnames()


def _tarball_text(tarball: Path, name: str) -> str:
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(name)
        assert member is not None, name
        return member.read().decode()


# --------------------------------------------------------------------------------------------------
# The tarball


def test_the_tarball_ships_what_users_need_and_nothing_of_the_checkout(collection_tarball: Path) -> None:
    names = _tarball_names(collection_tarball)
    assert [name for name in names if NOT_SHIPPED.search(name)] == []
    for expected in ("LICENSE", "CHANGELOG.rst", "docs/README.md", "docs/inventory.md", "docs/awx-project.md", "meta/runtime.yml",
                     "requirements.txt", "bindep.txt", "meta/execution-environment.yml", "playbooks/enforce.yml", "playbooks/audit.yml",
                     "playbooks/remove.yml", "roles/enforce/meta/argument_specs.yml", "roles/audit/meta/argument_specs.yml",
                     "awx/execution-environment.yml", "awx/requirements.yml", "awx/project/inventory/cluster.kubernetes.yml",
                     "awx/project/inventory/hosts.yml", "awx/project/playbooks/enforce.yml", "awx/project/playbooks/audit.yml",
                     "changelogs/changelog.yaml"):
        assert expected in names, f"{expected} is missing from the tarball"


def test_the_manifest_license_and_changelog(collection_tarball: Path) -> None:
    manifest = json.loads(_tarball_text(collection_tarball, "MANIFEST.json"))["collection_info"]
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert manifest["version"] == galaxy["version"]
    assert manifest["readme"] == "docs/README.md"
    assert manifest["license"] == ["GPL-3.0-or-later"]
    # No placeholder addresses: what does not exist is left out.
    for key in ("repository", "documentation", "homepage", "issues"):
        assert manifest[key] in (None, ""), f"{key}: {manifest[key]}"
    assert "example.invalid" not in json.dumps(manifest)
    license_text = _tarball_text(collection_tarball, "LICENSE")
    assert license_text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007")
    assert "END OF TERMS AND CONDITIONS" in license_text and "How to Apply These Terms to Your New Programs" in license_text
    changelog = _tarball_text(collection_tarball, "CHANGELOG.rst")
    assert changelog.startswith("=================================\nZerotrust.Workloads Release Notes\n")
    assert f"\nv{galaxy['version']}\n" in changelog
    # Every fragment of the checkout is rendered into the release's sections.
    fragments = sorted((REPO / "changelogs" / "fragments").glob("*.yml"))
    for fragment in fragments:
        for section, entries in (yaml.safe_load(fragment.read_text()) or {}).items():
            if section == "trivial":  # not rendered, by design
                continue
            for entry in entries if isinstance(entries, list) else []:
                first_words = " ".join(str(entry).split()[:4])
                assert first_words in " ".join(changelog.split()), f"{fragment.name}: {first_words!r} is not in CHANGELOG.rst"


def test_requires_ansible_matches_the_tested_ansible_core() -> None:
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    tested = re.search(r"^ansible-core==(\d+)\.(\d+)\.(\d+)", (REPO / "requirements-dev.txt").read_text(), re.M)
    assert tested is not None
    specifier = SpecifierSet(runtime["requires_ansible"])
    major, minor, _ = tested.groups()
    assert tested.group(0).split("==")[1] in specifier
    # Nothing older than the tested minor release is claimed.
    assert f"{major}.{int(minor) - 1}.99" not in specifier
    assert runtime["requires_ansible"] == f">={major}.{minor}.0"


def test_the_shipped_pages_speak_to_users(collection_tarball: Path) -> None:
    offending = []
    for name in _tarball_names(collection_tarball):
        if name.endswith(".md") and not name.startswith("roles/"):
            for number, line in enumerate(_tarball_text(collection_tarball, name).splitlines(), 1):
                if CHECKOUT_WORDS.search(line):
                    offending.append(f"{name}:{number}: {line.strip()}")
    assert offending == []


def test_the_users_page_is_the_galaxy_readme_and_the_repository_readme_opens_with_the_two_commands() -> None:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert galaxy["readme"] == "docs/README.md"
    head = (REPO / "README.md").read_text().splitlines()[:40]
    commands = [line.split("#")[0].strip() for line in head if line.startswith("    make ")]
    assert commands[:2] == ["make demo", "make test"]
    assert any("docs/README.md" in line for line in head), "the repository's README must point users to their page"
    install = _commands("install")
    assert install[0] == ["ansible-galaxy", "collection", "install", f"zerotrust-workloads-{galaxy['version']}.tar.gz"]


# --------------------------------------------------------------------------------------------------
# The users' page, followed from an empty HOME against the lab


def _lab(*args: str) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run([sys.executable, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    if args[0] != "probe":
        assert completed.returncode == 0, f"lab {' '.join(args)}:\n{completed.stdout}\n{completed.stderr}"
    return completed


def _probe(*flags: str) -> dict[str, Any]:
    completed = _lab("probe", "--json", "-", *flags)
    document: dict[str, Any] = json.loads(completed.stdout[completed.stdout.index("{\n"):])
    return document


def _connected(table: dict[str, Any]) -> list[str]:
    return sorted(f"{cell['source']} -> {cell['target']}" for cell in table["cells"] if cell["result"] == ".")


@pytest.fixture(scope="module")
def user_project(user_environment: dict[str, Any], collection_tarball: Path) -> dict[str, Any]:
    """The install block run in an empty HOME, and the quick start's directory written from the page."""
    home, env = user_environment["home"], user_environment["env"]
    downloads = user_environment["root"] / "downloads"
    downloads.mkdir()
    shutil.copy(collection_tarball, downloads / collection_tarball.name)
    for argv in _commands("install", home):
        done = subprocess.run(argv, cwd=downloads, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout}\n{done.stderr}"
        if argv[0] == "python3":
            # Offline, pip can only succeed when the fresh environment already satisfies every requirement.
            assert "Successfully installed" not in done.stdout, done.stdout
    installed = home / ".ansible" / "collections" / "ansible_collections" / "zerotrust" / "workloads"
    assert json.loads((installed / "MANIFEST.json").read_text())["collection_info"]["name"] == "workloads"
    project = user_environment["root"] / "zerotrust"
    files = {attributes["file"]: body for attributes, body in _blocks(USERS_PAGE) if "file" in attributes}
    assert set(files) == {"inventory/prod.kubernetes.yml", "inventory/hosts.yml", "policy.yml"}
    for name, body in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(body)
    return {"project": project, "env": env, "home": home}


@pytest.fixture(scope="module")
def seed_lab() -> Iterator[None]:
    """A fresh seed lab, taken down at the end so the machine is left as found."""
    _lab("down")
    _lab("up", "--scenario", str(SEED))
    yield
    _lab("down")


@contextlib.contextmanager
def _lab_held() -> Iterator[None]:
    """Hold the lab's own change lock so nobody rebuilds it under the quick start (as test_enforce does)."""
    from lab.system import lab_lock  # noqa: PLC0415 - the lab only where the lab is used

    with lab_lock(timeout=600):
        yield


@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")
def test_the_quick_start_from_the_tarball_enforces_the_seed_and_audits_it(user_project: dict[str, Any], seed_lab: None) -> None:
    project, env, home = user_project["project"], user_project["env"], user_project["home"]
    with _lab_held():
        # The site's own settings: the cluster's kubeconfig where the page reads it, the SSH account.
        (home / ".kube").mkdir(exist_ok=True)
        shutil.copy(LAB_DIR / "kubeconfig", home / ".kube" / "config")
        (project / "inventory" / "group_vars").mkdir(exist_ok=True)
        ssh = yaml.safe_load((LAB_DIR / "inventory" / "group_vars" / "all.yml").read_text())
        (project / "inventory" / "group_vars" / "all.yml").write_text(yaml.safe_dump({**ssh, "ansible_become": False}))
        expected = sorted(yaml.safe_load(SEED.read_text())["expect"]["allow"])
        assert _probe("--expect-open")["mismatches"] == [], "the fresh lab is not open"
        ran = []
        for argv in _commands("quickstart", home):
            # As from a shell in that directory: PWD is where the audit writes its report by default.
            done = subprocess.run(argv, cwd=project, env={**env, "PWD": str(project)}, capture_output=True, text=True, timeout=900,
                                  check=False)
            assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
            ran.append(argv)
            if argv[0] == "ansible-inventory":
                assert "wordpress-6dfdd9f64f-d75j2.wordpress.pod.prod" in done.stdout and "haproxy" in done.stdout
            elif "--check" in argv:
                # Check mode shows changes and makes none: everything still connects.
                assert re.search(r"changed=[1-9]", done.stdout), done.stdout[-3000:]
                assert _probe("--expect-open")["mismatches"] == []
            elif argv[1:3] == ["-i", "inventory"] and "zerotrust.workloads.enforce" in argv:
                table = _probe("--expect-from-scenario")
                assert table["mismatches"] == []
                # Exactly the lab's expected table (the seed's flows and the implicit ones it measures), which holds the seed's own.
                assert _connected(table) == sorted(cell for cell, result in table["expected"].items() if result == ".")
                assert set(expected) <= set(_connected(table)) and not any(cell.startswith("vm:outsider") for cell in _connected(table))
            elif "zerotrust.workloads.audit" in argv:
                report = json.loads((project / "zt-audit" / "audit.json").read_text())
                assert (project / "zt-audit" / "audit.html").is_file()
                assert report["summary"]["drift"] == 0, report["summary"].get("drift_items")
                assert report["summary"]["not_enforced"] == []
        assert [argv[0] for argv in ran] == ["ansible-inventory", "ansible-playbook", "ansible-playbook", "ansible-playbook"]
