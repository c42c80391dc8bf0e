# SPDX-License-Identifier: GPL-3.0-or-later
"""The seed lab, for real: namespaces, kube-proxy's nat rules, listeners, sshd and the emulated API.

Brings the seed lab up once for the module and takes it down at the end; the last test checks
that `lab down` leaves the machine as it found it. If a lab was already up (someone is using
it), it is rebuilt with the same scenario afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.system import LAB_DIR, PREFIX, REPO_ROOT, STATE_FILE

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

SEED = REPO_ROOT / "lab" / "scenarios" / "seed.yml"
KUBECONFIG = LAB_DIR / "kubeconfig"
SSH_KEY = LAB_DIR / "ssh" / "id_ed25519"
WP = "pod:wordpress/wordpress-6dfdd9f64f-d75j2"
DB = "pod:wordpress/wordpress-mysql-5b58bbd695-gxtc4"
DNS = "pod:kube-system/coredns-7c65d6cfc9-zt5lb"
INVENTORY = LAB_DIR / "inventory"
NODEPORT = "vm:haproxy -> nodeport:wordpress/wordpress:tcp/80"


def lab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lab ARGS`` as the Makefile does."""
    completed = subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return completed


def ssh(address: str, command: str) -> str:
    completed = subprocess.run(
        [
            "ssh",
            "-i",
            str(SSH_KEY),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            f"root@{address}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return completed.stdout


def _lines(argv: list[str]) -> list[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()


def snapshot() -> dict[str, Any]:
    """What the lab could leave behind: our netns and links, root routes and rules, lab processes."""
    links = [line.split(":")[1].strip().split("@")[0] for line in _lines(["ip", "-o", "link", "show"])]
    routes = _lines(["ip", "-4", "route", "show", "table", "all"]) + _lines(["ip", "-6", "route", "show", "table", "all"])
    processes = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # The lab's own processes all name .lab/ or a lab script (other engineers' test API servers do not).
        if str(LAB_DIR) in cmdline or "lab/listener.py" in cmdline or "lab/probe_agent.py" in cmdline:
            processes.add((int(entry.name), cmdline.strip()))
    return {
        "netns": sorted(name for name in (line.split()[0] for line in _lines(["ip", "netns", "list"])) if name.startswith(PREFIX)),
        "lab_links": sorted(link for link in links if link.startswith(PREFIX)),
        "links": set(links),
        "routes": routes,
        "rules": _lines(["ip", "-4", "rule", "show"]) + _lines(["ip", "-6", "rule", "show"]),
        "processes": processes,
    }


def _comparable_routes(routes: list[str], devices: set[str]) -> set[str]:
    # Other engineers create their own namespaces and veths meanwhile: compare routes on
    # devices that existed before, on lab devices, and without a device.
    kept = set()
    for route in routes:
        match = re.search(r"\bdev (\S+)", route)
        if match is None or match.group(1) in devices or match.group(1).startswith(PREFIX):
            kept.add(route)
    return kept


@pytest.fixture(scope="module")
def seed_lab() -> Iterator[dict[str, Any]]:
    previous = json.loads(STATE_FILE.read_text())["scenario"]["path"] if STATE_FILE.exists() else None
    lab("down")
    before = snapshot()
    lab("up", "--scenario", str(SEED))
    try:
        yield {"before": before}
    finally:
        lab("down", check=False)
        if previous:
            lab("up", "--scenario", previous, check=False)


@pytest.fixture(scope="module")
def probe_json(seed_lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("probe") / "probe.json"
    completed = lab("probe", "--expect-open", "--json", str(out), check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def cells(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{cell['source']} -> {cell['target']}": cell for cell in document["cells"]}


def test_no_policy_everything_connected(probe_json: dict[str, Any]) -> None:
    table = cells(probe_json)
    assert len(table) == 44
    assert {probe_id: cell["result"] for probe_id, cell in table.items()} == dict.fromkeys(table, ".")
    assert probe_json["mismatches"] == []
    assert probe_json["elapsed_seconds"] < 5
    # Cluster DNS answers the matrix's UDP probes as a DNS server (a query, not the listeners' probe line).
    dns = table[f"{WP} -> svc:kube-system/kube-dns:udp/53"]["detail"][0]
    assert (dns["address"], dns["connected"]) == ("172.18.192.10", True)


def test_health_block_all_connected(probe_json: dict[str, Any]) -> None:
    """The control plane's own traffic, measured as NEW connections: every cell connected on the open lab."""
    health = {f"{cell['source']} -> {cell['target']}": cell for cell in probe_json["health"]}
    assert probe_json["health_failures"] == []
    assert {cell_id: cell["result"] for cell_id, cell in health.items()} == dict.fromkeys(health, ".")
    assert len(health) == 17
    for node in ("k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"):
        assert f"node:{node} -> apiserver:tcp/6443" in health
        assert f"apiserver -> node:{node}:tcp/10250" in health
        assert 0 <= health[f"kubelet:{node} -> apiserver:last-contact"]["detail"]["age_seconds"] < 5
    lookup = health[f"{WP} -> dns:wordpress.wordpress.svc.cluster.local"]["detail"]
    assert lookup["answers"] == ["172.18.202.253"]
    assert health[f"{WP} -> dns:www.example.test"]["detail"]["answers"] == ["192.0.2.80"]
    assert f"{DNS} -> svc:default/kubernetes:tcp/443" in health


def test_api_server_lives_in_the_control_plane_node(seed_lab: dict[str, Any]) -> None:
    import yaml  # noqa: PLC0415

    state = json.loads(STATE_FILE.read_text())
    assert (state["kubeapi"]["url"], state["kubeapi"]["netns"]) == ("https://172.18.221.10:6443", f"{PREFIX}node-k8s-master")
    assert yaml.safe_load(KUBECONFIG.read_text())["clusters"][0]["cluster"]["server"] == "https://172.18.221.10:6443"
    listening = "\n".join(_lines(["ip", "netns", "exec", f"{PREFIX}node-k8s-master", "ss", "-H", "-l", "-n", "-t"]))
    assert "172.18.221.10:6443" in listening
    assert ":6443" not in "\n".join(_lines(["ss", "-H", "-l", "-n", "-t"]))  # nothing on the root namespace's loopback
    # The certificate names what clients dial: the node address, the ClusterIP, kubernetes.default.svc.
    san = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(LAB_DIR / "kubeapi" / "server.crt")],
        capture_output=True, text=True, check=True,
    ).stdout
    for name in ("IP Address:172.18.221.10", "IP Address:172.18.192.1", "DNS:kubernetes.default.svc"):
        assert name in san


def _safe(value: Any) -> Any:
    """ansible-inventory's JSON with its ``{"__ansible_unsafe": text}`` wrappers (cluster data is untrusted) unwrapped."""
    if isinstance(value, dict):
        return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else {key: _safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_safe(item) for item in value]
    return value


def test_inventory_has_the_api_service(seed_lab: dict[str, Any]) -> None:
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(INVENTORY), "--list"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    hostvars = _safe(json.loads(completed.stdout)["_meta"]["hostvars"])
    api = hostvars["kubernetes.default.service.lab"]["workload"]
    assert (api["cluster_ips"], api["labels"]) == (["172.18.192.1"], {"component": "apiserver", "provider": "kubernetes"})
    assert [(e["addresses"], [p["port"] for p in e["ports"]]) for e in api["endpoints"]] == [(["172.18.221.10"], [6443])]
    assert hostvars["k8s-node1"]["workload"]["annotations"]["flannel.alpha.coreos.com/backend-type"] == "vxlan"
    assert "upstream-dns" not in hostvars  # the outside resolver is a lab VM, not a host Ansible manages


def test_nodeport_through_kube_proxy_masquerades(probe_json: dict[str, Any]) -> None:
    detail = cells(probe_json)[NODEPORT]["detail"]
    seen = {entry["node"]: (entry["connected"], entry["seen_source"]) for entry in detail}
    # Entering node1 (the pod's node) the pod sees its gateway; elsewhere the entering node's flannel.1
    # address (its pod CIDR's network address), which masquerade picks for traffic into the VXLAN overlay.
    assert seen == {
        "k8s-master": (True, "10.244.0.0"),
        "k8s-node1": (True, "10.244.1.1"),
        "k8s-node2": (True, "10.244.2.0"),
        "k8s-node3": (True, "10.244.3.0"),
    }
    # A direct connection keeps its source.
    direct = cells(probe_json)[f"vm:haproxy -> {WP}:tcp/80"]["detail"]
    assert direct[0]["seen_source"] == "172.18.221.1"


def test_ipv6_probes_connect(seed_lab: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "probe6.json"
    lab("probe", "--ipv6", "--expect-open", "--json", str(out))
    table = cells(json.loads(out.read_text()))
    assert len([probe_id for probe_id in table if probe_id.endswith("@ipv6")]) == 12
    assert table[f"vm:haproxy -> {WP}:tcp/80@ipv6"]["detail"][0]["seen_source"] == "fd00:172:18:221::1"


def test_seed_expectation_differs_without_policy(seed_lab: dict[str, Any]) -> None:
    completed = lab("probe", "--expect-from-scenario", check=False)
    assert completed.returncode == 1
    assert completed.stdout.count("MISMATCH") == 31
    assert "MISMATCH vm:outsider -> nodeport:wordpress/wordpress:tcp/80: observed . expected X" in completed.stdout


def test_kube_proxy_chains_in_every_node(seed_lab: dict[str, Any]) -> None:
    for node in ("k8s-master", "k8s-node1", "k8s-node2", "k8s-node3"):
        nat = "\n".join(_lines(["ip", "netns", "exec", f"{PREFIX}node-{node}", "iptables-save", "-t", "nat"]))
        assert '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in nat
        assert (
            '-A KUBE-NODEPORTS -p tcp -m comment --comment "wordpress/wordpress:http" -m tcp --dport 30358 -j KUBE-EXT-X7DNECNQRCYM4M7D'
            in nat
        )
        assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in nat


def test_official_client_lists_the_seed(seed_lab: dict[str, Any]) -> None:
    from kubernetes import client, config  # noqa: PLC0415

    api_client = config.new_client_from_config(config_file=str(KUBECONFIG), context="lab")  # type: ignore[no-untyped-call]
    try:
        core = client.CoreV1Api(api_client)
        # Any: the client's models declare every field optional.
        pod_items: list[Any] = core.list_pod_for_all_namespaces().items or []
        service_items: list[Any] = core.list_service_for_all_namespaces().items or []
        node_items: list[Any] = core.list_node().items or []
        pods = {(p.metadata.namespace, p.metadata.name, p.status.pod_ip, p.spec.node_name) for p in pod_items}
        services = {(s.metadata.name, s.spec.cluster_ip, s.spec.type) for s in service_items}
        nodes = {(n.metadata.name, n.spec.pod_cidr) for n in node_items}
    finally:
        api_client.close()
    assert pods == {
        ("wordpress", "wordpress-6dfdd9f64f-d75j2", "10.244.1.94", "k8s-node1"),
        ("wordpress", "wordpress-mysql-5b58bbd695-gxtc4", "10.244.3.18", "k8s-node3"),
        ("kube-system", "coredns-7c65d6cfc9-zt5lb", "10.244.0.53", "k8s-master"),
    }
    assert services == {
        ("wordpress", "172.18.202.253", "NodePort"),
        ("wordpress-mysql", "172.18.195.37", "ClusterIP"),
        ("kubernetes", "172.18.192.1", "ClusterIP"),
        ("kube-dns", "172.18.192.10", "ClusterIP"),
    }
    assert nodes == {
        ("k8s-master", "10.244.0.0/24"),
        ("k8s-node1", "10.244.1.0/24"),
        ("k8s-node2", "10.244.2.0/24"),
        ("k8s-node3", "10.244.3.0/24"),
    }


def test_kubectl_lists_the_seed(seed_lab: dict[str, Any]) -> None:
    completed = subprocess.run(
        ["kubectl", "--kubeconfig", str(KUBECONFIG), "get", "pods,svc,nodes", "-A", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    items = json.loads(completed.stdout)["items"]
    assert sorted((item["kind"], item["metadata"].get("namespace", ""), item["metadata"]["name"]) for item in items) == sorted(
        [
            ("Pod", "wordpress", "wordpress-6dfdd9f64f-d75j2"),
            ("Pod", "wordpress", "wordpress-mysql-5b58bbd695-gxtc4"),
            ("Pod", "kube-system", "coredns-7c65d6cfc9-zt5lb"),
            ("Service", "wordpress", "wordpress"),
            ("Service", "wordpress", "wordpress-mysql"),
            ("Service", "default", "kubernetes"),
            ("Service", "kube-system", "kube-dns"),
            ("Node", "", "k8s-master"),
            ("Node", "", "k8s-node1"),
            ("Node", "", "k8s-node2"),
            ("Node", "", "k8s-node3"),
        ]
    )


def test_ssh_into_haproxy(seed_lab: dict[str, Any]) -> None:
    out = ssh("172.18.221.1", "hostname; ip -br addr show dev eth0")
    hostname, addresses = out.splitlines()[:2]
    assert hostname == "haproxy"
    assert "172.18.221.1/24" in addresses.split()


def test_ssh_into_a_node_reaches_its_pod_namespace(seed_lab: dict[str, Any]) -> None:
    out = ssh("172.18.221.11", "hostname; ip netns exec zt-pod-0 ip -br addr show dev eth0")
    hostname, addresses = out.splitlines()[:2]
    assert hostname == "k8s-node1"
    assert "10.244.1.94/24" in addresses.split()


def test_inventory_files(seed_lab: dict[str, Any]) -> None:
    import yaml  # noqa: PLC0415

    inventory = LAB_DIR / "inventory"
    kubernetes = yaml.safe_load((inventory / "lab.kubernetes.yml").read_text())
    assert kubernetes == {"plugin": "zerotrust.workloads.kubernetes", "connections": [{"kubeconfig": str(KUBECONFIG), "context": "lab"}]}
    vms = yaml.safe_load((inventory / "vms.yml").read_text())["all"]["children"]["vms"]["hosts"]
    assert vms["haproxy"]["ansible_host"] == "172.18.221.1"
    assert vms["haproxy"]["zt_labels"] == {"role": "loadbalancer"}
    group_vars = yaml.safe_load((inventory / "group_vars" / "all.yml").read_text())
    assert group_vars["ansible_python_interpreter"] == "/usr/bin/python3"
    assert group_vars["ansible_ssh_private_key_file"] == str(SSH_KEY)
    assert group_vars["enforce_upstream_dns"] == group_vars["audit_upstream_dns"] == ["172.18.221.53"]


def test_ansible_reaches_vms_and_nodes(seed_lab: dict[str, Any]) -> None:
    """Ansible over the lab's SSH settings (its ControlMasters are what `lab down` must also end)."""
    inventory = LAB_DIR / "inventory"
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "-i",
            str(inventory / "vms.yml"),
            "-e",
            f"@{inventory / 'group_vars' / 'all.yml'}",
            "vms",
            "-m",
            "command",
            "-a",
            "hostname",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "haproxy | CHANGED | rc=0 >>\nhaproxy" in completed.stdout
    assert "outsider | CHANGED | rc=0 >>\noutsider" in completed.stdout
    assert any((LAB_DIR / "ssh-control").iterdir()), "ansible.cfg keeps its ControlMaster sockets under .lab/ssh-control"


def test_probe_refuses_addresses_outside_the_lab(seed_lab: dict[str, Any]) -> None:
    from lab.errors import LabError  # noqa: PLC0415
    from lab.prober import check_route, lab_addresses  # noqa: PLC0415
    from lab.scenario import load_scenario  # noqa: PLC0415

    allowed = lab_addresses(load_scenario(SEED))
    check_route(f"{PREFIX}vm-haproxy", ["lo", "eth0"], "10.244.1.94", allowed)
    with pytest.raises(LabError, match=r"refusing to probe 192\.0\.2\.1: not an address of the lab"):
        check_route(f"{PREFIX}vm-haproxy", ["lo", "eth0"], "192.0.2.1", allowed)
    # A lab address the source cannot route to through a lab interface is refused too.
    with pytest.raises(LabError, match=r"no route|not a lab interface|failed"):
        check_route(f"{PREFIX}vm-haproxy", ["lo", "eth0"], "172.18.202.253", allowed)


def test_up_is_idempotent(seed_lab: dict[str, Any]) -> None:
    state_before = json.loads(STATE_FILE.read_text())
    completed = lab("up", "--scenario", str(SEED))
    assert "already up with this scenario, nothing changed" in completed.stdout
    state_after = json.loads(STATE_FILE.read_text())
    assert [p["pid"] for p in state_after["processes"]] == [p["pid"] for p in state_before["processes"]]
    assert snapshot()["netns"] == sorted(state_before["netns"])


def test_move_pod_rules_follow(seed_lab: dict[str, Any], tmp_path: Path) -> None:
    lab("move-pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "--node", "k8s-node2", "--ip", "10.244.2.94")
    try:
        out = tmp_path / "moved.json"
        lab("probe", "--expect-open", "--json", str(out))
        table = cells(json.loads(out.read_text()))
        seen = {entry["node"]: entry["seen_source"] for entry in table[NODEPORT]["detail"]}
        assert seen["k8s-node2"] == "10.244.2.1"
        assert seen["k8s-node1"] == "10.244.1.0"  # node1's flannel.1 address: the pod now lives across the overlay
        assert table[f"vm:haproxy -> {WP}:tcp/80"]["detail"][0]["address"] == "10.244.2.94"
        assert "-A KUBE-SEP-" in "\n".join(_lines(["ip", "netns", "exec", f"{PREFIX}node-k8s-node3", "iptables-save", "-t", "nat"]))
        assert "10.244.1.94" not in "\n".join(_lines(["ip", "netns", "exec", f"{PREFIX}node-k8s-node3", "iptables-save", "-t", "nat"]))
        from kubernetes import client, config  # noqa: PLC0415

        api_client = config.new_client_from_config(config_file=str(KUBECONFIG), context="lab")  # type: ignore[no-untyped-call]
        try:
            pod: Any = client.CoreV1Api(api_client).read_namespaced_pod("wordpress-6dfdd9f64f-d75j2", "wordpress")
            slices: list[Any] = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice("wordpress").items or []
        finally:
            api_client.close()
        assert (pod.status.pod_ip, pod.spec.node_name, pod.status.host_ip) == ("10.244.2.94", "k8s-node2", "172.18.221.12")
        wordpress_slice = next(s for s in slices if s.metadata.labels["kubernetes.io/service-name"] == "wordpress")
        assert [(e.addresses, e.node_name) for e in wordpress_slice.endpoints] == [(["10.244.2.94"], "k8s-node2")]
    finally:
        lab("move-pod", "wordpress/wordpress-6dfdd9f64f-d75j2", "--node", "k8s-node1", "--ip", "10.244.1.94")
    lab("probe", "--expect-open", "--json", str(tmp_path / "back.json"))
    back = cells(json.loads((tmp_path / "back.json").read_text()))
    assert {entry["node"]: entry["seen_source"] for entry in back[NODEPORT]["detail"]}["k8s-node1"] == "10.244.1.1"


def test_another_scenario_replaces_the_lab(seed_lab: dict[str, Any], tmp_path: Path) -> None:
    """UDP through kube-proxy, and externalTrafficPolicy: Local (no masquerade, only the pod's node answers)."""
    out = tmp_path / "local.json"
    assert "lab up:" in lab("up", "--scenario", str(REPO_ROOT / "lab" / "scenarios" / "udp-local.yml")).stdout
    try:
        assert snapshot()["netns"] == ["zt-node-n1", "zt-node-n2", "zt-pod-0", "zt-pod-1", "zt-pod-2", "zt-vm-client", "zt-vm-upstream-dns"]
        lab("probe", "--json", str(out))
        document = json.loads(out.read_text())
        assert document["health_failures"] == []
        table = cells(document)
        assert table["pod:web/web-b -> svc:kube-system/dns:udp/53"]["result"] == "."
        assert table["pod:web/web-b -> svc:kube-system/dns:udp/53"]["detail"][0]["seen_source"] == "10.244.9.10"
        local = table["vm:client -> nodeport:web/web:tcp/80"]
        assert local["result"] == "."  # the node with the endpoint answers; n1 cannot (shown, not counted)
        assert {entry["node"]: (entry["connected"], entry["seen_source"]) for entry in local["detail"]} == {
            "n1": (False, None),
            "n2": (True, "172.18.221.50"),
        }
    finally:
        lab("up", "--scenario", str(SEED))
    lab("probe", "--expect-open", "--json", str(out))
    assert len(cells(json.loads(out.read_text()))) == 44


def enforce_seed(policy_file: Path = SEED) -> subprocess.CompletedProcess[str]:
    """A scenario file's policy enforced on the lab by the enforce playbook, as `make demo` runs it."""
    playbook = str(REPO_ROOT / "playbooks" / "enforce.yml")
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-f", "10", "-i", str(INVENTORY), playbook,
            "-e", f"enforce_policy_file={policy_file}"]
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)


def probe_after(tmp_path: Path, name: str) -> tuple[int, dict[str, Any]]:
    """`lab probe --expect-from-scenario` as `make demo` runs it after enforcement: its exit status and JSON."""
    out = tmp_path / f"{name}.json"
    completed = lab("probe", "--expect-from-scenario", "--json", str(out), check=False)
    return completed.returncode, json.loads(out.read_text())


def health_of(document: dict[str, Any]) -> dict[str, str]:
    return {f"{cell['source']} -> {cell['target']}": cell["result"] for cell in document["health"]}


def test_without_the_cluster_allowance_the_control_plane_breaks(seed_lab: dict[str, Any], tmp_path: Path) -> None:
    """Proof that the health block measures something: the seed's demo with `implicit: {cluster: false}` in the
    policy's options, then the seed's own policy again."""
    import yaml  # noqa: PLC0415

    document = yaml.safe_load(SEED.read_text())
    document["policy"]["options"] = {"implicit": {"cluster": False}}
    cluster_off = tmp_path / "seed-cluster-off.yml"
    cluster_off.write_text(yaml.safe_dump(document, sort_keys=False))
    lab("up", "--scenario", str(SEED))
    try:
        completed = enforce_seed(cluster_off)
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        status, broken = probe_after(tmp_path, "off")
        workers = ("k8s-node1", "k8s-node2", "k8s-node3")
        # NEW connections only (established ones survive): kubelets lose the API server and it loses them;
        # k8s-master's own cells stay up (its traffic to itself never leaves the node). CoreDNS loses the API.
        # The overlay (udp/8472 between nodes) is closed: pods on other nodes than CoreDNS get no DNS
        # answer, and the external name needs the upstream resolver, which CoreDNS can no longer reach.
        expected = {cell_id: "." for cell_id in health_of(broken)}
        expected.update({f"node:{node} -> apiserver:tcp/6443": "X" for node in workers})
        expected.update({f"apiserver -> node:{node}:tcp/10250": "X" for node in workers})
        expected.update({f"kubelet:{node} -> apiserver:last-contact": "X" for node in workers})
        expected.update({
            f"{DNS} -> svc:default/kubernetes:tcp/443": "X",
            f"{WP} -> dns:wordpress.wordpress.svc.cluster.local": "X",
            f"{DB} -> dns:wordpress.wordpress.svc.cluster.local": "X",
            f"{WP} -> dns:www.example.test": "X",
        })
        assert health_of(broken) == expected
        assert len(expected) == 17
        assert sorted(broken["health_failures"]) == sorted(cell_id for cell_id, result in expected.items() if result == "X")
        # The overlay in the workload table: the policy allows the frontend (k8s-node1) to the database
        # (k8s-node3) on tcp/3306, and the connection now fails. So `make demo` fails (exit status 1).
        to_db = f"{WP} -> {DB}:tcp/3306"
        assert {cell["source"] + " -> " + cell["target"]: cell["result"] for cell in broken["cells"]}[to_db] == "X"
        assert to_db in broken["mismatches"]
        assert status == 1
        # The controller kept its API (that flow belongs to the never-lock-out allowance, not to `cluster`):
        # the seed's own policy, `cluster` on, reads the inventory and heals every cell.
        healed = enforce_seed()
        assert healed.returncode == 0, healed.stdout[-3000:] + healed.stderr[-3000:]
        status, after = probe_after(tmp_path, "healed")
        assert set(health_of(after).values()) == {"."}
        assert (after["mismatches"], after["health_failures"], status) == ([], [], 0)
    except BaseException:
        # Leave a working lab to the tests after this one.
        lab("down")
        lab("up", "--scenario", str(SEED))
        raise


def test_down_leaves_nothing_behind(seed_lab: dict[str, Any]) -> None:
    """Last: after `lab down` the machine looks as it did before `lab up`."""
    lab("down")
    before, after = seed_lab["before"], snapshot()
    assert after["netns"] == before["netns"] == []
    assert after["lab_links"] == before["lab_links"] == []
    assert _comparable_routes(after["routes"], before["links"]) == _comparable_routes(before["routes"], before["links"])
    assert after["rules"] == before["rules"]
    assert after["processes"] == before["processes"] == set()
    assert not any(LAB_DIR.iterdir()) if LAB_DIR.exists() else True
    assert "lab down: nothing to remove" in lab("down").stdout
