# SPDX-License-Identifier: GPL-3.0-or-later
"""The audit role on the seed lab, for real: SSH to every VM and node, conntrack and the observer in
every namespace, traffic generated on all pairs by the lab's probe, the report opened in Chromium.

One scenario, in order, on a freshly built seed lab (the lab is a singleton: when someone rebuilds
it under the scenario, the scenario is run again once on a fresh lab):

1. before enforcement: observer on, probe every pair, audit -> haproxy -> wordpress (NodePort) and
   wordpress -> mysql are permitted, every flow of the outsider is escaped;
2. after enforcement: probe again, audit -> the outsider's attempts are rejected, drift is empty;
3. a rule deleted by hand in the WordPress pod's namespace -> drift in that pod's section, naming
   the policy it came from;
4. the HTML report in headless Chromium: the graph, the matrix and a host table are there.

Traffic only flows between the lab's own namespaces (the lab's probe checks routes first).
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = REPO_ROOT / ".lab" / "state.json"
INVENTORY = REPO_ROOT / ".lab" / "inventory"
SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"
WP_HOST = "wordpress-6dfdd9f64f-d75j2.wordpress.pod.lab"
WP = "pod:wordpress/wordpress-6dfdd9f64f-d75j2"
DB = "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4"
NODEPORT = "nodeport:wordpress/wordpress"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]


class LabVanishedError(Exception):
    """Someone rebuilt or took down the lab while the scenario ran."""


def run(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root with the repository's ansible.cfg."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO_ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m lab ARGS``; fails the test with the output when it fails."""
    completed = run([sys.executable, "-m", "lab", *args], timeout=600)
    if completed.returncode != 0 and "another lab command holds" in completed.stderr:
        raise LabVanishedError(completed.stderr)
    assert completed.returncode == 0, f"lab {' '.join(args)}:\n{completed.stdout}\n{completed.stderr}"
    return completed


def lab_identity() -> str:
    """Changes whenever the lab is rebuilt."""
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return "no lab"
    return json.dumps([state.get("status"), state.get("scenario", {}).get("digest"), [p.get("pid") for p in state.get("processes", [])]])


def playbook(name: str, **extra: Any) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook -i .lab/inventory playbooks/NAME -e EXTRA``."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(INVENTORY), str(REPO_ROOT / "playbooks" / name)]
    return run([*argv, "-e", json.dumps(extra)])


def must(completed: subprocess.CompletedProcess[str], identity: str) -> str:
    """The output of a successful run; LabVanishedError when the lab changed under it."""
    # A rebuilt lab, or hosts that vanished under the run (someone took the lab down and up again)
    if lab_identity() != identity or (completed.returncode != 0 and "UNREACHABLE!" in completed.stdout):
        raise LabVanishedError(completed.stdout[-2000:])
    assert completed.returncode == 0, f"{shlex.join(completed.args)}\n{completed.stdout[-6000:]}\n{completed.stderr[-3000:]}"
    return completed.stdout


def audit(report_dir: Path, identity: str, **extra: Any) -> dict[str, Any]:
    """Run the audit playbook in report mode and return the JSON report."""
    must(playbook("audit.yml", audit_policy_file=str(SEED), audit_report_dir=str(report_dir), **extra), identity)
    report: dict[str, Any] = json.loads((report_dir / "audit.json").read_text())
    return report


def flows_of(report: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(source, destination) -> the classes seen, over every flow of the report."""
    found: dict[tuple[str, str], set[str]] = {}
    for flow in report["flows"]["items"]:
        found.setdefault((flow["source"], flow["destination"]), set()).add(flow["class"])
    return found


def delete_rule_by_hand(netns: str, origin: str) -> None:
    """Delete our ingress rule with ``origin`` in ``netns`` as an operator would, whatever the backend."""
    listing = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-a", "list", "chain", "inet", "zerotrust", "ingress"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode == 0:
        line = next(line for line in listing.stdout.splitlines() if origin in line)
        handle = line.rsplit("# handle", 1)[1].strip()
        subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "delete", "rule", "inet", "zerotrust", "ingress", "handle", handle], check=True
        )
        return
    save = subprocess.run(
        ["ip", "netns", "exec", netns, "iptables-save", "-t", "filter"], capture_output=True, text=True, check=True
    ).stdout
    line = next(line for line in save.splitlines() if line.startswith("-A ZT-INGRESS") and origin in line)
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-t", "filter", "-D", *shlex.split(line)[1:]], check=True)


def pod_netns(pod_key: str) -> str:
    """The lab namespace of a pod (``wordpress/NAME``)."""
    state = json.loads(STATE_FILE.read_text())
    return str(next(workload["netns"] for workload in state["workloads"] if workload["id"] == f"pod:{pod_key}"))


def scenario(report_dir: Path) -> dict[str, dict[str, Any]]:
    """Steps 1-3 on a fresh lab; returns the three reports."""
    lab("down")
    lab("up", "--scenario", str(SEED))
    identity = lab_identity()
    reports: dict[str, dict[str, Any]] = {}
    try:
        must(playbook("enforce.yml", enforce_state="absent"), identity)
        must(playbook("audit.yml", audit_policy_file=str(SEED), audit_mode="observe"), identity)
        lab("probe", "--json", str(report_dir / "probe-before.json"))
        reports["before"] = audit(report_dir / "before", identity, audit_probe_file=str(report_dir / "probe-before.json"))
        enforcing = time.monotonic()
        must(playbook("enforce.yml", enforce_policy_file=str(SEED)), identity)
        lab("probe", "--json", str(report_dir / "probe-after.json"))
        # Only what the hosts carried since the enforce run started: the probe before it did connect the outsider,
        # and nothing else sends from the outsider while the rules are written. The window reaches back to that
        # start, so the seconds the audit run needs before it reads the logs (more on a busy machine) cannot push
        # the after-probe's attempts out of it.
        window = int(time.monotonic() - enforcing) + 1
        reports["after"] = audit(report_dir / "after", identity, audit_probe_file=str(report_dir / "probe-after.json"), audit_window=window)
        delete_rule_by_hand(pod_netns("wordpress/wordpress-6dfdd9f64f-d75j2"), "default[0] haproxy->wordpress")
        reports["drift"] = audit(report_dir / "drift", identity, audit_rules=True, audit_flows=False)
    finally:
        if lab_identity() == identity:
            playbook("audit.yml", audit_policy_file=str(SEED), audit_mode="stop")
            playbook("enforce.yml", enforce_state="absent")
    return reports


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The scenario's reports (run again once if the lab was rebuilt under it)."""
    for attempt in range(3):
        report_dir = tmp_path_factory.mktemp(f"audit{attempt}")
        try:
            yield {"dir": report_dir, **scenario(report_dir)}
            return
        except LabVanishedError as error:
            print(f"the lab changed under the audit scenario (attempt {attempt + 1}): {str(error)[-300:]}")
            continue
    pytest.fail("the lab was rebuilt under the audit scenario three times")


def test_before_enforcement_permitted_and_escaped(reports: dict[str, Any]) -> None:
    report = reports["before"]
    flows = flows_of(report)
    assert flows[("vm:haproxy", NODEPORT)] == {"permitted"}
    assert flows[(WP, DB)] == {"permitted"}
    outsider = {destination: classes for (source, destination), classes in flows.items() if source == "vm:outsider"}
    # the probe connects the outsider to every pod, NodePort and VM of the lab
    assert {NODEPORT, WP, DB, "vm:haproxy"} <= set(outsider)
    assert all(classes == {"escaped"} for classes in outsider.values()), outsider
    # with nothing enforced, the probe measured everything connected: each denied cell differs, and says why
    differing = [cell for cell in report["conformance"]["cells"] if cell["agree"] is False]
    assert differing and all(cell["expected"] == "X" and cell["decided_by"] for cell in differing)
    # the implicit allowances are told apart (Ansible's own SSH sessions to the nodes at least)
    assert any(flow["implicit"] and flow["decided_by"] == ["implicit:management_ssh"] for flow in report["flows"]["items"])
    # nothing enforced yet: every namespace says so, none drifts
    assert report["summary"]["drift"] == 0
    assert WP_HOST in report["summary"]["not_enforced"]


def test_after_enforcement_rejected_and_no_drift(reports: dict[str, Any]) -> None:
    report = reports["after"]
    flows = flows_of(report)
    outsider = {destination: classes for (source, destination), classes in flows.items() if source == "vm:outsider"}
    assert {NODEPORT, WP, DB, "vm:haproxy"} <= set(outsider)
    assert all("rejected" in classes and "escaped" not in classes for classes in outsider.values()), outsider
    assert "permitted" in flows[("vm:haproxy", NODEPORT)]
    assert "permitted" in flows[(WP, DB)]
    assert report["summary"]["drift"] == 0, report["summary"]["drift_items"]
    assert report["conformance"]["differences"] == 0
    sections = {section["name"]: section for host in report["hosts"] for section in host["sections"]}
    assert WP_HOST in sections and "haproxy" in sections
    assert any(rule["policy"] == "default[0]" for rule in sections[WP_HOST]["rules"])


def test_rule_deleted_by_hand_is_drift_in_the_pod_section(reports: dict[str, Any]) -> None:
    report = reports["drift"]
    drifted = {section["name"]: section["drift"] for host in report["hosts"] for section in host["sections"] if section["drift"]}
    assert list(drifted) == [WP_HOST]
    [item] = drifted[WP_HOST]
    assert (item["kind"], item["policy"]) == ("missing", "default[0]")
    assert item["origin"].startswith("default[0] haproxy->wordpress tcp/80")


def test_report_in_headless_chromium(reports: dict[str, Any]) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    page = reports["dir"] / "after" / "audit.html"
    profile = reports["dir"] / "chromium-profile"
    screenshot = reports["dir"] / "audit.png"
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,2400"]
    shot = subprocess.run([*base, f"--screenshot={screenshot}", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20000
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    # the graph: filters as nodes, the policy edge with its NodePort
    graph = re.search(r'<svg id="policy-graph".*?</svg>', text, re.DOTALL)
    assert graph is not None
    assert graph.group(0).count('class="filter-node"') == 4
    assert "wordpress/wordpress tcp/80 -&gt; NodePort 30358" in graph.group(0)
    # the matrix: one row per probe source, connected-and-allowed cells in green
    matrix = re.search(r'<table class="matrix">.*?</table>', text, re.DOTALL)
    assert matrix is not None
    assert f"<th>{WP}</th>" in matrix.group(0) and "<th>vm:outsider</th>" in matrix.group(0)
    assert 'class="c-allow"' in matrix.group(0) and 'class="c-diff"' not in matrix.group(0)
    # a host table: the WordPress pod's rules with their policies
    section = re.search(rf'<details class="host-section" id="section-{re.escape(WP_HOST)}"[^>]*>.*?</details>', text, re.DOTALL)
    assert section is not None
    assert "default[0] haproxy-&gt;wordpress tcp/80" in section.group(0)
    # the first host's table is open on the page (the screenshot shows it)
    assert re.search(r'<details class="host-section" id="section-[^"]+" open="">', text) is not None
    assert "rejected" in text


def test_hostile_names_stay_text_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    sys.path.insert(0, str(REPO_ROOT / "tests" / "unit" / "plugins" / "module_utils" / "_audit"))
    from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.html import render_html  # noqa: PLC0415
    from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.report import build_report  # noqa: PLC0415
    from audit_seed import WORDPRESS_POD, seed_hostvars, seed_policy  # noqa: PLC0415

    hostile = '</title><script>document.title="pwned"</script><img src=x id=injected>'
    hostvars = seed_hostvars()
    # From the cluster: a pod whose name, namespace and label are hostile, its flow and its probe row
    # (the graph, the filter preview, the flow table, the matrix); from elsewhere: a VM named so.
    pod_host = f"{hostile}.pod.lab"
    pod = copy.deepcopy(hostvars[WORDPRESS_POD])
    pod["workload"].update(name=hostile, namespace=hostile, labels={"role": hostile}, addresses=["10.244.2.77"], node="k8s-node2")
    pod["zt_enforce_host"] = "k8s-node2"
    hostvars[pod_host] = pod
    hostvars[hostile] = {"zt_addresses": ["172.18.221.77"], "zt_labels": {"role": hostile}}
    policy = seed_policy()
    policy["filters"]["evil"] = "label.role exists"
    policy["policies"]["default"].append({"consumer": "evil", "provider": "db", "ports": ["tcp/3306"]})
    record = ["tcp", "10.244.2.77", 40000, "10.244.3.18", 3306, "10.244.3.18", 3306, "10.244.2.77", 40000, True]
    flows = {"k8s-node2": {"namespaces": [{"name": pod_host, "observer": True, "records": [record], "legs": []}]}}
    probe = {"cells": [{"source": f"pod:{hostile}/{hostile}", "target": f"{DB}:tcp/3306", "result": "."}]}
    report = build_report(policy, hostvars, flow_results=flows, probe=probe, title=hostile)
    assert [flow["source"] for flow in report["flows"]["items"]] == [f"pod:{hostile}/{hostile}"]
    page = tmp_path / "hostile.html"
    page.write_text(render_html(report))
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="injected"' not in dom.stdout and "<script" not in dom.stdout and "<img" not in dom.stdout
    assert "<title>pwned</title>" not in dom.stdout
    # shown as text where it occurs: the title, the filter preview, the flow table, the matrix row
    escaped = html.escape(hostile, quote=False)
    assert dom.stdout.count(escaped) >= 4, dom.stdout.count(escaped)
    matrix = re.search(r'<table class="matrix">.*?</table>', dom.stdout, re.DOTALL)
    assert matrix is not None and escaped in matrix.group(0)


# -- the flows module in throwaway namespaces (no lab needed) ------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """Two namespaces ``zta-<id>-c`` (10.99.0.1) and ``zta-<id>-s`` (10.99.0.2) on one veth; the server
    listens on tcp/8080 and tcp/8081 and drops tcp/8081 in a foreign nft table (the "enforcement")."""
    ident = os.urandom(3).hex()
    client, server = f"zta-{ident}-c", f"zta-{ident}-s"
    listener: subprocess.Popen[bytes] | None = None
    try:
        for netns in (client, server):
            subprocess.run(["ip", "netns", "add", netns], check=True)
            subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            ["ip", "link", "add", "zta-v0", "netns", client, "type", "veth", "peer", "name", "zta-v1", "netns", server], check=True
        )
        for netns, device, address in ((client, "zta-v0", "10.99.0.1/24"), (server, "zta-v1", "10.99.0.2/24")):
            subprocess.run(["ip", "-n", netns, "addr", "add", address, "dev", device], check=True)
            subprocess.run(["ip", "-n", netns, "link", "set", device, "up"], check=True)
        block = (
            "add table inet zta_block\n"
            "add chain inet zta_block input { type filter hook input priority 0; }\n"
            "add rule inet zta_block input tcp dport 8081 drop\n"
        )
        subprocess.run(["ip", "netns", "exec", server, "nft", "-f", "-"], input=block, text=True, check=True)
        serve = "import socket,time\nfor p in (8080,8081):\n s=socket.socket();s.bind(('10.99.0.2',p));s.listen(16);globals()[f's{p}']=s\n"
        serve += "time.sleep(120)\n"
        listener = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c", serve])
        yield client, server
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for netns in (client, server):
            subprocess.run(["ip", "netns", "delete", netns], check=False)


def flows_module(netns: str, state: str) -> dict[str, Any]:
    """One ``zerotrust.workloads.flows`` run on localhost with ``netns``; its JSON result."""
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-m", "zerotrust.workloads.flows"]
    completed = run([*argv, "-a", json.dumps({"state": state, "netns": netns, "host_label": netns}), "-o"])
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout.split(" => ", 1)[1])
    return result


@pytest.mark.netns
def test_flows_module_sees_answered_and_dropped_attempts(pair: tuple[str, str]) -> None:
    from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.observation import Record, merge  # noqa: PLC0415

    client, server = pair
    foreign_before = subprocess.run(
        ["ip", "netns", "exec", server, "nft", "list", "table", "inet", "zta_block"], capture_output=True, text=True, check=True
    )
    assert flows_module(client, "observe")["changed"] is True
    assert flows_module(server, "observe")["changed"] is True
    assert flows_module(server, "observe")["changed"] is False  # idempotent
    route = subprocess.run(["ip", "-n", client, "-j", "route", "get", "10.99.0.2"], capture_output=True, text=True, check=True)
    assert json.loads(route.stdout)[0]["dev"] == "zta-v0"  # traffic stays between our namespaces
    connect = "import socket\nfor p in (8080,8081):\n s=socket.socket();s.settimeout(0.5)\n"
    connect += " try: s.connect(('10.99.0.2',p))\n except OSError: pass\n s.close()\n"
    subprocess.run(["ip", "netns", "exec", client, sys.executable, "-c", connect], check=True, timeout=30)
    records = []
    for netns in (client, server):
        [entry] = flows_module(netns, "collect")["namespaces"]
        assert entry["observer"] is True and entry["error"] == ""
        records += [Record.from_list(netns, item) for item in entry["records"]]
    by_port = {observed.original.destination_port: observed for observed in merge(records) if observed.original.destination == "10.99.0.2"}
    assert by_port[8080].answered is True and by_port[8080].seen_at == (client, server)
    assert by_port[8081].answered is False and by_port[8081].seen_at == (client, server)  # seen, then dropped
    for netns in (client, server):
        assert flows_module(netns, "absent")["changed"] is True
        tables = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
        assert "zt_audit" not in tables
    foreign_after = subprocess.run(
        ["ip", "netns", "exec", server, "nft", "list", "table", "inet", "zta_block"], capture_output=True, text=True, check=True
    )
    assert foreign_after.stdout == foreign_before.stdout
