# SPDX-License-Identifier: GPL-3.0-or-later
"""The expected truth table a scenario's policy implies, from the collection's reachability oracle.

The oracle reads the records the ``zerotrust.workloads.kubernetes`` inventory plugin itself
produces, as a playbook's ``hostvars`` holds them: ansible-core parses the lab's inventory
sources in this process (the plugin against the emulated API, the VMs' static file) and its
VariableManager gives each host's variables. For the running lab that is ``.lab/inventory``
against the lab's API (``lab_hostvars``); without a lab, the scenario's objects are served by
an in-process emulated API on loopback and the same two sources are read against it
(``scenario_hostvars``). Every probe becomes a ``Flow``: pod and VM targets ``direct``,
``svc:`` targets via ``cluster_ip``, ``nodeport:`` targets via ``node_port``.

``Expectation`` builds the oracle once and answers any cell on its own, so a sampled probe pays
for the cells it samples, not for the whole matrix.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError
from lab.probes import BLOCKED, CONNECTED, PARTIAL, Probe
from lab.scenario import Pod, Scenario
from lab.system import REPO_ROOT

DEFAULT_API_ACCESS = "namespace = kube-system"
COLLECTIONS = REPO_ROOT / ".collections"


def _collection_on_path() -> None:
    """Make the collection importable from this tree (``make collection`` links .collections to it).

    Through ansible-core's collection loader, installed once for the process: the inventory plugin
    (``inventory_hostvars``) loads only from a collection that loader imported (it reads the
    collection's metadata from the package), so the oracle's modules are imported through it too.
    """
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
    # ansible reads its configuration once, at import: the repository's (any_unparsed_is_failed = True).
    os.environ.setdefault("ANSIBLE_CONFIG", str(REPO_ROOT / "ansible.cfg"))
    from ansible.plugins.loader import init_plugin_loader  # noqa: PLC0415 - heavy; only the expected table needs ansible-core
    from ansible.utils.collection_loader import AnsibleCollectionConfig  # noqa: PLC0415

    if AnsibleCollectionConfig.collection_finder is None:
        init_plugin_loader([str(COLLECTIONS)])


def _policy_errors() -> type[Exception]:
    """The collection's policy error type (LabError when the collection is not importable)."""
    _collection_on_path()
    try:
        from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.errors import (  # noqa: PLC0415
            ZeroTrustPolicyError,
        )
    except ImportError as exc:
        raise LabError(f"the policy oracle is not importable ({exc}); run `make collection`") from None
    return ZeroTrustPolicyError


# --------------------------------------------------------------------------- the inventory's records


def inventory_hostvars(sources: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Every host's variables as a playbook's ``hostvars`` holds them, for these inventory sources.

    ansible-core's InventoryManager parses the sources in this process (our plugin for a
    ``*.kubernetes.yml``, the YAML plugin for the VMs; group_vars/host_vars beside them apply) and its
    VariableManager gives each host's variables. A source that fails to parse is a LabError naming it:
    an inventory without the cluster would expect every pod to be absent.
    """
    _collection_on_path()
    package = sys.modules.get("ansible_collections.zerotrust.workloads")
    if package is not None and getattr(package, "_collection_meta", None) is None:
        raise LabError(
            "the collection was imported from .collections before ansible-core's collection loader was installed, so its "
            "inventory plugin cannot load in this process; call lab.expected before importing the collection's modules"
        )
    from ansible.errors import AnsibleError  # noqa: PLC0415 - heavy; only the expected table needs ansible-core
    from ansible.inventory.manager import InventoryManager  # noqa: PLC0415
    from ansible.parsing.dataloader import DataLoader  # noqa: PLC0415
    from ansible.vars.manager import VariableManager  # noqa: PLC0415

    loader = DataLoader()
    try:
        inventory = InventoryManager(loader=loader, sources=[str(source) for source in sources])
    except AnsibleError as exc:
        raise LabError(f"the inventory {', '.join(map(str, sources))} could not be read: {exc}") from None
    files = [path for source in sources for path in ([source] if source.is_file() else sorted(source.glob("*.yml")))]
    unparsed = [str(path) for path in files if str(path) not in inventory._inventory.processed_sources]
    if unparsed:
        raise LabError(f"the inventory source(s) {', '.join(unparsed)} could not be parsed (see the warnings above)")
    variables = VariableManager(loader=loader, inventory=inventory)
    return {host.name: variables.get_vars(host=host, include_hostvars=False) for host in inventory.get_hosts()}


def lab_hostvars() -> dict[str, dict[str, Any]]:
    """The running lab's hostvars: ``.lab/inventory`` (its Kubernetes source against the lab's API, moves included)."""
    from lab.access import INVENTORY_DIR  # noqa: PLC0415

    if not INVENTORY_DIR.is_dir():
        raise LabError(f"{INVENTORY_DIR} does not exist; run `python -m lab up` first")
    return inventory_hostvars([INVENTORY_DIR])


@contextlib.contextmanager
def served_inventory(scenario: Scenario) -> Iterator[Path]:
    """A directory holding the lab's inventory sources, its Kubernetes source on an in-process API serving the scenario's objects."""
    from lab.access import inventory_sources  # noqa: PLC0415
    from lab.kubeapi import start_server, write_kubeconfig  # noqa: PLC0415
    from lab.objects import scenario_objects  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="zt-expected-") as directory, start_server(scenario_objects(scenario)) as api:
        base = Path(directory)
        kubeconfig = write_kubeconfig(api, base / "kubeconfig", scenario.cluster.name)
        inventory = base / "inventory"
        inventory.mkdir()
        for name, document in inventory_sources(scenario, kubeconfig).items():
            (inventory / name).write_text(yaml.safe_dump(document, sort_keys=False))
        yield inventory


def scenario_hostvars(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """The hostvars the lab's inventory yields for the scenario, read by the inventory plugin from an in-process API."""
    with served_inventory(scenario) as inventory:
        return inventory_hostvars([inventory])


# --------------------------------------------------------------------------- probes -> flows


class Expectation:
    """The oracle for one policy over one inventory's hostvars: the expected cell of any probe.

    Building it costs one pass over the hosts; each ``cell`` is one oracle check.
    """

    def __init__(self, policy: Mapping[str, Any], hostvars: Mapping[str, Mapping[str, Any]]) -> None:
        policy_error = _policy_errors()
        from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.reachability import (  # noqa: PLC0415
            Flow,
            Reachability,
        )

        self._flow = Flow
        self._policy_error = policy_error
        try:
            self._oracle = Reachability.from_hostvars(dict(policy), hostvars)
        except policy_error as exc:
            raise LabError(f"the scenario's policy is invalid: {exc}") from None
        self._hosts = probe_hosts(hostvars)

    def host(self, ref: str) -> str:
        """``pod:NS/NAME`` / ``svc:NS/NAME`` / ``nodeport:NS/NAME`` / ``vm:NAME`` -> the inventory hostname."""
        kind, _, name = ref.partition(":")
        key = ("service" if kind in ("svc", "nodeport") else kind, name)
        if key not in self._hosts:
            raise LabError(f"{ref} is not in the inventory (no host carries that workload)")
        return self._hosts[key]

    def cell(self, probe: Probe) -> str:
        """The cell the policy implies for one probe: connected, blocked or partly connected."""
        target_ref, _, port_text = probe.target.removesuffix("@ipv6").rpartition(":")
        port = int(port_text.split("/")[1])
        via = {"svc": "cluster_ip", "nodeport": "node_port"}.get(target_ref.partition(":")[0], "direct")
        flow = self._flow(source=self.host(probe.source), destination=self.host(target_ref), protocol=probe.protocol, port=port, via=via)
        try:
            verdict = self._oracle.check(flow)
        except self._policy_error as exc:
            raise LabError(f"the oracle cannot decide {probe.id}: {exc}") from None
        return CONNECTED if verdict.allowed else PARTIAL if verdict.partial else BLOCKED

    def table(self, probes: Iterable[Probe]) -> dict[str, str]:
        """The cell of every given probe (only those), by probe id."""
        return {probe.id: self.cell(probe) for probe in probes}


def probe_hosts(hostvars: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(kind, ``NS/NAME`` or VM name) -> inventory hostname, from the records: no assumption about the host name format."""
    hosts: dict[tuple[str, str], str] = {}
    for host, variables in hostvars.items():
        record = variables.get("workload")
        if isinstance(record, Mapping) and record.get("kind") in ("pod", "service"):
            hosts[(str(record["kind"]), f"{record.get('namespace')}/{record.get('name')}")] = host
        elif record is None:  # a host of any other source is a VM to the policy (contracts.md)
            hosts[("vm", host)] = host
    return hosts


def api_access_pods(scenario: Scenario, hostvars: Mapping[str, Mapping[str, Any]] | None = None) -> list[Pod]:
    """The pods the policy's ``options.api_access`` query selects (default ``namespace = kube-system``).

    Evaluated with the collection's query language over the inventory's workloads (``hostvars``, or
    the scenario's served inventory); a policy without the option falls back to the default.
    """
    options = (scenario.policy or {}).get("options") or {}
    text = options.get("api_access", DEFAULT_API_ACCESS) if isinstance(options, Mapping) else DEFAULT_API_ACCESS
    if not isinstance(text, str):
        return [pod for pod in scenario.pods if pod.namespace == "kube-system"]
    policy_error = _policy_errors()
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.query import evaluate, parse_query  # noqa: PLC0415
    from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.workloads import workloads_from_hostvars  # noqa: PLC0415

    records = hostvars if hostvars is not None else scenario_hostvars(scenario)
    try:
        query = parse_query(text)
        workloads, _ = workloads_from_hostvars(records)
    except policy_error as exc:
        raise LabError(f"the scenario's options.api_access is invalid: {exc}") from None
    selected = {(workload.namespace, workload.name) for workload in workloads if workload.kind == "pod" and evaluate(query, workload)}
    return [pod for pod in scenario.pods if (pod.namespace, pod.name) in selected]


API_TARGET = "svc:default/kubernetes:tcp/443"


def policy_api_pods(scenario: Scenario, hostvars: Mapping[str, Mapping[str, Any]] | None = None) -> list[Pod]:
    """The pods the scenario's policy lets reach ``default/kubernetes`` on tcp/443, as the oracle decides it.

    That covers a policy rule whose provider is the Service as well as the ``cluster`` allowance, so a
    pod given API access by a rule, not by ``options.api_access``, gets a health cell too. No policy or
    no API Service: none.
    """
    if scenario.policy is None or scenario.api_service is None:
        return []
    expectation = Expectation(scenario.policy, hostvars if hostvars is not None else scenario_hostvars(scenario))
    return [pod for pod in scenario.pods if expectation.cell(Probe(f"pod:{pod.key}", API_TARGET, "tcp", ())) == CONNECTED]


OPEN_POLICY: dict[str, Any] = {"filters": {}, "policies": {"absolute": [], "default": [], "catch_all": "allow"}}
"""No policy at all: what the oracle answers for it is kube-proxy's own behaviour (Local NodePorts)."""


def expected_open(scenario: Scenario, probes: list[Probe], hostvars: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, str]:
    """The table before any policy: everything connects except where kube-proxy itself makes a path fail
    (a pod -> another node's Local NodePort whose reply bypasses that node; Local NodePorts on nodes
    without an endpoint drop outside traffic, which the probe does not count)."""
    return expected_from_policy(scenario, probes, OPEN_POLICY, hostvars=hostvars)


def expected_from_policy(
    scenario: Scenario,
    probes: list[Probe],
    policy: Mapping[str, Any] | None = None,
    *,
    hostvars: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """The cell the policy implies for every given probe (only those); LabError when the oracle is missing or the policy is invalid.

    ``hostvars``: the inventory's (``lab_hostvars()`` for the running lab); by default the scenario's served inventory.
    """
    policy = policy if policy is not None else scenario.policy
    if policy is None:
        raise LabError("the scenario has no policy section")
    _policy_errors()  # a missing collection is reported before an API is started for nothing
    return Expectation(policy, hostvars if hostvars is not None else scenario_hostvars(scenario)).table(probes)
