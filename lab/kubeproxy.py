# SPDX-License-Identifier: GPL-3.0-or-later
"""kube-proxy's iptables-mode rules for one node, rendered the way kube-proxy writes them.

The lab's nodes carry the same chains kube-proxy creates (KUBE-SERVICES, KUBE-NODEPORTS,
KUBE-SVC-*, KUBE-EXT-*, KUBE-SEP-*, KUBE-MARK-MASQ, KUBE-POSTROUTING with the 0x4000
masquerade mark, KUBE-FORWARD in filter), so the collection's dataplane always lives
beside a real-looking kube-proxy and must leave it byte-for-byte alone.

Chain names follow kube-proxy's scheme: a prefix plus the first 16 characters of the
base32-encoded SHA-256 of the service port name and protocol (and the endpoint for SEPs).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from lab.scenario import Scenario, Service, ServicePort, resolve_target_port, static_target_port

MASQUERADE_MARK = "0x4000"

# The jumps from the built-in chains, applied one by one (check, then append) because
# iptables-restore --noflush would duplicate them on every update.
NAT_JUMPS: tuple[tuple[str, ...], ...] = (
    ("PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"),
    ("OUTPUT", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"),
    ("POSTROUTING", "-m", "comment", "--comment", "kubernetes postrouting rules", "-j", "KUBE-POSTROUTING"),
)
_NEW = ("-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment")
FILTER_JUMPS: tuple[tuple[str, ...], ...] = (
    ("INPUT", *_NEW, "kubernetes externally-visible service portals", "-j", "KUBE-EXTERNAL-SERVICES"),
    ("FORWARD", "-m", "comment", "--comment", "kubernetes forwarding rules", "-j", "KUBE-FORWARD"),
    ("FORWARD", *_NEW, "kubernetes service portals", "-j", "KUBE-SERVICES"),
    ("FORWARD", *_NEW, "kubernetes externally-visible service portals", "-j", "KUBE-EXTERNAL-SERVICES"),
    ("OUTPUT", *_NEW, "kubernetes service portals", "-j", "KUBE-SERVICES"),
)


@dataclass(frozen=True)
class Endpoint:
    """One ready endpoint of a service port: the pod's address and resolved target port."""

    pod_key: str
    address: str
    port: int


def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_name(service: Service, port: ServicePort) -> str:
    """kube-proxy's service port name: ``namespace/name:port-name`` (empty port name allowed)."""
    return f"{service.namespace}/{service.name}:{port.name or ''}"


def svc_chain(service: Service, port: ServicePort) -> str:
    """The KUBE-SVC chain of a service port."""
    return "KUBE-SVC-" + _hash(port_name(service, port) + port.protocol.lower())


def ext_chain(service: Service, port: ServicePort) -> str:
    """The KUBE-EXT chain of a service port (NodePort / external traffic)."""
    return "KUBE-EXT-" + _hash(port_name(service, port) + port.protocol.lower())


def sep_chain(service: Service, port: ServicePort, endpoint: Endpoint) -> str:
    """The KUBE-SEP chain of one endpoint of a service port."""
    return "KUBE-SEP-" + _hash(port_name(service, port) + port.protocol.lower() + f"{endpoint.address}:{endpoint.port}")


def endpoints(scenario: Scenario, service: Service, port: ServicePort) -> list[Endpoint]:
    """The endpoints of a service port: selected pods whose target port resolves (or the static ones, e.g. the API server)."""
    if service.static_endpoints:
        return [Endpoint(pod_key="", address=str(endpoint.address), port=static_target_port(port)) for endpoint in service.static_endpoints]
    result = []
    for pod in scenario.service_endpoints(service):
        target = resolve_target_port(port, pod)
        if target is not None:
            result.append(Endpoint(pod_key=pod.key, address=str(pod.ip), port=target))
    return result


def _quote(text: str) -> str:
    # iptables-restore reads double-quoted words; our comments are built from validated names.
    return '"' + text.replace('"', "'") + '"'


def render_node_rules(scenario: Scenario, node_name: str) -> tuple[str, list[str]]:
    """The iptables-restore text (nat and filter) for one node, and the KUBE-* chains it declares.

    The text declares every chain (which flushes it under ``--noflush``) and fills it; base
    chain jumps are not in it (see NAT_JUMPS / FILTER_JUMPS). ``node_name`` matters for
    ``externalTrafficPolicy: Local``, where a node only forwards NodePort traffic to its own pods.
    """
    cluster_cidr = str(scenario.cluster.cluster_cidr)
    chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    rules: list[str] = []
    nodeport_rules: list[str] = []
    filter_rules: list[str] = []
    mark = MASQUERADE_MARK
    rules.append(f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}")
    rules.append(f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN")
    rules.append(f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}")
    rules.append('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully')
    pods_by_key = {pod.key: pod for pod in scenario.pods}
    for service in scenario.services:
        for port in service.ports:
            name = port_name(service, port)
            proto = port.protocol.lower()
            svc = svc_chain(service, port)
            eps = endpoints(scenario, service, port)
            cluster_ip = f"{service.cluster_ip}/32"
            if not eps:
                # No chains at all; kube-proxy rejects in the filter table (nat cannot filter).
                filter_rules.append(
                    f"-A KUBE-SERVICES -d {cluster_ip} -p {proto} -m comment --comment {_quote(name + ' has no endpoints')} "
                    f"-m {proto} --dport {port.port} -j REJECT --reject-with icmp-port-unreachable"
                )
                if port.node_port is not None:
                    filter_rules.append(
                        f"-A KUBE-EXTERNAL-SERVICES -p {proto} -m comment --comment {_quote(name + ' has no endpoints')} "
                        f"-m addrtype --dst-type LOCAL -m {proto} --dport {port.node_port} -j REJECT --reject-with icmp-port-unreachable"
                    )
                continue
            chains.append(svc)
            rules.append(
                f"-A KUBE-SERVICES -d {cluster_ip} -p {proto} -m comment --comment {_quote(name + ' cluster IP')} "
                f"-m {proto} --dport {port.port} -j {svc}"
            )
            if port.node_port is not None:
                local = [ep for ep in eps if pods_by_key[ep.pod_key].node == node_name]
                _nodeport(rules, chains, nodeport_rules, filter_rules, service=service, port=port, local=local, cluster_cidr=cluster_cidr)
            rules.append(
                f"-A {svc} ! -s {cluster_cidr} -d {cluster_ip} -p {proto} -m comment --comment {_quote(name + ' cluster IP')} "
                f"-m {proto} --dport {port.port} -j KUBE-MARK-MASQ"
            )
            _balance(rules, svc, service=service, port=port, eps=eps, name=name)
            for ep in eps:
                sep = sep_chain(service, port, ep)
                if sep not in chains:
                    chains.append(sep)
                rules.append(f"-A {sep} -s {ep.address}/32 -m comment --comment {_quote(name)} -j KUBE-MARK-MASQ")
                rules.append(
                    f"-A {sep} -p {proto} -m comment --comment {_quote(name)} -m {proto} -j DNAT --to-destination {ep.address}:{ep.port}"
                )
    rules.extend(nodeport_rules)
    rules.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" '
        "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    )
    nat = ["*nat", *(f":{chain} - [0:0]" for chain in chains), *_sorted_by_chain(rules, chains), "COMMIT"]
    filter_table = [
        "*filter",
        ":KUBE-SERVICES - [0:0]",
        ":KUBE-EXTERNAL-SERVICES - [0:0]",
        ":KUBE-FORWARD - [0:0]",
        *filter_rules,
        f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
        "COMMIT",
    ]
    return "\n".join(nat + filter_table) + "\n", chains


def _nodeport(
    rules: list[str],
    chains: list[str],
    nodeport_rules: list[str],
    filter_rules: list[str],
    *,
    service: Service,
    port: ServicePort,
    local: list[Endpoint],
    cluster_cidr: str,
) -> None:
    """The KUBE-NODEPORTS jump and the KUBE-EXT chain of a service port with a NodePort."""
    name, proto, svc, ext = port_name(service, port), port.protocol.lower(), svc_chain(service, port), ext_chain(service, port)
    chains.append(ext)
    nodeport_rules.append(f"-A KUBE-NODEPORTS -p {proto} -m comment --comment {_quote(name)} -m {proto} --dport {port.node_port} -j {ext}")
    if service.external_traffic_policy != "Local":
        comment = _quote(f"masquerade traffic for {name} external destinations")
        rules.append(f"-A {ext} -m comment --comment {comment} -j KUBE-MARK-MASQ")
        rules.append(f"-A {ext} -j {svc}")
        return
    # Local: no masquerade; pods still reach every endpoint; outside traffic only this node's pods.
    rules.append(f'-A {ext} -s {cluster_cidr} -m comment --comment "pod traffic for {name} external destinations" -j {svc}')
    if local:
        local_chain = "KUBE-SVL-" + _hash(name + proto)
        chains.append(local_chain)
        rules.append(f"-A {ext} -j {local_chain}")
        _balance(rules, local_chain, service=service, port=port, eps=local, name=name)
    else:
        # Not DNATed here, so it reaches INPUT, where kube-proxy drops it in the filter table.
        filter_rules.append(
            f"-A KUBE-EXTERNAL-SERVICES -p {proto} -m comment --comment {_quote(name + ' has no local endpoints')} "
            f"-m addrtype --dst-type LOCAL -m {proto} --dport {port.node_port} -j DROP"
        )


def _balance(rules: list[str], chain: str, *, service: Service, port: ServicePort, eps: list[Endpoint], name: str) -> None:
    """Spread a chain over its endpoints with kube-proxy's statistic-mode probabilities."""
    for index, ep in enumerate(eps):
        remaining = len(eps) - index
        comment = f"-m comment --comment {_quote(f'{name} -> {ep.address}:{ep.port}')}"
        sep = sep_chain(service, port, ep)
        if remaining > 1:
            rules.append(f"-A {chain} {comment} -m statistic --mode random --probability {1 / remaining:.11f} -j {sep}")
        else:
            rules.append(f"-A {chain} {comment} -j {sep}")


def _sorted_by_chain(rules: list[str], chains: list[str]) -> list[str]:
    """Group rules by chain in declaration order, keeping each chain's rule order (as iptables-save does)."""
    order = {chain: index for index, chain in enumerate(chains)}
    return sorted(rules, key=lambda rule: order.get(rule.split()[1], len(order)))


# --------------------------------------------------------------------------- what kube-proxy and a CNI do on their own


def _kube_chains(netns: str, table: str, family: int = 4) -> list[str]:
    """The KUBE-* chains in one table of a namespace."""
    from lab.system import in_netns, run  # noqa: PLC0415 - rendering above needs no system access

    tool = "iptables" if family == 4 else "ip6tables"
    listing = run(in_netns(netns, [tool, "-w", "-t", table, "-S"]), check=False)
    return [line.split()[1] for line in listing.splitlines() if line.startswith("-N KUBE-")]


def ensure_jumps_prepend(netns: str) -> None:
    """kube-proxy's jumps from the built-in chains as the real proxier ensures them: check, else PREPEND.

    (``EnsureRule(Prepend, ...)``: after a cleanup, a restarted kube-proxy puts its jumps above ours.)
    """
    import subprocess  # noqa: PLC0415

    from lab.system import in_netns, run  # noqa: PLC0415

    for table, jumps in (("nat", NAT_JUMPS), ("filter", FILTER_JUMPS)):
        for jump in jumps:
            chain, *spec = jump
            check = subprocess.run(in_netns(netns, ["iptables", "-w", "-t", table, "-C", chain, *spec]), capture_output=True, check=False)
            if check.returncode != 0:
                run(in_netns(netns, ["iptables", "-w", "-t", table, "-I", chain, "1", *spec]))


def full_resync(scenario: Scenario, netns: str, node_name: str) -> str:
    """A kube-proxy restart or full sync: ONE ``iptables-restore --noflush`` of every KUBE-* chain it owns
    (each declared, so flushed and refilled in the commit; stale ones deleted), then its jumps ensured.

    Returns the restore text it wrote.
    """
    from lab.system import in_netns, run  # noqa: PLC0415

    text, nat_chains = render_node_rules(scenario, node_name)
    stale = [chain for chain in _kube_chains(netns, "nat") if chain not in nat_chains]
    # The canary chains a real kube-proxy also rewrites on every full sync.
    canary = ":KUBE-PROXY-CANARY - [0:0]\n"
    nat_end = text.index("COMMIT")
    declared = canary + "".join(f":{chain} - [0:0]\n" for chain in stale) + "".join(f"-X {chain}\n" for chain in stale)
    text = text[:nat_end] + declared + text[nat_end:]
    filter_start = text.index("*filter\n") + len("*filter\n")
    text = text[:filter_start] + canary + text[filter_start:]
    text += "*mangle\n" + canary + "COMMIT\n"
    run(in_netns(netns, ["iptables-restore", "-w", "--noflush"]), input_text=text)
    ensure_jumps_prepend(netns)
    return text


def cleanup(netns: str) -> None:
    """``kube-proxy --cleanup``: its jumps out of the built-in chains, then every KUBE-* chain flushed and deleted."""
    import subprocess  # noqa: PLC0415

    from lab.system import in_netns, run  # noqa: PLC0415

    for table, jumps in (("nat", NAT_JUMPS), ("filter", FILTER_JUMPS)):
        for jump in jumps:
            chain, *spec = jump
            while subprocess.run(in_netns(netns, ["iptables", "-w", "-t", table, "-D", chain, *spec]), capture_output=True,
                                 check=False).returncode == 0:
                pass
    lines: list[str] = []
    for table in ("nat", "filter", "mangle"):
        chains = _kube_chains(netns, table)
        if chains:
            lines += [f"*{table}", *(f":{chain} - [0:0]" for chain in chains), *(f"-X {chain}" for chain in chains), "COMMIT"]
    if lines:
        run(in_netns(netns, ["iptables-restore", "-w", "--noflush"]), input_text="\n".join(lines) + "\n")


CNI_CHAINS = ("CNI-LAB-FWD", "CNI-LAB-POSTRTG")


def cni_rewrite(netns: str, cluster_cidr: str) -> str:
    """A flannel-style CNI agent (re)start: its own chains rewritten in one ``iptables-restore --noflush``,
    its jumps appended when missing. Returns the restore text."""
    import subprocess  # noqa: PLC0415

    from lab.system import in_netns, run  # noqa: PLC0415

    text = (
        "*filter\n"
        f":{CNI_CHAINS[0]} - [0:0]\n"
        f'-A {CNI_CHAINS[0]} -s {cluster_cidr} -m comment --comment "lab cni forward" -j ACCEPT\n'
        f'-A {CNI_CHAINS[0]} -d {cluster_cidr} -m comment --comment "lab cni forward" -j ACCEPT\n'
        "COMMIT\n"
        "*nat\n"
        f":{CNI_CHAINS[1]} - [0:0]\n"
        f'-A {CNI_CHAINS[1]} -s {cluster_cidr} -d {cluster_cidr} -m comment --comment "lab cni" -j RETURN\n'
        "COMMIT\n"
    )
    run(in_netns(netns, ["iptables-restore", "-w", "--noflush"]), input_text=text)
    for table, chain, target in (("filter", "FORWARD", CNI_CHAINS[0]), ("nat", "POSTROUTING", CNI_CHAINS[1])):
        spec = ["-m", "comment", "--comment", "lab cni", "-j", target]
        present = subprocess.run(in_netns(netns, ["iptables", "-w", "-t", table, "-C", chain, *spec]), capture_output=True, check=False)
        if present.returncode != 0:
            run(in_netns(netns, ["iptables", "-w", "-t", table, "-A", chain, *spec]))
    return text
