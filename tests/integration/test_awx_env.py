# SPDX-License-Identifier: GPL-3.0-or-later
"""AWX / Automation Controller: the objects in awx/, the execution environment, and the inventory
plugin run exactly as an AWX inventory update runs it.

AWX's "OpenShift or Kubernetes API Bearer Token" credential injects (awx/main/models/credential/
injectors.py, ``kubernetes_bearer_token``)::

    K8S_AUTH_HOST     = host
    K8S_AUTH_API_KEY  = bearer_token
    if verify_ssl and ssl_ca_cert given:  K8S_AUTH_VERIFY_SSL = "True", K8S_AUTH_SSL_CA_CERT = <0600 temp file>
    else:                                 K8S_AUTH_VERIFY_SSL = "False"        # the quirk: no CA => no verification

The inventory update is ``ansible-inventory -i <project>/<source_path> --list --export`` inside the
execution environment, where the collection is installed from its tarball. These tests do the same:
build and install the tarball into a scratch collections path, serve the seed's objects from the
lab's emulated API (HTTPS on loopback), and run ansible-inventory with nothing but those variables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_builder._target_scripts.introspect import EXCLUDE_REQUIREMENTS
from dateutil.rrule import rrulestr

from lab.kubeapi import KubeApiServer, make_tls_material, start_server
from lab.objects import scenario_objects
from lab.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AWX = REPO / "awx"
SEED_POD_HOST = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.prod"

# The awx.awx collection (24.6.1, from the `ansible` 10.7.0 wheel) that `make awx-collection` (scripts/awx_collection.py)
# extracts; its modules' documented options are what awx/controller.yml is checked against.
AWX_COLLECTIONS = REPO / ".cache" / "awx-collection"
# Option -> the kind of object it names.
REFERENCES = (("execution_environment", "awx.awx.execution_environment"), ("default_environment", "awx.awx.execution_environment"),
              ("inventory", "awx.awx.inventory"), ("project", "awx.awx.project"), ("source_project", "awx.awx.project"),
              ("credential", "awx.awx.credential"), ("unified_job_template", "awx.awx.job_template"))
BUILTIN_KUBERNETES_CREDENTIAL = "OpenShift or Kubernetes API Bearer Token"
KUBERNETES_CREDENTIAL_INPUTS = {"host", "bearer_token", "verify_ssl", "ssl_ca_cert"}


# --------------------------------------------------------------------------------------------------
# The AWX objects


def _controller_tasks() -> list[dict[str, Any]]:
    plays = yaml.safe_load((AWX / "controller.yml").read_text())
    assert isinstance(plays, list) and len(plays) == 1
    return list(plays[0]["tasks"])


def _controller_vars() -> dict[str, Any]:
    data = yaml.safe_load((AWX / "controller-vars.yml").read_text())
    assert isinstance(data, dict)
    return data


def _render(value: Any, variables: dict[str, Any]) -> Any:
    """Substitute ``{{ var }}`` references from controller-vars.yml (the only templating the file uses besides lookups)."""
    if isinstance(value, str):
        return re.sub(r"\{\{\s*(zt_\w+)\s*\}\}", lambda match: str(variables.get(match.group(1), match.group(0))), value)
    if isinstance(value, list):
        return [_render(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: _render(item, variables) for key, item in value.items()}
    return value


def _objects() -> list[tuple[str, dict[str, Any]]]:
    variables = _controller_vars()
    found = []
    for task in _controller_tasks():
        modules = [key for key in task if key.startswith("awx.awx.")]
        assert len(modules) == 1, f"task {task.get('name')!r} must call exactly one awx.awx module"
        found.append((modules[0], _render(task[modules[0]], variables)))
    return found


def _awx_module_options(modules: set[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Each module's options as ``ansible-doc`` shows them from the awx.awx collection (its modules' DOCUMENTATION).

    They match each module's argument_spec (awx.awx's own sanity tests hold them together) and add the
    controller_* connection options every awx.awx module takes. A module awx.awx does not have is left out.
    """
    manifest = AWX_COLLECTIONS / "ansible_collections" / "awx" / "awx" / "MANIFEST.json"
    assert manifest.is_file(), f"no awx.awx collection in {AWX_COLLECTIONS}: run `make awx-collection` (`make integration` runs it)"
    assert json.loads(manifest.read_text())["collection_info"]["version"] == "24.6.1"
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": f"{AWX_COLLECTIONS}:{REPO / '.collections'}",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    shown = subprocess.run([str(BIN / "ansible-doc"), "--json", "-t", "module", *sorted(modules)], check=False, capture_output=True,
                           text=True, env=env, cwd=REPO, timeout=120)
    assert shown.returncode == 0, shown.stderr
    return {module: data["doc"]["options"] for module, data in json.loads(shown.stdout).items()}


def test_every_awx_object_uses_only_options_the_module_has() -> None:
    referenced = set(re.findall(r"\b(zt_\w+)\b", (AWX / "controller.yml").read_text()))
    # Everything else has a default in controller-vars.yml; these four are the -e the header documents.
    # Everything a site alone knows has no default: where its image and its project live, its secrets.
    assert referenced - set(_controller_vars()) == {"zt_cluster_api", "zt_cluster_token_file", "zt_cluster_ca_file", "zt_ssh_key_file",
                                                   "zt_ee_image", "zt_project_url"}
    objects = _objects()
    used = {module for module, _ in objects}
    specs = _awx_module_options(used)
    # An option outside a module's options, a value outside its choices or of the wrong type would make the module
    # fail on a real controller; a module awx.awx lacks would fail before that.
    assert set(specs) == used, f"awx.awx has no module {sorted(used - set(specs))}"
    types = {"str": str, "bool": bool, "int": int, "list": list, "dict": dict}
    for module, options in objects:
        spec = specs[module]
        names = {alias: name for name, entry in spec.items() for alias in [name, *entry.get("aliases", [])]}
        unknown = set(options) - set(names)
        assert not unknown, f"{module} {options.get('name')!r}: unknown options {sorted(unknown)}"
        for key, value in options.items():
            entry = spec[names[key]]
            templated = isinstance(value, str) and "{{" in value
            kind = entry.get("type", "str")  # an option documented without a type is a string, as in an argument_spec
            if not templated and kind in types:
                assert isinstance(value, types[kind]), f"{module} {key}: {value!r} is not a {kind}"
            if "choices" in entry and not templated:
                assert value in entry["choices"], f"{module} {key}: {value!r} is not one of {entry['choices']}"
        missing = {name for name, entry in spec.items() if entry.get("required")} - {names[key] for key in options}
        assert not missing, f"{module} {options.get('name')!r}: required options {sorted(missing)} are not given"


def test_awx_objects_reference_each_other_and_files_that_exist() -> None:
    objects = _objects()
    names = {(module, options["name"]) for module, options in objects}
    variables = _controller_vars()
    for module, options in objects:
        for key, target in REFERENCES:
            if key in options:
                assert (target, options[key]) in names, f"{module} {options['name']!r}: {key} {options[key]!r} is not created here"
        for credential in options.get("credentials", []):
            assert ("awx.awx.credential", credential) in names
    # The project's files: every inventory source file and playbook is in the project template users copy.
    sources = {options["source_path"]: options for module, options in objects if module == "awx.awx.inventory_source"}
    assert set(sources) == {"inventory/cluster.kubernetes.yml", "inventory/hosts.yml"}
    for path, source in sources.items():
        assert source["source"] == "scm" and (AWX / "project" / path).is_file()
    assert sources["inventory/cluster.kubernetes.yml"]["credential"] == variables["zt_cluster_credential"]
    assert "credential" not in sources["inventory/hosts.yml"]
    # AWX passes an SCM source's source_vars to ansible-inventory as environment: a source that fails (the API down,
    # 401/403) fails the update instead of syncing an inventory without the cluster (issue 15, item 13).
    for path, source in sources.items():
        assert source.get("source_vars", {}).get("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED") == "True", path
    playbooks = {options["playbook"] for module, options in objects if module == "awx.awx.job_template"}
    assert playbooks == {"playbooks/enforce.yml", "playbooks/audit.yml"}
    for playbook in playbooks:
        [play] = yaml.safe_load((AWX / "project" / playbook).read_text())
        assert play["ansible.builtin.import_playbook"] == "zerotrust.workloads." + Path(playbook).stem
        assert (REPO / playbook).is_file(), f"the collection has no {playbook} to import"


def test_the_cluster_credential_is_the_builtin_bearer_token_type_with_verification() -> None:
    credentials = {options["name"]: options for module, options in _objects() if module == "awx.awx.credential"}
    cluster = credentials[_controller_vars()["zt_cluster_credential"]]
    assert cluster["credential_type"] == BUILTIN_KUBERNETES_CREDENTIAL
    assert set(cluster["inputs"]) == KUBERNETES_CREDENTIAL_INPUTS
    # verify_ssl without ssl_ca_cert turns verification off in AWX's injector: both must be set.
    assert cluster["inputs"]["verify_ssl"] is True
    assert "lookup(" in cluster["inputs"]["ssl_ca_cert"]
    assert "lookup(" in cluster["inputs"]["bearer_token"], "the token must come from a file, never be written in the project"


def test_enforce_runs_and_audit_only_checks_and_both_are_scheduled() -> None:
    templates = {options["name"]: options for module, options in _objects() if module == "awx.awx.job_template"}
    variables = _controller_vars()
    enforce, audit = templates[variables["zt_enforce_template"]], templates[variables["zt_audit_template"]]
    assert (enforce["job_type"], audit["job_type"]) == ("run", "check")
    assert enforce["diff_mode"] and audit["diff_mode"]
    schedules = {options["unified_job_template"]: options for module, options in _objects() if module == "awx.awx.schedule"}
    assert set(schedules) == {enforce["name"], audit["name"]}
    every = rrulestr(schedules[enforce["name"]]["rrule"].replace(" RRULE:", "\nRRULE:"))
    first, second = every[0], every[1]
    assert (second - first).total_seconds() == 60 * variables["zt_enforce_every_minutes"]
    daily = rrulestr(schedules[audit["name"]]["rrule"].replace(" RRULE:", "\nRRULE:"))
    assert (daily[1] - daily[0]).total_seconds() == 86400


# --------------------------------------------------------------------------------------------------
# The built collection, the execution environment



@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, collection_tarball: Path) -> dict[str, Path]:
    """The collection tarball (the session's build, tests/integration/conftest.py) installed offline into a scratch collections path."""
    root = tmp_path_factory.mktemp("zto-collection")
    collections = root / "collections"
    (root / "ansible.cfg").write_text("[defaults]\n")  # no settings: not the repository's collections_path
    env = {**os.environ, "ANSIBLE_CONFIG": str(root / "ansible.cfg")}
    installed = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(collection_tarball), "--offline", "--force",
                                "--collections-path", str(collections)], check=False, capture_output=True, text=True, cwd=root, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return {"tarball": collection_tarball, "collections": collections, "root": root, "config": root / "ansible.cfg"}


def _requirement_names(lines: list[str]) -> list[str]:
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def test_introspect_lists_exactly_the_collections_python_and_system_dependencies(built: dict[str, Path]) -> None:
    result = subprocess.run([str(BIN / "ansible-builder"), "introspect", "--sanitize", str(built["collections"])],
                            check=True, capture_output=True, text=True)
    data = yaml.safe_load(result.stdout)
    listed_python = [entry.split("#")[0].strip() for entry in data["python"]]
    listed_system = [entry.split("#")[0].strip() for entry in data["system"]]
    assert all(entry.endswith("# from collection zerotrust.workloads") for entry in data["python"] + data["system"])
    declared_python = _requirement_names((REPO / "requirements.txt").read_text().splitlines())
    # ansible-builder leaves out what every EE already has (PyYAML comes with ansible-core).
    expected_python = [line for line in declared_python if re.split(r"[<>=!~ \[]", line)[0].lower() not in EXCLUDE_REQUIREMENTS]
    assert listed_python == expected_python
    assert listed_system == _requirement_names((REPO / "bindep.txt").read_text().splitlines())
    assert {"kubernetes", "netaddr", "jmespath"} <= {re.split(r"[<>=!~ ]", line)[0] for line in listed_python}
    # The execution environment runs the controller side only: the SSH client, no firewall tool.
    assert {line.split()[0] for line in listed_system} == {"openssh-client", "openssh-clients"}


def _ee_directory(target: Path, tarball: Path) -> Path:
    """What a user puts in the directory they build the execution environment in: the two files and the tarball."""
    target.mkdir(parents=True)
    for name in ("execution-environment.yml", "requirements.yml"):
        shutil.copy(AWX / name, target / name)
    shutil.copy(tarball, target / tarball.name)
    (target / "ansible.cfg").write_text("[defaults]\n")
    return target


def _builder_create(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml", "-c", "context",
                           "--output-filename", "Containerfile"], check=False, capture_output=True, text=True, cwd=directory, timeout=300)


def test_the_collection_version_is_written_once_in_the_ee_files() -> None:
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    active = yaml.safe_load((AWX / "requirements.yml").read_text())["collections"]
    assert active == [{"name": f"./zerotrust-workloads-{version}.tar.gz", "type": "file"}]
    for name in ("execution-environment.yml", "controller-vars.yml", "controller.yml"):
        assert version not in (AWX / name).read_text(), f"awx/{name} repeats the collection's version"


def test_the_execution_environment_builds_a_context_from_the_downloaded_collection(built: dict[str, Path], tmp_path: Path) -> None:
    directory = _ee_directory(tmp_path / "ee", built["tarball"])
    env = {**os.environ, "ANSIBLE_CONFIG": str(directory / "ansible.cfg")}
    downloaded = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "download", "-r", "requirements.yml", "-p", "collections"],
                                check=False, capture_output=True, text=True, cwd=directory, env=env, timeout=300)
    assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
    created = _builder_create(directory)
    assert created.returncode == 0, created.stdout + created.stderr
    context = directory / "context"
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream9"' in containerfile
    assert "ansible-core==2.21.5" in containerfile
    # The galaxy stage installs what the download resolved, from the tarball beside its requirements file.
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements == {"collections": [{"name": built["tarball"].name, "version": built["tarball"].name.split("-")[-1][:-7]}]}
    assert (context / "_build" / built["tarball"].name).read_bytes() == built["tarball"].read_bytes()
    assert re.search(r"COPY _build /build\nWORKDIR /build\n", containerfile)
    assert re.search(r"ansible-galaxy collection install .*-r requirements.yml", containerfile)
    assert "introspect" in containerfile


def test_ansible_builder_create_fails_when_the_collection_was_not_fetched(built: dict[str, Path], tmp_path: Path) -> None:
    directory = _ee_directory(tmp_path / "ee", built["tarball"])
    created = _builder_create(directory)
    assert created.returncode != 0
    assert "Dependency file collections/requirements.yml does not exist." in created.stdout + created.stderr
    assert "Complete!" not in created.stdout + created.stderr
    assert not (directory / "context" / "Containerfile").exists()


# --------------------------------------------------------------------------------------------------
# The inventory plugin with AWX's injected environment


@pytest.fixture(scope="module")
def seed_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    """The seed's objects on the lab's emulated API (HTTPS on loopback, bearer token)."""
    objects = scenario_objects(load_scenario(REPO / "lab" / "scenarios" / "seed.yml"))
    with start_server(objects, state_dir=tmp_path_factory.mktemp("zto-kubeapi")) as api:
        yield api


def _awx_injected(api: KubeApiServer, private_data_dir: Path, *, verify_ssl: bool, ca_cert: str | None,
                  token: str | None = None) -> dict[str, str]:
    """What AWX's kubernetes_bearer_token injector puts into the job's environment, byte for byte."""
    env = {"K8S_AUTH_HOST": api.url, "K8S_AUTH_API_KEY": token if token is not None else api.token}
    if verify_ssl and ca_cert is not None:
        env["K8S_AUTH_VERIFY_SSL"] = "True"
        ca_path = private_data_dir / "tmpk8sca"
        ca_path.write_text(ca_cert)
        ca_path.chmod(0o600)
        env["K8S_AUTH_SSL_CA_CERT"] = str(ca_path)
    else:
        env["K8S_AUTH_VERIFY_SSL"] = "False"
    return env


def _inventory_update(built: dict[str, Path], project: Path, injected: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ansible-inventory --list --export`` on the project's source file, as an AWX inventory update runs it."""
    env = {
        "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(project),
        "ANSIBLE_COLLECTIONS_PATH": str(built["collections"]),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",  # AWX sets this too: a source that fails must fail the update
        "ANSIBLE_LOCAL_TEMP": str(project / "tmp"),
        "ANSIBLE_CONFIG": str(built["config"]),
        **injected,
    }
    source = project / "inventory" / "cluster.kubernetes.yml"
    return subprocess.run([str(BIN / "ansible-inventory"), "-i", str(source), "--list", "--export", "--playbook-dir", str(project)],
                          check=False, capture_output=True, text=True, cwd=project, env=env, timeout=120)


def _plain(value: Any) -> Any:
    """Unwrap ``{"__ansible_unsafe": x}`` markers to compare values."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The user's project as AWX syncs it: the collection's project template (the inventory source files at their source_path)."""
    shutil.copytree(AWX / "project", tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_inventory_update_with_the_credentials_ca_verifies_and_lists_the_seed(built: dict[str, Path], seed_api: KubeApiServer,
                                                                               project: Path) -> None:
    assert seed_api.ca_file is not None
    injected = _awx_injected(seed_api, project, verify_ssl=True, ca_cert=Path(seed_api.ca_file).read_text())
    result = _inventory_update(built, project, injected)
    assert result.returncode == 0, result.stderr
    inventory = json.loads(result.stdout)
    # ansible-core's inventory_legacy profile: values from the cluster stay marked unsafe (never templated).
    assert inventory["_meta"]["profile"] == "inventory_legacy"
    assert inventory["_meta"]["hostvars"][SEED_POD_HOST]["workload"]["name"] == {"__ansible_unsafe": "wordpress-6dfdd9f64f-d75j2"}
    hostvars = _plain(inventory["_meta"]["hostvars"])
    pod = hostvars[SEED_POD_HOST]["workload"]
    assert (pod["kind"], pod["cluster"], pod["node"]) == ("pod", "prod", "k8s-node1")
    assert pod["addresses"] == ["10.244.1.94", "fd00:10:244:1::94"]
    service = hostvars["wordpress.wordpress.service.prod"]["workload"]
    assert [port["node_port"] for port in service["ports"]] == [30358]
    assert {"k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"} <= set(hostvars)
    assert seed_api.token not in result.stdout + result.stderr


def test_inventory_update_without_a_ca_in_the_credential_runs_unverified_as_awx_says(built: dict[str, Path], seed_api: KubeApiServer,
                                                                                      project: Path) -> None:
    # verify_ssl ticked but no CA pasted: AWX still exports K8S_AUTH_VERIFY_SSL=False.
    injected = _awx_injected(seed_api, project, verify_ssl=True, ca_cert=None)
    assert injected["K8S_AUTH_VERIFY_SSL"] == "False" and "K8S_AUTH_SSL_CA_CERT" not in injected
    result = _inventory_update(built, project, injected)
    assert result.returncode == 0, result.stderr
    assert SEED_POD_HOST in json.loads(result.stdout)["_meta"]["hostvars"]


def test_inventory_update_verifies_by_default_when_verify_ssl_is_not_injected(built: dict[str, Path], seed_api: KubeApiServer,
                                                                               project: Path) -> None:
    # kubernetes.core users who set only host and token: verification stays on and the lab's CA is unknown.
    injected = {"K8S_AUTH_HOST": seed_api.url, "K8S_AUTH_API_KEY": seed_api.token}
    result = _inventory_update(built, project, injected)
    assert result.returncode != 0
    assert "TLS verification failed" in result.stderr
    assert "set ca_cert to the cluster's CA" in result.stderr
    assert seed_api.token not in result.stdout + result.stderr


def test_inventory_update_with_a_wrong_ca_fails_naming_tls(built: dict[str, Path], seed_api: KubeApiServer, project: Path,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    other_ca, _, _ = make_tls_material(tmp_path_factory.mktemp("zto-otherca"))
    injected = _awx_injected(seed_api, project, verify_ssl=True, ca_cert=other_ca.read_text())
    result = _inventory_update(built, project, injected)
    assert result.returncode != 0
    assert "TLS verification failed" in result.stderr


def test_inventory_update_with_a_revoked_token_fails_with_401_and_never_shows_it(built: dict[str, Path], seed_api: KubeApiServer,
                                                                                 project: Path) -> None:
    assert seed_api.ca_file is not None
    wrong = "revoked-" + "x" * 40
    injected = _awx_injected(seed_api, project, verify_ssl=True, ca_cert=Path(seed_api.ca_file).read_text(), token=wrong)
    result = _inventory_update(built, project, injected)
    assert result.returncode != 0
    assert "401 Unauthorized" in result.stderr
    assert "check the token" in result.stderr
    assert wrong not in result.stdout + result.stderr


def test_the_tarball_ships_no_tests_lab_state_or_caches(built: dict[str, Path]) -> None:
    with tarfile.open(built["tarball"]) as archive:
        names = archive.getnames()
        links = [member.name for member in archive.getmembers() if member.issym() or member.islnk()]
    assert not links, f"the tarball contains links: {links[:5]}"
    forbidden = re.compile(r"(^|/)(tests|lab|benchmarks|molecule|collections|\.lab|\.venv[^/]*|\.build|\.git|__pycache__|\.mypy_cache|"
                           r"\.ruff_cache|\.pytest_cache|\.hypothesis|\.cache)(/|$)|\.pyc$|\.tar\.gz$")
    assert [name for name in names if forbidden.search(name)] == []
    for expected in ("MANIFEST.json", "FILES.json", "plugins/inventory/kubernetes.py", "extensions/eda/rulebooks/enforce_on_change.yml",
                     "extensions/eda/plugins/event_source/kubernetes_workloads.py", "awx/project/inventory/cluster.kubernetes.yml",
                     "meta/execution-environment.yml", "requirements.txt", "bindep.txt", "docs/eda.md"):
        assert expected in names, f"{expected} is missing from the tarball"


# --------------------------------------------------------------------------------------------------
# The tarball in a fresh environment: installs offline, ansible-doc shows every plugin


def _documented_plugins(tarball: Path) -> list[tuple[str, str]]:
    """(type, name) of every plugin and role the tarball ships, as ansible-doc names them."""
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    found: set[tuple[str, str]] = set()
    for name in names:
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "plugins" and parts[1] not in ("module_utils", "doc_fragments", "plugin_utils", "action"):
            stem, _, extension = parts[2].partition(".")
            plugin_type = "module" if parts[1] == "modules" else parts[1]
            # Filter and test plugins are documented per filter in a YAML file beside the Python file.
            # Action plugins are documented by the module of the same name.
            documented_by = "yml" if plugin_type in ("filter", "test") else "py"
            if extension == documented_by and stem != "__init__":
                found.add((plugin_type, stem))
        if len(parts) >= 3 and parts[0] == "roles" and parts[2] == "meta" and parts[-1] == "argument_specs.yml":
            found.add(("role", parts[1]))
    return sorted(found)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory, built: dict[str, Path]) -> dict[str, Any]:
    """A new virtual environment with the tarball installed offline into its own collections path.

    Nothing is downloaded: the new environment reads its Python packages (the ansible-core pinned in
    requirements-dev.txt, the collection's requirements) from this virtual environment through a .pth
    file, and gets console scripts of its own. It sees no collection but the one installed from the
    tarball, and not the repository.
    """
    root = tmp_path_factory.mktemp("zto-fresh")
    venv = root / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    [site_packages] = (venv / "lib").glob("python3*/site-packages")
    (site_packages / "zt-offline.pth").write_text(sysconfig.get_path("purelib") + "\n")
    for script, module in (("ansible-galaxy", "ansible.cli.galaxy"), ("ansible-doc", "ansible.cli.doc")):
        (venv / "bin" / script).write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import main\nsys.exit(main())\n")
        (venv / "bin" / script).chmod(0o755)
    (root / "ansible.cfg").write_text("[defaults]\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(root), "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": str(root / "collections"), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull}
    pins = (REPO / "requirements-dev.txt").read_text()
    core = re.search(r"^ansible-core==(\S+)", pins, re.M)
    assert core is not None
    version = subprocess.run([str(venv / "bin" / "python"), "-c", "import ansible.release; print(ansible.release.__version__)"],
                             check=True, capture_output=True, text=True, env=env, cwd=root)
    assert version.stdout.strip() == core.group(1)
    installed = subprocess.run([str(venv / "bin" / "ansible-galaxy"), "collection", "install", "--offline", str(built["tarball"]),
                                "--collections-path", str(root / "collections")],
                               check=False, capture_output=True, text=True, env=env, cwd=root)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The collection's own Python requirements, as an execution environment build installs them: with no index,
    # pip succeeds only if the environment already satisfies every line.
    requirements = root / "collections" / "ansible_collections" / "zerotrust" / "workloads" / "requirements.txt"
    satisfied = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--disable-pip-version-check",
                                "-r", str(requirements)], check=False, capture_output=True, text=True, env=env, cwd=root, timeout=300)
    assert satisfied.returncode == 0, satisfied.stdout + satisfied.stderr
    assert "Successfully installed" not in satisfied.stdout
    return {"venv": venv, "env": env, "root": root}


def test_the_tarball_installs_offline_in_a_fresh_venv_and_ansible_doc_shows_every_plugin(built: dict[str, Path],
                                                                                          fresh_venv: dict[str, Any]) -> None:
    plugins = _documented_plugins(built["tarball"])
    assert ("inventory", "kubernetes") in plugins and ("module", "allowlist") in plugins and ("filter", "compile") in plugins
    ansible_doc = str(fresh_venv["venv"] / "bin" / "ansible-doc")
    for plugin_type in sorted({plugin_type for plugin_type, _ in plugins}):
        listed = subprocess.run([ansible_doc, "-t", plugin_type, "-l", "zerotrust.workloads", "--json"], check=False, capture_output=True,
                                text=True, env=fresh_venv["env"], cwd=fresh_venv["root"])
        assert listed.returncode == 0, listed.stderr
        expected = {f"zerotrust.workloads.{name}" for kind, name in plugins if kind == plugin_type}
        assert expected <= set(json.loads(listed.stdout)), f"ansible-doc -t {plugin_type} -l lists {sorted(json.loads(listed.stdout))}"
    for plugin_type, name in plugins:
        shown = subprocess.run([ansible_doc, "-t", plugin_type, f"zerotrust.workloads.{name}"], check=False, capture_output=True, text=True,
                               env=fresh_venv["env"], cwd=fresh_venv["root"])
        assert shown.returncode == 0, f"ansible-doc -t {plugin_type} zerotrust.workloads.{name}: {shown.stderr}"
        assert "ERROR" not in shown.stderr, shown.stderr
        assert f"zerotrust.workloads.{name}" in shown.stdout or name in shown.stdout
