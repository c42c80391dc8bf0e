#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make a compiled ruleset true on a host and in its pods' network namespaces."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: allowlist
short_description: Apply compiled allowlist rulesets to a host and its pods' network namespaces
description:
  - Makes the compiled ruleset of a host (VM or node) true in its root network namespace, and the rulesets of the
    pods on a node true inside each pod's network namespace, in one module run.
  - Owns only its objects (iptables C(ZT-*) chains, their jump rules and C(zt-*) ipsets, or the nftables table
    C(inet zerotrust)). Foreign rules (kube-proxy, the CNI, Docker) are never flushed, reordered or rewritten.
  - Applies atomically per namespace, is idempotent (rules carry a hash in their comment; a no-op run only reads),
    reports and repairs drift in its own objects, and never locks the controller out of SSH.
  - With the iptables-nft and nftables backends, a namespace is first asked over netfilter netlink which nf_tables
    tables and ipsets it holds (by name, no command started); one that holds no table or set where ours could be
    (a new pod's) is planned from nothing without the backend's read commands. With iptables-nft, the kernel is also
    asked whether a namespace holds exactly the desired state (our chains' rules by their comments, our jumps, our
    ipsets in full); where it does, no save runs. Every write is still read back, over netlink where it holds exactly.
  - The iptables backends write their ipsets over netlink (the messages C(ipset restore) would send, built once per
    script for all the pods of a node), after a first C(ipset restore) of the run has shown the set revision this
    host's C(ipset) creates; where netlink cannot be used, with C(ipset restore).
version_added: 0.1.0
author: zerotrust.workloads contributors (@zerotrust)
options:
  plan:
    description:
      - The registered result of M(zerotrust.workloads.plan). The action in front of this module then reads this host's
        part of the plan on the controller (its O(ruleset), O(pods) and shared sets) and the plan's run options
        (O(state), O(backend), O(default_action), O(log_denied), O(management_addresses), O(keep_ssh), the persist
        options); an option the task gives wins. Only this host's part is sent to it.
      - Without it, give O(ruleset) and O(pods) yourself.
    type: dict
  plan_json:
    description:
      - "This host's part of a compiled plan as one JSON text: an object with any of C(ruleset), C(pods) and C(sets), each in
        the form of the option of the same name. The module parses it once; large parts (hundreds of pods, thousands of
        set members) travel and start much faster this way than as nested options, which Ansible checks and copies value
        by value."
      - The action in front of this module fills it from O(plan); give it yourself to hand over a part you compiled
        elsewhere (C(plan[inventory_hostname] | to_json)).
      - A key it holds takes the place of the option of the same name; giving both (a O(ruleset), non-empty O(pods) or
        O(sets)) fails the run before anything is read.
    type: str
  skip_unchanged_pods:
    description:
      - With O(plan), the name of the variable this host's check-mode result of the same plan was registered in
        (C(enforce_preview) in the C(zerotrust.workloads.enforce) role). The action in front of this module then leaves out
        the pods that result read and found unchanged, so only the pods that need a write are read and compared again.
        The host's own ruleset is always applied; pods the preview skipped or failed on run again.
      - Only as fresh as that preview. A pod whose rules are changed by hand between the preview and this run is repaired
        on the next run.
      - The pods that result found holding nothing at all (no rule or set of ours, no other rule in the chains ours go
        into) are passed on in O(pristine_pods).
    type: str
  pristine_pods:
    description:
      - Pods (their C(target), as RV(results[].target) names them) that a check-mode run found holding nothing at all.
        Their rules are written without reading the namespace first, in writes that fail, before changing anything there,
        when a chain or set of ours exists after all; such a pod is then read and applied as any other. The read after
        the write that checks every namespace still compares the whole namespace with the ruleset.
      - Set by the action in front of this module from O(skip_unchanged_pods); give it yourself only from such a result.
      - Ignored in check mode and by the nftables backend, which look first (see the description).
    type: list
    elements: str
    default: []
  ruleset:
    description:
      - The host's own ruleset in the dictionary form of the ruleset model (the compiled plan's C(ruleset)).
      - Checked whole before anything is written; an error names the chain, rule or address set. Chain names are
        1-16 ASCII letters, digits and C(_) starting with a letter, and no two chain or set names may become the
        same iptables, ipset or nft name (C(ingress) and C(INGRESS) would both be C(ZT-INGRESS)).
    type: dict
  pods:
    description:
      - Pods on this node, each with its ruleset, in the compiled plan's form.
      - A pod's namespace is found from C(netns) (a name under /run/netns, a path or a PID), then the CRI
        (C(crictl)), then a search of the named namespaces for one of its C(ips), those linked to this host (with a
        namespace id here, as a pod's veth peer has) first. A pod that is not found is skipped with the reason; the
        others are applied.
      - A C(netns) hint is used only when that namespace holds one of the pod's C(ips); a hint naming another
        namespace, a pod without C(ips), or C(ips) that are not all IP addresses skip the pod with the reason.
    type: list
    elements: dict
    default: []
  sets:
    description:
      - "The host's shared address sets: the compiled plan's C(sets) of this host, C({NAME: {members: [...], comment: ...}})."
      - "A set of O(ruleset) or of a pod's ruleset written as C({name: NAME, shared: true}) takes its members from here,
        so a set that many of a node's pods use travels once. Every namespace still gets its own ipset or nft set."
      - Read and checked before anything else; a ruleset that names a shared set missing here fails the run, naming the
        ruleset and the set, and nothing is changed. Sets written whole inside a ruleset need nothing here.
    type: dict
    default: {}
  state:
    description: C(present) applies the rulesets; C(absent) removes everything this module owns in the targets.
    type: str
    choices: [present, absent]
    default: present
  backend:
    description:
      - The firewall to write. C(auto) follows kube-proxy (iptables-legacy, iptables-nft or nftables) and otherwise
        the host's default C(iptables) alternative.
    type: str
    choices: [auto, iptables, iptables-legacy, iptables-nft, nftables]
    default: auto
  default_action:
    description: How an abstract C(deny) is rendered. C(reject) answers tcp with a reset and others with ICMP port unreachable.
    type: str
    choices: [drop, reject]
    default: drop
  log_denied:
    description: Log packets a chain's catch-all denies, rate-limited by O(log_rate).
    type: bool
    default: false
  log_rate:
    description: Limit of the denied-packet log, C(N/second|minute|hour|day).
    type: str
    default: 5/minute
  management_addresses:
    description:
      - Addresses or networks always allowed to tcp/22 on the host target (never lock out).
      - The host target's egress also accepts, first, what its SSH server sends to them (tcp source port 22), so
        the SSH session the module runs over survives even where conntrack never saw it start.
    type: list
    elements: str
    default: []
  keep_ssh:
    description: Also allow tcp/22 from the SSH client this module runs under (from C(SSH_CONNECTION)), and from O(management_addresses).
    type: bool
    default: true
  rollback_timeout:
    description:
      - Seconds after which the previous rules come back by themselves unless a later run confirms with O(confirm).
        C(0) disables the watchdog.
    type: int
    default: 0
  confirm:
    description: The C(rollback.token) of a previous run; confirms it and cancels its rollback.
    type: str
  report_changes:
    description:
      - In check mode and in diff mode, return each namespace's structured plan, RV(results[].changes), with every rule
        and set it gains, loses and keeps.
      - The enforce role's preview turns it off unless the run shows diffs (C(--diff)). Its change guard and summary
        need only the counts, and at hundreds of pods per node the rule lists are most of the result.
    type: bool
    default: true
  read_cache:
    description:
      - With the iptables-nft and nftables backends, keep what the nf_tables read commands (C(iptables-nft-save),
        C(ip6tables-nft-save), C(nft list table)) printed in each namespace, in a file per host under
        C(/run/zerotrust-workloads), and print it again instead of running them while the kernel's nf_tables generation
        of that namespace (its count of committed changes, by any tool) has not moved. The rules are still compared in
        full; a change by hand moves the generation and is read and found as before. ipsets have no generation; the iptables
        backends list them over netlink on every read (RV(results[].commands)).
      - Written in check mode too, as the per-namespace locks beside it are; it changes nothing on the host.
      - Turn it off to make every read run its commands.
    type: bool
    default: true
  netns:
    description:
      - Apply the host ruleset inside this named network namespace instead of the root one (tests, benchmarks).
      - The persisted unit then restores into that namespace (C(NetworkNamespacePath=)).
    type: str
  persist:
    description:
      - After a successful apply, write the host target's rules to O(persist_dir) and install the systemd unit
        C(zerotrust-workloads.service) in O(unit_dir) that restores them at boot, C(Before=network-pre.target),
        sets before rules. Pods are not persisted (a rebooted node's pods come back in new namespaces; the
        event source or the next run applies theirs).
      - Unset, it persists where systemd runs (C(/run/systemd/system) is a directory) and otherwise writes
        nothing and warns. V(true) writes the files and the unit even without systemd (another init system
        or an image loads them); V(false) writes nothing and does not warn.
      - With O(state=absent) the files, the unit and its C(multi-user.target.wants) link are removed whatever
        this option says.
    type: bool
  boot_policy:
    description:
      - What the host enforces from boot until the next run. V(restore) loads the last applied rules.
        V(closed) loads a ruleset that passes only loopback, established traffic and SSH from
        O(management_addresses) and the controller (O(keep_ssh)); it needs at least one such address.
    type: str
    choices: [restore, closed]
    default: restore
  persist_dir:
    description:
      - Directory of the persisted restore files (mode 0700, files 0600, written atomically).
      - An absolute path of letters, digits and C(. _ / @ + -) (it goes into the unit's C(ExecStart) lines).
    type: path
    default: /etc/zerotrust-workloads
  unit_dir:
    description: Directory the systemd unit is installed in (and its C(multi-user.target.wants) link).
    type: path
    default: /etc/systemd/system
notes:
  - Supports check mode and diff mode (before and after of our own rules, per namespace, and of every persisted
    file and the unit).
  - Runs as root on the managed host and needs iptables and ipset, or nft.
"""

EXAMPLES = r"""
- name: Apply the compiled plan of this host
  zerotrust.workloads.allowlist:
    ruleset: "{{ plan[inventory_hostname].ruleset }}"
    pods: "{{ plan[inventory_hostname].pods }}"
    sets: "{{ plan[inventory_hostname].sets }}"
    rollback_timeout: 60
  register: applied

- name: Reconnect over a new SSH connection
  ansible.builtin.meta: reset_connection

- name: Confirm the new rules (cancels the rollback)
  zerotrust.workloads.allowlist:
    confirm: "{{ applied.rollback.token }}"
  when: applied.rollback is defined

- name: Boot closed (SSH from the management network only) until the next run
  zerotrust.workloads.allowlist:
    ruleset: "{{ plan[inventory_hostname].ruleset }}"
    sets: "{{ plan[inventory_hostname].sets }}"
    management_addresses: [192.0.2.0/24]
    boot_policy: closed

- name: Remove everything the module owns on this host (rules, persisted files, unit)
  zerotrust.workloads.allowlist:
    state: absent
"""

RETURN = r"""
changed:
  description: Whether any namespace was (or in check mode would be) written.
  type: bool
  returned: always
backend:
  description: The backend used (C(auto) resolved).
  type: str
  returned: when a target was processed
  sample: iptables-nft
results:
  description: One entry per target namespace.
  type: list
  elements: dict
  returned: always
  contains:
    target: {description: C(host) or the pod's inventory hostname., type: str}
    namespace: {description: "The network namespace (C(host), a name or a path); null when skipped.", type: str}
    changed: {description: This namespace was (or would be) written., type: bool}
    rules: {description: Model rules applied here., type: int}
    set_members: {description: Addresses over all sets., type: int}
    rules_added: {description: Rules this run writes (or would write) that were not in place., type: int}
    rules_removed: {description: Rules in place that this run removes (or would remove)., type: int}
    set_members_added: {description: Set members added (or that would be)., type: int}
    set_members_removed: {description: Set members removed (or that would be)., type: int}
    in_place: {description: Rules and set members of ours in place before this run., type: int}
    drift: {description: Hand-made changes to our objects that this run repaired., type: list, elements: str}
    changes:
      description:
        - "The structured plan of this namespace: what the backend found by comparing hashes, as data (the counts above
          are derived from it). Rules are matched per chain by hash (a rule that is not ours, by its text)."
        - "C(rules.added): rules of the desired state that are not live; C(rules.removed): live rules the desired state
          does not hold (ours or not); C(rules.kept): live rules that stay. Each is C(chain) (C(ingress) for nftables,
          C(IPv4 filter ZT-INGRESS) or C(IPv4 filter INPUT) for our jump with iptables), C(hash) (empty for a rule that is
          not ours), C(origin) (the policy the rule comes from, as its comment says), C(position) (0-based place in the
          chain: live for kept and removed rules, desired for added ones) and, for a rule that is not ours, C(text)."
        - "C(sets): per set as the backend names it (C(zt-abc-4), C(zt-abc_4)), the number of members C(added),
          C(removed) and C(kept)."
      type: dict
      returned: in check mode and in diff mode, unless O(report_changes) is off
      sample:
        rules:
          added: [{chain: ingress, hash: 6ae486570e21694e, origin: "default[0] haproxy->wordpress tcp/80", position: 5}]
          removed: []
          kept: [{chain: ingress, hash: b8afe45bde5a2e05, origin: "implicit:established", position: 0}]
        sets: [{name: zt-e2f5dd61b2_4, added: 0, removed: 0, kept: 3}]
    skipped: {description: The pod was not found., type: bool}
    reason: {description: Why it was skipped., type: str}
    diff: {description: "In diff mode, C(before) and C(after) text of our objects.", type: dict}
    commands: {description: "Number of reading and writing commands run (a no-op run has C(writes=0); an ipset script
        written over netlink counts as a write), of the read commands answered from O(read_cache) instead
        (C(cached_reads)), and of those answered by the kernel over netlink (C(netlink_reads): the iptables backends'
        C(ipset save), iptables-nft's look for exactly the desired state).", type: dict}
skipped_pods:
  description: Pods that were not found, with the reason (Ansible reserves a top-level C(skipped)).
  type: list
  elements: dict
  returned: always
rollback:
  description: The pending rollback (C(token), C(timeout), C(snapshot) path) when O(rollback_timeout) is set and something changed.
  type: dict
  returned: when a rollback watchdog was started
confirmed:
  description: O(confirm) cancelled the pending rollback.
  type: bool
  returned: when O(confirm) is given
persist:
  description:
    - The boot restore of the host target. C(changed), C(files) (the paths written or removed), C(boot_policy),
      C(unit) (its path), C(systemd) (whether systemd runs here), or C(skipped) with the reason nothing was done.
  type: dict
  returned: when the host target was processed
  sample: {changed: true, files: [/etc/zerotrust-workloads/iptables-v4.restore], boot_policy: restore,
           unit: /etc/systemd/system/zerotrust-workloads.service, systemd: true}
rolled_back:
  description: A rollback watchdog restored previous rules since the last run (details in C(rollbacks)).
  type: bool
  returned: always
rollbacks:
  description: The rollbacks behind C(rolled_back) (C(token), C(restored_at), C(errors)), each reported once.
  type: list
  elements: dict
  returned: when rolled_back
"""

# Ansible modules keep their documentation first; the imports follow it.
import json  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.apply import (  # noqa: E402
    BACKEND_CHOICES,
    RunOptions,
    run,
    shared_sets,
)
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.backend import Options  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.errors import NetfilterError  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.netns import namespace_from_hint  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.persist import (  # noqa: E402
    PERSIST_DIR,
    UNIT_DIR,
    PersistOptions,
    netns_file,
)

PART_KEYS = {"ruleset": dict, "pods": list, "sets": dict}
"""What ``plan_json`` may hold, and the JSON type of each."""


def part_from_json(text: str, params: dict[str, Any]) -> dict[str, Any]:
    """The options ``plan_json`` gives (``ruleset``, ``pods``, ``sets``), parsed once; ValueError says what is wrong.

    ``params`` are the other options: one given there too (not its default) is a conflict, not silently replaced.
    """
    try:
        part = json.loads(text)
    except ValueError as error:
        raise ValueError(f"plan_json is not JSON ({error}): pass the host's part of the plan as one JSON object") from None
    if not isinstance(part, dict):
        raise ValueError("plan_json must be a JSON object with ruleset, pods and sets (the host's part of the plan)")
    unknown = sorted(set(part) - set(PART_KEYS))
    if unknown:
        raise ValueError(f"plan_json has unknown keys: {', '.join(unknown)} (known: {', '.join(PART_KEYS)})")
    for key, kind in PART_KEYS.items():
        if key not in part:
            continue
        value = part[key]
        if key == "ruleset" and value is None:
            pass
        elif not isinstance(value, kind) or (key == "pods" and not all(isinstance(pod, dict) for pod in value)):
            wanted = {"ruleset": "an object (or null)", "pods": "a list of objects", "sets": "an object"}[key]
            raise ValueError(f"plan_json: {key} must be {wanted}, like the option {key}")
        if params.get(key):
            raise ValueError(f"{key} is given both as an option and in plan_json: give it in one place only")
    return part


def main() -> None:
    """Module entry point: validate arguments, run, report."""
    module = AnsibleModule(
        argument_spec={
            "plan": {"type": "dict"},
            "plan_json": {"type": "str", "no_log": False},
            "skip_unchanged_pods": {"type": "str"},
            "ruleset": {"type": "dict"},
            "pods": {"type": "list", "elements": "dict", "default": []},
            "sets": {"type": "dict", "default": {}},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "backend": {"type": "str", "choices": list(BACKEND_CHOICES), "default": "auto"},
            "default_action": {"type": "str", "choices": ["drop", "reject"], "default": "drop"},
            "log_denied": {"type": "bool", "default": False},
            "log_rate": {"type": "str", "default": "5/minute"},
            "management_addresses": {"type": "list", "elements": "str", "default": []},
            "keep_ssh": {"type": "bool", "default": True},
            "rollback_timeout": {"type": "int", "default": 0},
            "confirm": {"type": "str", "no_log": False},
            "report_changes": {"type": "bool", "default": True},
            "read_cache": {"type": "bool", "default": True},
            "pristine_pods": {"type": "list", "elements": "str", "default": []},
            "netns": {"type": "str"},
            "persist": {"type": "bool"},
            "boot_policy": {"type": "str", "choices": ["restore", "closed"], "default": "restore"},
            "persist_dir": {"type": "path", "default": PERSIST_DIR},
            "unit_dir": {"type": "path", "default": UNIT_DIR},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["plan"] is not None or params["skip_unchanged_pods"] is not None:
        module.fail_json(msg="plan and skip_unchanged_pods are read on the controller by the allowlist action, which this run bypassed")
    # Not written back into params: those are echoed as the invocation, and the part would travel back twice.
    part = {key: params[key] for key in PART_KEYS}
    if params["plan_json"] is not None:
        try:
            part.update(part_from_json(params["plan_json"], params))
        except ValueError as error:
            module.fail_json(msg=str(error))
    try:
        # First: a plan cut wrong (a ruleset naming a shared set this host was not given) fails before anything runs.
        sets = shared_sets(part["sets"], part["ruleset"], part["pods"]) if params["state"] == "present" else {}
    except NetfilterError as error:
        module.fail_json(msg=str(error))
    try:
        options = Options(default_action=params["default_action"], log_denied=params["log_denied"], log_rate=params["log_rate"])
    except ValueError as error:
        module.fail_json(msg=str(error))
    if params["rollback_timeout"] < 0:
        module.fail_json(msg="rollback_timeout must be 0 (off) or a number of seconds")
    try:
        host_namespace = namespace_from_hint(params["netns"]) if params["netns"] else None
        persist = PersistOptions(
            enabled=params["persist"],
            boot_policy=params["boot_policy"],
            persist_dir=params["persist_dir"],
            unit_dir=params["unit_dir"],
            netns_path=netns_file(host_namespace),
        )
    except NetfilterError as error:
        module.fail_json(msg=str(error))
    run_options = RunOptions(
        state=params["state"],
        backend=params["backend"],
        options=options,
        management_addresses=tuple(params["management_addresses"]),
        keep_ssh=params["keep_ssh"],
        rollback_timeout=params["rollback_timeout"],
        confirm=params["confirm"] or "",
        host_netns=params["netns"],
        ssh_from_ancestors=True,
        check_mode=module.check_mode,
        diff_mode=module._diff,
        report_changes=params["report_changes"],
        pristine_pods=frozenset(params["pristine_pods"]),
        read_cache=params["read_cache"],
        persist=persist,
        sets=sets,
    )
    try:
        result = run(part["ruleset"], part["pods"], run_options, dict(os.environ))
    except NetfilterError as error:
        module.fail_json(msg=str(error), changed=False)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
