#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the connections a host and its pods carry (conntrack and the audit observer)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: flows
short_description: Read the connections a host and its pods' network namespaces carry
description:
  - Reads the conntrack table of the host (VM or node) and of each pod's network namespace on a node, and the
    sets of the audit observer when it is installed, and returns the connections as records for the
    C(zerotrust.workloads.audit) role to classify against the policy.
  - A network namespace only tracks connections once something in it uses conntrack. Nodes do (kube-proxy's nat
    rules), and every namespace does once our allowlist is enforced (its C(established) rule). Before enforcement
    VMs and pods track nothing, so O(state=observe) installs the observer, the nftables table C(inet zt_audit),
    passive base chains (priority -175, policy accept, no verdicts) that make the namespace track connections and
    remember for O(observer_timeout) every connection attempt, every answered connection and, on nodes, the
    translated leg of every NAT-ed connection. Attempts that a firewall drops later are remembered too, which is
    how rejected flows are seen after enforcement.
  - O(state=absent) removes the observer table and nothing else.
version_added: 0.1.0
author: zerotrust.workloads maintainers (@zerotrust)
options:
  state:
    description:
      - C(collect) only reads. C(observe) installs the observer where it is missing. C(absent) removes it.
    type: str
    choices: [collect, observe, absent]
    default: collect
  plan:
    description:
      - The registered result of M(zerotrust.workloads.plan); the action in front of this module fills O(pods) with
        this host's pods from it (unless O(pods) is given).
    type: dict
  pods:
    description:
      - Pods on this node in the compiled plan's form (C(host), C(namespace), C(name), C(uid), C(ips), C(netns)).
      - A pod's namespace is found like the allowlist module finds it (the C(netns) hint, the CRI, then a search
        for one of its C(ips)); a pod that is not found is reported with the reason and the others are read.
    type: list
    elements: dict
    default: []
  host:
    description: Also read the host's own namespace.
    type: bool
    default: true
  host_label:
    description: How records from the host's namespace are labelled (the role passes the inventory hostname).
    type: str
    default: host
  netns:
    description: Read this named network namespace as the host namespace instead of the root one (tests).
    type: str
  observer_timeout:
    description: How long the observer remembers a connection (nft time, such as C(1h) or C(30m)).
    type: str
    default: 1h
  max_age:
    description:
      - Where the observer runs, only connections it first saw at most this many seconds ago (an audit window, for
        example the time since enforcement). C(0) takes everything it remembers. Conntrack entries carry no age and
        are taken whole where no observer runs.
    type: int
    default: 0
notes:
  - Supports check mode (O(state=observe) and O(state=absent) then only report what they would change).
  - Needs C(nft) for the observer and C(conntrack) or C(/proc/net/nf_conntrack) for the conntrack table.
"""

EXAMPLES = r"""
- name: Start observing before traffic is generated
  zerotrust.workloads.flows:
    state: observe
    pods: "{{ plan.hosts[inventory_hostname].pods }}"

- name: Read the flows
  zerotrust.workloads.flows:
    pods: "{{ plan.hosts[inventory_hostname].pods }}"
    host_label: "{{ inventory_hostname }}"
  register: flows
"""

RETURN = r"""
namespaces:
  description: One entry per namespace read.
  type: list
  elements: dict
  returned: always
  contains:
    name:
      description: The host label or the pod's inventory hostname.
      type: str
    namespace:
      description: The network namespace read, C(host) or a name or a path; null when the pod was not found.
      type: str
    observer:
      description: The observer table is installed here.
      type: bool
    records:
      description:
        - Connections, each a list of protocol, source, source port, destination, destination port, the reply's
          four (null without a reply tuple) and whether an answer was seen.
      type: list
      elements: list
    legs:
      description: Translated legs the observer saw, each protocol, source, source port, destination, destination port.
      type: list
      elements: list
    error:
      description: Why this namespace could not be read (the others still are).
      type: str
ssh_client:
  description: The SSH client address of this connection (the controller as the host sees it), or empty.
  type: str
  returned: always
changed:
  description: The observer was (or would be) installed or removed somewhere.
  type: bool
  returned: always
"""

# Ansible modules keep their documentation first; the imports follow it.
import os  # noqa: E402
from typing import Any, Optional  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.errors import AuditError  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._audit.observation import (  # noqa: E402
    OBSERVER_TABLE,
    merge_sources,
    observer_script,
    parse_conntrack,
    parse_observer,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import NamespaceNotFoundError, NetfilterError  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.netns import AddressIndex, resolve_pod_namespace  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import Namespace, Runner, tool_exists  # noqa: E402


def read_namespace(runner: Runner, label: str, state: str, *, timeout: str, check_mode: bool, max_age: int = 0) -> dict[str, Any]:
    """Install/remove the observer as asked, then read conntrack and the observer's sets."""
    listed = runner.run(("nft", "-j", "list", "table", "inet", OBSERVER_TABLE), check=False) if tool_exists("nft") else None
    present = listed is not None and listed.returncode == 0
    changed = False
    if state == "observe" and not present:
        if listed is None:
            raise AuditError("nft is not installed: the observer needs nftables (apt install nftables)")
        changed = True
        if not check_mode:
            runner.run(("nft", "-f", "-"), stdin=observer_script(timeout), write=True)
    elif state == "absent" and present:
        changed = True
        if not check_mode:
            runner.run(("nft", "delete", "table", "inet", OBSERVER_TABLE), write=True)
    entry: dict[str, Any] = {"name": label, "namespace": runner.namespace.label, "changed": changed, "records": [], "legs": [], "error": ""}
    if state != "collect":
        entry["observer"] = (state == "observe") or (present and check_mode)
        return entry
    entry["observer"] = present
    sets = parse_observer(listed.stdout if present and listed is not None else "", max_age)
    conntrack = read_conntrack(runner)
    records, legs = merge_sources(parse_conntrack(conntrack, label), sets, label, observed=present)
    entry["records"] = [record.to_list() for record in records]
    entry["legs"] = [leg.to_list() for leg in legs]
    return entry


def read_conntrack(runner: Runner) -> str:
    """The namespace's conntrack table: ``conntrack -L``, else ``/proc/net/nf_conntrack``, else empty."""
    if tool_exists("conntrack"):
        result = runner.run(("conntrack", "-L", "-o", "extended"), check=False)
        if result.returncode == 0:
            return result.stdout
    result = runner.run(("cat", "/proc/net/nf_conntrack"), check=False)
    return result.stdout if result.returncode == 0 else ""


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["collect", "observe", "absent"], "default": "collect"},
            "plan": {"type": "dict"},
            "pods": {"type": "list", "elements": "dict", "default": []},
            "host": {"type": "bool", "default": True},
            "host_label": {"type": "str", "default": "host"},
            "netns": {"type": "str"},
            "observer_timeout": {"type": "str", "default": "1h"},
            "max_age": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["plan"] is not None:
        module.fail_json(msg="plan is read on the controller by the flows action, which this run bypassed: call zerotrust.workloads.flows")
    if os.geteuid() != 0:
        module.fail_json(msg="reading conntrack and network namespaces needs root: use become: true")
    targets: list[tuple[str, Optional[Namespace], str]] = []
    if params["host"]:
        targets.append((params["host_label"], Namespace(name=params["netns"]) if params["netns"] else Namespace(), ""))
    # One index for all the pods: each named namespace is read once, not once per pod (200 pods on a node).
    index = AddressIndex()
    for pod in params["pods"]:
        label = str(pod.get("host") or f"{pod.get('namespace')}/{pod.get('name')}")
        try:
            targets.append((label, resolve_pod_namespace(pod, index=index), ""))
        except NamespaceNotFoundError as error:
            targets.append((label, None, str(error)))
        except NetfilterError as error:
            # Not this pod's problem (the module could not return to its own namespace): nothing after
            # it would read the right one, so the run stops here.
            module.fail_json(msg=str(error), changed=False)
    namespaces: list[dict[str, Any]] = []
    for label, namespace, problem in targets:
        if namespace is None:
            namespaces.append({"name": label, "namespace": None, "observer": False, "records": [], "legs": [], "error": problem})
            continue
        try:
            runner = Runner(namespace)
            state, timeout, max_age = params["state"], params["observer_timeout"], params["max_age"]
            entry = read_namespace(runner, label, state, timeout=timeout, check_mode=module.check_mode, max_age=max_age)
            namespaces.append(entry)
        except (AuditError, NetfilterError) as error:
            namespaces.append(
                {"name": label, "namespace": namespace.label, "observer": False, "records": [], "legs": [], "error": str(error)}
            )
    changed = any(entry.pop("changed", False) for entry in namespaces)
    failed = [entry for entry in namespaces if entry["error"] and entry["namespace"] is not None and params["state"] != "collect"]
    if failed:
        module.fail_json(msg="; ".join(f"{entry['name']}: {entry['error']}" for entry in failed), namespaces=namespaces, changed=changed)
    # The controller's address as this host sees it: the audit compiles with it, as the enforce role does.
    ssh_client = (os.environ.get("SSH_CONNECTION") or "").split(" ", 1)[0]
    module.exit_json(changed=changed, namespaces=namespaces, ssh_client=ssh_client)


if __name__ == "__main__":
    main()
