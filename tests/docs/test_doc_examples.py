# SPDX-License-Identifier: GPL-3.0-or-later
"""Every example in README.md and docs/*.md is run.

A fenced block's info string says how: ```` ```yaml example=policy ````. Blocks of language
``text`` are illustrations (diagrams, output) and are not run; any other block without a known
``example=`` kind fails this test, so a new example cannot slip in untested. Unmarked ``yaml``
blocks that look like a policy (``filters`` + ``policies``) or an inventory file (``plugin:``) are
run as such, so that the policy-language pages need no markers.

Kinds:

- ``policy``: compiled against the seed inventory as written (its ``options:`` stay in the policy);
  a following ``<!-- flows: ... -->`` comment lists flows (``SRC -> DST proto/port [via V] =>
  allow|deny``) that are checked against the policy's semantics;
- ``policy-error``: must be rejected; a following ``<!-- error: TEXT -->`` must be in the message;
- ``query``: each line is a filter expression that must parse;
- ``csw`` (a ``json`` block): a Secure Workload workspace that ``zerotrust.workloads.from_csw`` imports; a following
  ``<!-- flows: ... -->`` comment is checked against the imported policy as for ``policy``;
- ``csw-result``: the policy (YAML) the nearest ``csw`` block above it imports to, exactly;
- ``csw-error``: a workspace that must be refused; each line of the following ``<!-- error: ... -->`` comment must be
  in the message;
- ``inventory``: read by the inventory plugin (``ansible-inventory --list``) from the lab's
  emulated API with the seed's objects, credentials from ``K8S_AUTH_*``;
- ``static-inventory``: read by ``ansible-inventory --list``;
- ``rulebook``: valid for ansible-rulebook's schema and present in a rulebook the collection ships;
- ``event``: has the shape the event source emits;
- ``excerpt:PATH``: appears verbatim in PATH;
- ``python`` (a ``python`` block): runs with ``policy``, ``hostvars`` (the seed's) and ``options`` ({})
  defined; a last expression followed by a ``# TEXT`` comment line must have a ``repr`` that
  matches TEXT, where ``...`` stands for anything;
- ``shell``: each ``$ `` line runs (argv split, no shell, ``~/`` is HOME) as a user runs it: in a directory
  holding the built tarball and the page's ``file=PATH`` blocks, with an empty HOME and no ansible.cfg;
- ``install`` and ``quickstart`` (the users' page, docs/README.md): each ``$ `` line is a command of
  the installed collection whose files the page defines (blocks with ``file=PATH``); they run for
  real, from the built tarball against the lab, in tests/integration/test_collection_install.py;
- ``shell-api``: each ``$ `` line runs in the AWX project template (awx/project/), with ``K8S_AUTH_*`` pointing at the
  emulated API;
- ``k8s-manifests`` (unmarked YAML of Kubernetes objects): every object is well-formed, roles only
  read (get/list/watch) and never touch secrets, and every binding refers to a role of the block
  or of the same page;
- ``cluster-commands`` (unmarked shell blocks that run kubectl against a real cluster, which the
  tests do not have): ``bash -n`` accepts the block and every kubectl subcommand exists.

An ``inventory`` example that names a cluster (``host``, ``ca_cert``, ``kubeconfig``) is read with
those settings pointed at the emulated API, everything else as written.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.compiler import compile_policy
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.csw import import_workspace
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import ZeroTrustPolicyError
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import parse_query
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import Flow, check_flow
from ansible_rulebook.validators import Validate

from lab.kubeapi import KubeApiServer, start_server, write_kubeconfig
from lab.objects import scenario_objects
from lab.scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests" / "unit" / "plugins" / "module_utils" / "_policy"))
from policy_seed import add_control_plane, seed_hostvars, seed_policy  # noqa: E402  (the seed inventory and policy, kept by the compiler's tests)

# Not examples: contracts.md fixes data shapes (its blocks are schemas, tested by the components' own tests).
NOT_EXAMPLES = {"contracts.md"}
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*\n(?P<after>(?:[ \t]*\n)*<!--(?P<comment>.*?)-->)?",
                   re.M | re.S)
FLOW = re.compile(r"^\s*(?P<src>\S+)\s+->\s+(?P<dst>\S+)\s+(?P<proto>[a-z0-9]+)(?:/(?P<port>\d+))?"
                  r"(?:\s+via\s+(?P<via>\w+))?\s*=>\s*(?P<verdict>allow|deny)\s*$")
SEED_POD = "wordpress-6dfdd9f64f-d75j2"


@dataclass(frozen=True)
class Example:
    """One fenced block of a document."""

    doc: str
    line: int
    language: str
    kind: str
    body: str
    comment: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}:{self.kind}"


def _kind(language: str, marker: str, body: str) -> str:
    if marker:
        return marker
    if language == "text":
        return "illustration"
    if language == "python":
        return "python"
    if language in ("yaml", "yml"):
        return _yaml_kind(body)
    if language in ("sh", "bash", "shell", "console") and _kubectl_only(body):
        return "cluster-commands"
    return "unmarked"


def _yaml_kind(body: str) -> str:
    """What an unmarked YAML block is: a policy, an inventory file, Kubernetes objects, or unknown."""
    try:
        documents = [document for document in yaml.safe_load_all(body) if document is not None]
    except yaml.YAMLError:
        return "unmarked"
    data = documents[0] if len(documents) == 1 else None
    kind = "unmarked"
    if isinstance(data, dict) and "policies" in data and "filters" in data:
        kind = "policy"
    elif isinstance(data, dict) and (data.get("plugin") == "zerotrust.workloads.kubernetes" or set(data) == {"connections"}):
        kind = "inventory"
    elif documents and all(isinstance(document, dict) and {"apiVersion", "kind"} <= set(document) for document in documents):
        kind = "k8s-manifests"
    return kind


def _kubectl_only(body: str) -> bool:
    """A block of commands for a real cluster: every command is kubectl (heredocs and loops around it allowed)."""
    commands = [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]
    return any(line.startswith("kubectl ") for line in commands)


def collect() -> list[Example]:
    """Every fenced block of README.md and docs/*.md."""
    examples = []
    for path in [REPO / "README.md", *sorted(DOCS.glob("*.md"))]:
        if path.name in NOT_EXAMPLES:
            continue
        text = path.read_text()
        for match in FENCE.finditer(text):
            words = match.group("info").split()
            language = words[0] if words else ""
            marker = next((word.split("=", 1)[1] for word in words[1:] if word.startswith("example=")), "")
            examples.append(Example(path.name, text.count("\n", 0, match.start()) + 1, language,
                                    _kind(language, marker, match.group("body")), match.group("body"), match.group("comment") or ""))
    return examples


EXAMPLES = collect()


def test_the_docs_have_examples_of_every_kind_we_run() -> None:
    kinds = {example.kind for example in EXAMPLES}
    assert {"policy", "inventory", "static-inventory", "rulebook", "event", "shell", "shell-api"} <= kinds
    assert all(example.kind.startswith("excerpt:") or example.kind in RUNNERS or example.kind == "illustration"
               for example in EXAMPLES if example.kind != "unmarked")


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def seed_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    """The seed's objects on the lab's emulated API (HTTPS on loopback)."""
    objects = scenario_objects(load_scenario(REPO / "lab" / "scenarios" / "seed.yml"))
    with start_server(objects, state_dir=tmp_path_factory.mktemp("zto-docs-api")) as api:
        yield api


@pytest.fixture(scope="module")
def collection_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tarball users install (scripts/build-collection.sh), for the ``shell`` examples."""
    dist = tmp_path_factory.mktemp("zto-docs-dist")
    built = subprocess.run(["bash", str(REPO / "scripts" / "build-collection.sh"), str(dist)], check=False, capture_output=True, text=True,
                           timeout=300, env={**os.environ, "ZT_BIN": str(BIN)})
    assert built.returncode == 0, built.stdout + built.stderr
    return Path(built.stdout.strip().splitlines()[-1])


def _api_env(api: KubeApiServer) -> dict[str, str]:
    assert api.ca_file is not None
    return {
        "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "ANSIBLE_COLLECTIONS_PATH": str(REPO / ".collections"),
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "K8S_AUTH_HOST": api.url,
        "K8S_AUTH_API_KEY": api.token,
        "K8S_AUTH_SSL_CA_CERT": api.ca_file,
    }


def _commands(body: str) -> list[list[str]]:
    commands = [shlex.split(line[2:]) for line in body.splitlines() if line.startswith("$ ")]
    assert commands, "a shell example needs at least one '$ ' line"
    return commands


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable, f"{argv[0]} is not installed"
    return subprocess.run([executable, *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


# --------------------------------------------------------------------------------------------------
# Runners


def run_policy(example: Example, **_: Any) -> None:
    # As written: a policy's ``options:`` stay in it, as a user's policy file keeps them (issue 15, item 12).
    data = yaml.safe_load(example.body)
    hostvars = seed_hostvars()
    add_control_plane(hostvars)  # the lab's seed has a control plane: default/kubernetes, CoreDNS, upstream-dns
    plan = compile_policy(data, hostvars)
    assert plan["hosts"], "the policy compiled to no enforcement point"
    flows = [line for line in example.comment.removeprefix(" flows:").splitlines() if line.strip()]
    if example.comment.strip():
        assert example.comment.startswith(" flows:"), f"unknown comment after a policy: {example.comment[:40]!r}"
        assert flows, "a flows comment lists no flow"
    for line in flows:
        match = FLOW.match(line)
        assert match, f"cannot read the flow {line!r}"
        flow = Flow(match["src"], match["dst"], match["proto"], int(match["port"]) if match["port"] else None, match["via"] or "direct")
        verdict = check_flow(data, hostvars, flow)
        assert verdict.allowed == (match["verdict"] == "allow"), f"{line.strip()}: {verdict.reason} ({', '.join(verdict.decided_by)})"


def run_python(example: Example, **_: Any) -> None:
    lines = example.body.rstrip().splitlines()
    expected = lines.pop().strip() if lines and lines[-1].lstrip().startswith("# ") else None
    code = "\n".join(lines)
    tree = ast.parse(code)
    namespace: dict[str, Any] = {"policy": seed_policy(), "hostvars": seed_hostvars(), "options": {}}
    last = tree.body.pop() if expected is not None and tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, f"{example}", "exec"), namespace)  # noqa: S102 - our own documentation's example
    if expected is None:
        return
    assert last is not None, "a python example with an expected result comment must end in an expression"
    value = eval(compile(ast.Expression(last.value), f"{example}", "eval"), namespace)  # noqa: S307 - as above
    pattern = ".*".join(re.escape(part) for part in expected.removeprefix("# ").split("..."))
    assert re.fullmatch(pattern, repr(value), re.S), f"{example}: got {value!r}, the page says {expected}"


def run_policy_error(example: Example, **_: Any) -> None:
    data = yaml.safe_load(example.body)
    expected = example.comment.removeprefix(" error:").strip()
    assert expected, "a policy-error example needs a following <!-- error: TEXT --> comment"
    with pytest.raises(ZeroTrustPolicyError) as raised:
        compile_policy(data, seed_hostvars())
    assert expected in str(raised.value)


def run_query(example: Example, **_: Any) -> None:
    lines = [line.strip() for line in example.body.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert lines
    for line in lines:
        parse_query(line)


def _check_flows(policy: Any, comment: str, options: Any = None) -> None:
    hostvars = seed_hostvars()
    add_control_plane(hostvars)
    if comment.strip():
        assert comment.startswith(" flows:"), f"unknown comment: {comment[:40]!r}"
    for line in [line for line in comment.removeprefix(" flows:").splitlines() if line.strip()]:
        match = FLOW.match(line)
        assert match, f"cannot read the flow {line!r}"
        flow = Flow(match["src"], match["dst"], match["proto"], int(match["port"]) if match["port"] else None, match["via"] or "direct")
        verdict = check_flow(policy, hostvars, flow, options)
        assert verdict.allowed == (match["verdict"] == "allow"), f"{line.strip()}: {verdict.reason} ({', '.join(verdict.decided_by)})"


def run_csw(example: Example, **_: Any) -> None:
    policy = import_workspace(json.loads(example.body))
    hostvars = seed_hostvars()
    add_control_plane(hostvars)
    assert compile_policy(policy, hostvars)["hosts"], "the imported policy compiled to no enforcement point"
    _check_flows(policy, example.comment)


def run_csw_result(example: Example, **_: Any) -> None:
    before = [other for other in EXAMPLES if other.doc == example.doc and other.kind == "csw" and other.line < example.line]
    assert before, "a csw-result block needs a csw block above it"
    assert yaml.safe_load(example.body) == import_workspace(json.loads(before[-1].body))


def run_csw_error(example: Example, **_: Any) -> None:
    expected = [line.strip() for line in example.comment.removeprefix(" error:").splitlines() if line.strip()]
    assert expected, "a csw-error example needs a following <!-- error: TEXT --> comment"
    with pytest.raises(ZeroTrustPolicyError) as raised:
        import_workspace(json.loads(example.body))
    for line in expected:
        assert line in str(raised.value)


def run_inventory(example: Example, seed_api: KubeApiServer, tmp_path: Path, **_: Any) -> None:
    data = yaml.safe_load(example.body)
    data.setdefault("plugin", "zerotrust.workloads.kubernetes")
    kubeconfig = write_kubeconfig(seed_api, tmp_path / "kubeconfig", "doc-cluster")
    for connection in data.get("connections") or []:
        # The example's cluster is the emulated one: same settings, our endpoint and credentials.
        if "host" in connection:
            connection["host"] = seed_api.url
        if "ca_cert" in connection or "ssl_ca_cert" in connection:
            connection.pop("ssl_ca_cert", None)
            connection["ca_cert"] = seed_api.ca_file
        if "kubeconfig" in connection:
            connection["kubeconfig"] = str(kubeconfig)
            connection.pop("context", None)
    source = tmp_path / "doc.kubernetes.yml"
    source.write_text(yaml.safe_dump(data))
    result = _run(["ansible-inventory", "-i", str(source), "--list"], tmp_path, _api_env(seed_api))
    assert result.returncode == 0, result.stderr
    assert "[WARNING]: Unable to parse" not in result.stderr, result.stderr
    assert SEED_POD in result.stdout, result.stderr


def run_static_inventory(example: Example, tmp_path: Path, **_: Any) -> None:
    source = tmp_path / "hosts.yml"
    source.write_text(example.body)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True"}
    result = _run(["ansible-inventory", "-i", str(source), "--list"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    hosts = {host for group in yaml.safe_load(example.body)["all"]["children"].values() for host in group["hosts"]}
    for host in hosts:
        assert f'"{host}"' in result.stdout


def run_rulebook(example: Example, **_: Any) -> None:
    data = yaml.safe_load(example.body)
    Validate.rulebook(data)
    shipped = [path.read_text() for path in (REPO / "extensions" / "eda" / "rulebooks").glob("*.yml")]
    assert any(example.body.strip() in text for text in shipped), "the rulebook shown is not one the collection ships"


def run_event(example: Example, **_: Any) -> None:
    event = yaml.safe_load(example.body)["zerotrust"]
    assert set(event) == {"type", "cluster", "reason", "count", "changes", "scope"}
    assert event["type"] in ("sync", "change") and event["count"] == len(event["changes"])
    for change in event["changes"]:
        assert set(change) == {"kind", "namespace", "name", "action", "fields"}
        assert change["kind"] in ("Pod", "Service", "EndpointSlice", "Node", "VulnerabilityReport")
        assert change["action"] in ("added", "modified", "deleted")
    assert set(event["scope"]) == {"namespaces", "nodes", "pods", "services"}


def run_excerpt(example: Example, **_: Any) -> None:
    path = REPO / example.kind.split(":", 1)[1]
    assert path.is_file(), f"{path} does not exist"
    wanted = textwrap.dedent(example.body).strip("\n")
    text = "\n".join(line.rstrip() for line in path.read_text().splitlines())
    lines = text.splitlines()
    size = len(wanted.splitlines())
    windows = ("\n".join(lines[start:start + size]) for start in range(len(lines) - size + 1))
    assert any(textwrap.dedent(window).strip("\n") == wanted for window in windows), f"not an excerpt of {path.relative_to(REPO)}"


def _page_files(doc: str) -> dict[str, str]:
    """The blocks of a docs/ page that name a file (``file=PATH`` in the info string): what the page has the user write."""
    files = {}
    for match in FENCE.finditer((DOCS / doc).read_text()):
        for word in match.group("info").split()[1:]:
            if word.startswith("file="):
                files[word.split("=", 1)[1]] = match.group("body")
    return files


def run_shell(example: Example, tmp_path: Path, collection_tarball: Path, **_: Any) -> None:
    """A user's commands: in a directory holding the collection's tarball and the files the page has the user write
    (its ``file=PATH`` blocks), with an empty HOME (``~`` is it)."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    shutil.copy(collection_tarball, work / collection_tarball.name)
    # (the root README.md has no such blocks; its name is docs/README.md's too)
    for name, body in (_page_files(example.doc) if example.doc != "README.md" else {}).items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(body)
    env = {"PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    for written in _commands(example.body):
        argv = [str(home) + word[1:] if word.startswith("~/") else word for word in written]
        result = _run(argv, work, env)
        assert result.returncode == 0, f"{shlex.join(argv)}: {result.stdout}\n{result.stderr}"


def run_shell_api(example: Example, seed_api: KubeApiServer, **_: Any) -> None:
    # In the AWX project template (awx/project/), the directory a user's project copies.
    for argv in _commands(example.body):
        result = _run(argv, REPO / "awx" / "project", _api_env(seed_api))
        assert result.returncode == 0, f"{shlex.join(argv)}: {result.stdout}\n{result.stderr}"
        assert seed_api.token not in result.stdout + result.stderr


def run_k8s_manifests(example: Example, **_: Any) -> None:
    documents = [document for document in yaml.safe_load_all(example.body) if document is not None]
    page = (REPO / example.doc if example.doc == "README.md" else DOCS / example.doc).read_text()
    for document in documents:
        assert document.get("metadata", {}).get("name"), f"a {document['kind']} without metadata.name"
        for rule in document.get("rules") or []:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, f"{document['metadata']['name']}: writes {rule['verbs']}"
            assert "secrets" not in rule.get("resources", []) and "*" not in rule.get("resources", [])
        if document["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            role = document["roleRef"]["name"]
            assert re.search(rf"kind: (Cluster)?Role\nmetadata:\n  name: {re.escape(role)}\n", page), f"binding to unknown role {role}"


def run_cluster_commands(example: Example, tmp_path: Path, **_: Any) -> None:
    script = tmp_path / "commands.sh"
    script.write_text(example.body)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not installed"
    subcommands = set(re.findall(r"(?:^|[|;(]\s*|\$\()kubectl\s+(?:-n\s+\S+\s+)?([a-z][a-z-]*(?:\s+[a-z][a-z-]*)?)", example.body, re.M))
    assert subcommands
    for subcommand in sorted(subcommands):
        words = subcommand.split()
        helped = subprocess.run([kubectl, *words, "--help"], capture_output=True, text=True, check=False, timeout=30)
        if helped.returncode != 0 and len(words) > 1:  # the second word was an argument (kubectl apply -f ...)
            helped = subprocess.run([kubectl, words[0], "--help"], capture_output=True, text=True, check=False, timeout=30)
        assert helped.returncode == 0, f"kubectl {subcommand}: {helped.stderr}"


def run_user_commands(example: Example, **_: Any) -> None:
    """A users' command block: installed-collection commands only, naming files the page defines."""
    page = (DOCS / example.doc).read_text()
    defined = set(re.findall(r"^```\S+ [^\n]*\bfile=(\S+)", page, re.M))
    for argv in _commands(example.body):
        assert argv[0] in ("ansible-galaxy", "ansible-inventory", "ansible-playbook", "python3"), f"{shlex.join(argv)}: not a user's"
        for word in argv:
            assert not re.match(r"(\.venv|\.lab|lab/|tests/|make$|playbooks/)", word), f"{shlex.join(argv)}: {word} needs a checkout"
        for option, value in itertools.pairwise(argv):
            if option == "-i":
                assert any(name.startswith(value.rstrip("/") + "/") for name in defined), f"-i {value}: no file of the page"
            if option == "-e" and value.endswith(".yml"):
                assert value.split("=", 1)[1] in defined, f"-e {value}: no file of the page"


RUNNERS: dict[str, Callable[..., None]] = {
    "install": run_user_commands,
    "quickstart": run_user_commands,
    "k8s-manifests": run_k8s_manifests,
    "cluster-commands": run_cluster_commands,
    "policy": run_policy,
    "policy-error": run_policy_error,
    "query": run_query,
    "csw": run_csw,
    "csw-result": run_csw_result,
    "csw-error": run_csw_error,
    "python": run_python,
    "inventory": run_inventory,
    "static-inventory": run_static_inventory,
    "rulebook": run_rulebook,
    "event": run_event,
    "shell": run_shell,
    "shell-api": run_shell_api,
}


@pytest.mark.parametrize("example", [example for example in EXAMPLES if example.kind != "illustration"], ids=str)
def test_example(example: Example, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if example.kind == "unmarked":
        pytest.fail(f"{example}: a ```{example.language} block with no example= kind; mark it (see tests/docs/test_doc_examples.py)")
    if example.kind.startswith("excerpt:"):
        run_excerpt(example)
        return
    runner = RUNNERS.get(example.kind)
    assert runner is not None, f"{example}: unknown example kind {example.kind!r}"
    extra: dict[str, Any] = {"tmp_path": tmp_path}
    if example.kind in ("inventory", "shell-api"):
        extra["seed_api"] = request.getfixturevalue("seed_api")
    if example.kind == "shell":
        extra["collection_tarball"] = request.getfixturevalue("collection_tarball")
    runner(example, **extra)
