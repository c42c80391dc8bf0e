# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The planning step's inputs: the request, the policy it names, the effective options, the guards.

One place for what the enforce and audit roles used to compute each in their own YAML: the policy
inline or from a file (a scenario file's ``policy:`` key), the implicit allowances merged over their
defaults and the policy's own ``options:``, the compile options a role variable sets (a variable left
empty is not set), the run options of the ``allowlist`` module, the refusals (filters that match
nothing, partly reachable services, a Kubernetes inventory that came back empty) decided on the
findings' codes, and the controller's address as the hosts reported it.
"""

from __future__ import annotations

import dataclasses
import glob
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Optional

import yaml
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.codes import PARTIAL_SERVICE, UNMATCHED_FILTER
from ansible_collections.zerotrust.workloads.plugins.module_utils._policy.options import IMPLICIT
from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning.errors import PlanningError

EMPTY_POLICY: Mapping[str, Any] = {"filters": {}, "policies": {"absolute": [], "default": [], "catch_all": "allow"}}
"""What ``state: absent`` compiles: its plan lists every enforcement point, which is where our objects may be."""
COMPILE_OPTIONS = ("scope", "dns_service", "upstream_dns", "api_access", "overlay")
"""Compile options taken as given when set; left empty, the policy's own ``options:`` (or the default) apply."""
RUN_OPTIONS = ("backend", "default_action", "log_denied", "persist", "boot_policy", "persist_dir", "unit_dir")
"""``allowlist`` module options the step passes on to every host as given."""
SSH_MARK = "zerotrust-ssh-connection="
"""The prefix of the line the enforce role's raw task prints (a login shell may print other lines)."""
KUBERNETES_PLUGIN = "zerotrust.workloads.kubernetes"
KUBERNETES_FILE = re.compile(r"[.](kubernetes|k8s)[.]ya?ml$")
KUBERNETES_PATTERNS = ("*.kubernetes.yml", "*.kubernetes.yaml", "*.k8s.yml", "*.k8s.yaml")


@dataclasses.dataclass(frozen=True)
class Request:
    """The planning step's arguments, as the action validated them (see plugins/modules/plan.py)."""

    state: str = "present"
    policy: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    policy_file: str = ""
    implicit: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    management_addresses: Sequence[str] = ()
    dns_service: str = ""
    upstream_dns: Sequence[str] = ()
    api_access: str = ""
    overlay: Any = ""
    scope: str = ""
    discover_management: bool = True
    allow_unmatched_filters: bool = False
    fail_on_partial_services: bool = False
    allow_empty_kubernetes: bool = False
    run: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    variables_prefix: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> Request:
        """From the action's arguments (or a stored request): unknown keys are ignored, ``None`` is left out.

        ``run`` may hold only the allowlist options of :data:`RUN_OPTIONS`; anything else is an error naming it.
        """
        fields = {field.name for field in dataclasses.fields(cls)} - {"run"}
        given = {key: value for key, value in args.items() if key in fields and value is not None}
        run = args.get("run") or {}
        if not isinstance(run, Mapping):
            raise PlanningError(f"run must be a mapping of allowlist options ({', '.join(RUN_OPTIONS)})")
        unknown = sorted(str(key) for key in run if key not in RUN_OPTIONS)
        if unknown:
            raise PlanningError(
                f"run: {', '.join(unknown)} is not an allowlist option the plan can pass on; expected {', '.join(RUN_OPTIONS)}"
            )
        return cls(**given, run={key: value for key, value in run.items() if value is not None})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the plan directory (the second pass reads it back with :meth:`from_args`)."""
        return {
            field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)
        }

    def name(self, option: str) -> str:
        """How messages name an option: the role's variable (``enforce_scope``) or the step's own (``scope``)."""
        return f"{self.variables_prefix}{option}"


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


@dataclasses.dataclass(frozen=True)
class Effective:
    """What the request means once the policy is loaded: what to compile, and whether to ask the hosts first."""

    implicit: dict[str, Any]
    management_addresses: list[Any]
    discover: bool
    compile_options: dict[str, Any]


def _set(value: Any) -> bool:
    """A role variable counts as set unless it is empty (``""``, ``[]``, ``{}``, null)."""
    return value is not None and value not in ("", [], (), {})


def load_policy(request: Request) -> Any:
    """The policy to compile: inline, from the file, or the empty one ``state: absent`` removes with."""
    if request.state == "absent":
        return dict(EMPTY_POLICY)
    inline, from_file = _set(request.policy), _set(request.policy_file)
    if inline == from_file:
        raise PlanningError(
            f"Give the policy either inline ({request.name('policy')}) or as a file ({request.name('policy_file')}), "
            "not both and not neither."
        )
    if inline:
        return request.policy
    document = read_policy_file(request.policy_file)
    if isinstance(document, Mapping) and "policy" in document and "policies" not in document:
        return document["policy"]  # a scenario file: topology, policy, expect
    return document


def read_policy_file(path: str) -> Any:
    """A YAML (or JSON) file; a relative path is relative to the directory ansible-playbook runs in."""
    real = os.path.realpath(path)
    try:
        with open(real, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise PlanningError(f"cannot read the policy file {path}: {error.strerror or error}") from error
    try:
        return load_yaml(text)
    except yaml.YAMLError as error:
        raise PlanningError(f"the policy file {path} is not valid YAML or JSON: {error}") from error


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with libyaml's parser when PyYAML has it (a 500 KB scenario file: 0.4 s instead of 2 s).

    A document libyaml refuses is parsed again by the pure-Python loader, whose error quotes the offending line.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)  # noqa: S506 - CSafeLoader is the safe loader, in C
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def effective(request: Request, policy: Any, discovered: Optional[Sequence[str]] = None) -> Effective:
    """The effective options: the role's, then the policy's own ``options:``, then the defaults.

    ``implicit`` merges switch by switch (defaults, the policy's, the request's); the management
    addresses are the request's, else the policy's, else (``discovered``, from the hosts) the
    controller's. Values are passed on unchecked: the compiler validates them with its own messages.
    """
    inside = policy.get("options") if isinstance(policy, Mapping) else None
    inside = inside if isinstance(inside, Mapping) else {}
    implicit: dict[str, Any] = dict.fromkeys(IMPLICIT, True)
    if isinstance(inside.get("implicit"), Mapping):
        implicit.update(inside["implicit"])
    implicit.update(request.implicit or {})
    given = list(request.management_addresses or [])
    from_policy = inside.get("management_addresses") or []
    stated = given or ([from_policy] if isinstance(from_policy, str) else list(from_policy))
    discover = (
        request.state == "present" and request.discover_management and not stated and implicit.get("management_ssh") is True
    )
    addresses = list(discovered) if discovered is not None and discover else stated
    options: dict[str, Any] = {"implicit": implicit, "management_addresses": addresses}
    for key in COMPILE_OPTIONS:
        value = getattr(request, key)
        if _set(value):
            options[key] = _plain(value)
    return Effective(implicit=implicit, management_addresses=addresses, discover=discover, compile_options=options)


def run_options(request: Request, management_addresses: Sequence[str], keep_ssh: bool) -> dict[str, Any]:
    """The ``allowlist`` module options every host of the plan gets (besides its own ruleset, pods and sets)."""
    run = {key: value for key, value in request.run.items() if key in RUN_OPTIONS and value is not None}
    return {"state": request.state, **run, "management_addresses": list(management_addresses), "keep_ssh": keep_ssh}


# -- guards ------------------------------------------------------------------------------------


def check_findings(request: Request, findings: Sequence[Mapping[str, Any]]) -> None:
    """Refuse, by their codes, the findings the request does not accept (nothing to refuse for ``absent``)."""
    if request.state != "present":
        return
    unmatched = [str(finding.get("text")) for finding in findings if finding.get("code") == UNMATCHED_FILTER]
    if unmatched and not request.allow_unmatched_filters:
        raise PlanningError(
            f"The inventory lacks workloads the policy needs: {'; '.join(unmatched)}. Check that every source the policy "
            "refers to is in the inventory (for example the Kubernetes inventory source for filters on pod_name, "
            "service_name or namespace) and that the filters are spelled right; "
            f"set {request.name('allow_unmatched_filters')}=true to enforce such a policy anyway."
        )
    partial = [str(finding.get("text")) for finding in findings if finding.get("code") == PARTIAL_SERVICE]
    if partial and request.fail_on_partial_services:
        raise PlanningError(
            f"{len(partial)} consumer x service pair(s) are only partly reachable and "
            f"{request.name('fail_on_partial_services')} is true, so no host was changed: {' '.join(partial)}"
        )


def kubernetes_sources(sources: Iterable[str]) -> list[str]:
    """The inventory sources (files, or the files of a directory source) whose plugin is ours."""
    files: list[str] = []
    for source in sources:
        if os.path.isfile(source):
            files.append(source)
        elif os.path.isdir(source):
            for pattern in KUBERNETES_PATTERNS:
                files.extend(sorted(glob.glob(os.path.join(glob.escape(source), pattern))))
    ours = []
    for path in files:
        if not KUBERNETES_FILE.search(path):
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                document = load_yaml(handle.read())
        except (OSError, yaml.YAMLError):
            continue  # the inventory's own parse reported it; here it only cannot count as ours
        if isinstance(document, Mapping) and document.get("plugin") == KUBERNETES_PLUGIN:
            ours.append(path)
    return ours


def kubernetes_hosts(groups: Mapping[str, Sequence[str]], kind_of: Callable[[str], Any]) -> list[str]:
    """Hosts read from a cluster: pods, services, and the hosts of ``k8s_nodes`` that are nodes (not only SSH entries)."""
    found = [*groups.get("k8s_pods", ()), *groups.get("k8s_services", ())]
    found.extend(host for host in groups.get("k8s_nodes", ()) if kind_of(host) == "node")
    return found


def check_kubernetes_inventory(request: Request, sources: Sequence[str], groups: Mapping[str, Sequence[str]], hosts: Sequence[str]) -> None:
    """Refuse an inventory that configures Kubernetes but holds no host read from a cluster.

    ansible-core runs on when an inventory source fails (unless inventory_any_unparsed_is_failed is
    set): without this check a cluster whose API was down would be enforced as if it had no pods, its
    nodes taken for VMs. ``sources`` are :func:`kubernetes_sources`, ``hosts`` :func:`kubernetes_hosts`.
    """
    configured = [*sources, *(name for name, members in groups.items() if members and name.startswith("k8s_"))]
    if request.allow_empty_kubernetes or hosts or not configured:
        return
    raise PlanningError(
        f"The inventory configures Kubernetes ({', '.join(configured)}) but holds no Kubernetes host: no pod, no service "
        "and no node read from a cluster. The Kubernetes inventory source most likely failed (see the inventory warnings "
        "above); set inventory_any_unparsed_is_failed = True (ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED) so that such a "
        "failure stops the run at once. Enforcing now would treat the nodes as VMs and the pods as absent. "
        f"Set {request.name('allow_empty_kubernetes')}=true if the cluster is really empty."
    )


# -- the controller's address ------------------------------------------------------------------


def client_address(text: Any) -> Optional[str]:
    """The client address of an ``SSH_CONNECTION`` value (``client port server port``), if it is an IP address."""
    if not isinstance(text, str) or not text.split():
        return None
    first = text.split()[0]
    try:
        return str(ipaddress.ip_address(first))
    except ValueError:
        return None


def reported_addresses(env_ssh_connection: Any, registered: Any) -> list[str]:
    """What one host reported: its facts' ``SSH_CONNECTION``, and a registered result of the raw task (the
    marked line of its ``stdout_lines``) or of the flows module (``ssh_client``)."""
    texts: list[Any] = [env_ssh_connection]
    if isinstance(registered, Mapping):
        client = registered.get("ssh_client")
        if isinstance(client, str):
            texts.append(client)
        for line in registered.get("stdout_lines") or ():
            if isinstance(line, str) and line.strip().startswith(SSH_MARK):
                texts.append(line.strip()[len(SSH_MARK) :])
    return [address for address in (client_address(text) for text in texts) if address is not None]


def discovered_addresses(reports: Iterable[tuple[Any, Any]]) -> list[str]:
    """The union of :func:`reported_addresses` over the hosts, sorted: the management addresses everywhere."""
    return sorted({address for env, registered in reports for address in reported_addresses(env, registered)})


__all__ = [
    "COMPILE_OPTIONS",
    "EMPTY_POLICY",
    "RUN_OPTIONS",
    "SSH_MARK",
    "Effective",
    "Request",
    "check_findings",
    "check_kubernetes_inventory",
    "client_address",
    "discovered_addresses",
    "effective",
    "kubernetes_hosts",
    "kubernetes_sources",
    "load_policy",
    "load_yaml",
    "read_policy_file",
    "reported_addresses",
    "run_options",
]
