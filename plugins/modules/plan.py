#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the plan action plugin (it runs on the controller only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: plan
short_description: Load, validate and compile a policy once on the controller, and keep the plan there
description:
  - The planning step of the C(zerotrust.workloads.enforce) and C(zerotrust.workloads.audit) roles. Runs on the
    controller only (use C(run_once)) and never connects to a host.
  - Loads the policy (inline or from a file), merges the compile options (the implicit allowances switch by switch
    over their defaults and the policy's own C(options), then the options given here; an option left empty is not
    set), validates the policy and the inventory, and compiles it over the hostvars of the whole inventory with the
    core of the C(zerotrust.workloads.compile) filter.
  - Refuses, before any host is contacted, a policy whose filters match no workload (unless
    O(allow_unmatched_filters)), partly reachable services when O(fail_on_partial_services) is set, and an inventory
    that configures Kubernetes but holds no host read from a cluster (unless O(allow_empty_kubernetes)). These
    decisions read the codes of the compiler's findings, never the wording of its warnings.
  - Keeps the whole plan in a private directory on the controller (mode 0700, one file per host) and returns only
    its outline. The C(zerotrust.workloads.allowlist) and C(zerotrust.workloads.flows) tasks given the outline as
    O(zerotrust.workloads.allowlist#module:plan) read the
    part of the host they run for; nothing large passes through facts.
  - When no management address is given (here or in the policy) and the management SSH allowance is on, the
    controller's address must first be read from the hosts; the first call then validates and compiles, returns
    RV(complete=false) and RV(discover=true), and a second call with O(resume) (after a task that reads
    C(SSH_CONNECTION) on the hosts, registered under O(discover_from)) compiles with that address and writes the
    plan. It compiles from what the first call read of each host (kept in the plan's directory), not from the
    inventory again, unless the policy's C(var.) queries read variables other than the compiler's own
    (C(workload), C(group_names), C(ansible_host), C(ansible_connection), C(zt_*)), which are never written down.
    With nothing to discover, O(resume) returns the plan as it is, so a role can always call it.
  - O(discard) removes the directory; the roles do so at their end, also when they fail.
version_added: 0.3.0
author: zerotrust.workloads contributors (@zerotrust)
options:
  state:
    description: V(present) compiles the policy; V(absent) compiles an empty one, whose plan lists every enforcement point.
    type: str
    choices: [present, absent]
    default: present
  policy:
    description: The policy inline (C(filters), C(policies) and optionally C(options)). Exactly one of this and O(policy_file).
    type: dict
    default: {}
  policy_file:
    description:
      - A YAML or JSON file holding the policy, read on the controller (relative to the directory C(ansible-playbook) runs
        in). A document with a top-level C(policy) key and no C(policies) (a lab scenario file) gives that C(policy).
    type: str
    default: ""
  implicit:
    description: Implicit allowances switched here (C(established), C(loopback), C(management_ssh), C(cluster), ...).
    type: dict
    default: {}
  management_addresses:
    description: Addresses or CIDRs SSH is always allowed from; empty means the policy's, else the controller's as the hosts see it.
    type: list
    elements: str
    default: []
  dns_service:
    description: The cluster DNS service as C(NAMESPACE/NAME); empty means the policy's or C(kube-system/kube-dns).
    type: str
    default: ""
  upstream_dns:
    description: Resolvers the cluster DNS pods forward to; empty means the policy's or none.
    type: list
    elements: str
    default: []
  api_access:
    description: Filter query of the pods the C(cluster) allowance lets reach C(default/kubernetes); empty means the policy's.
    type: str
    default: ""
  overlay:
    description: The overlay (C(auto), C(none), a name or a list of names); empty means the policy's or C(auto).
    type: raw
    default: ""
  scope:
    description: A filter query; only the VMs, nodes and pods it matches are enforcement points. Empty means everywhere.
    type: str
    default: ""
  discover_management:
    description: Read the controller's address from the hosts when no management address is given (see O(resume)).
    type: bool
    default: true
  allow_unmatched_filters:
    description: Accept a policy whose consumer or provider filter matches no workload (finding code C(unmatched_filter)).
    type: bool
    default: false
  fail_on_partial_services:
    description: Refuse partly reachable services (finding code C(partial_service)).
    type: bool
    default: false
  allow_empty_kubernetes:
    description: Accept an inventory that configures Kubernetes but holds no Kubernetes host.
    type: bool
    default: false
  run:
    description:
      - Options of the allowlist module every host of the plan gets (in RV(run)), among C(backend), C(default_action),
        C(log_denied), C(persist), C(boot_policy), C(persist_dir) and C(unit_dir); the module checks their values.
      - Where hosts differ (host_vars), give the option to the allowlist task instead (the roles use
        C(module_defaults)); an option the task gives wins over the plan's. Unset, the module's default applies.
    type: dict
    default: {}
  variables_prefix:
    description:
      - Messages name the options with this prefix (V(enforce_) names O(allow_unmatched_filters) as
        C(enforce_allow_unmatched_filters)).
    type: str
    default: ""
  resume:
    description: The RV(path) of a first call; completes that plan (see the description). Every other option is then ignored.
    type: str
  discover_from:
    description:
      - With O(resume), the name of a registered variable on each host of the plan that holds what the host reported, a
        raw task's output with a line C(zerotrust-ssh-connection=$SSH_CONNECTION) or a flows result (C(ssh_client)).
        A host's C(ansible_facts.env.SSH_CONNECTION), when facts were gathered, counts too.
    type: str
  discard:
    description: The RV(path) of a plan to remove.
    type: str
notes:
  - An action plugin; this file only documents it.
  - A plan directory left behind by a run that was killed lies in the controller's temporary directory as C(zt-plan-*).
"""

EXAMPLES = r"""
- name: Plan once for every host
  zerotrust.workloads.plan:
    policy_file: policy.yml
    management_addresses: [192.0.2.10]
  register: plan
  run_once: true

- name: Apply each host's part
  zerotrust.workloads.allowlist:
    plan: "{{ plan }}"
  when: inventory_hostname in plan.hosts

- name: Remove the plan from the controller
  zerotrust.workloads.plan:
    discard: "{{ plan.path }}"
  run_once: true
"""

RETURN = r"""
path:
  description: The plan's private directory on the controller.
  type: str
  returned: success
complete:
  description: The hosts' parts are written; false only between a first call that must read the controller's address and O(resume).
  type: bool
  returned: success
hosts:
  description:
    - Per inventory hostname of a VM or node the plan covers, C(pods) (how many), and once complete C(bytes) and
      C(file) of its part.
  type: dict
  returned: success
  sample: {k8s-node1: {pods: 1, bytes: 5321, file: /tmp/zt-plan-x1y2/hosts/0b9c.json}}
compiler_warnings:
  description: The compiler's warnings, as text.
  type: list
  elements: str
  returned: success
findings:
  description: Every warning as C({code, text, ...data}); codes such as C(unmatched_filter), C(host_network), C(partial_service).
  type: list
  elements: dict
  returned: success
implicit:
  description: The effective implicit allowances.
  type: dict
  returned: success
management_addresses:
  description: The effective management addresses (empty while still to be read from the hosts).
  type: list
  elements: str
  returned: success
discover:
  description: The management addresses are (to be) read from the hosts.
  type: bool
  returned: success
options:
  description: The compile options the plan was compiled with (for the C(zerotrust.workloads.audit_report) filter).
  type: dict
  returned: success
run:
  description:
    - The allowlist module options every host gets (C(state), C(management_addresses), C(keep_ssh), and those given in
      O(run)).
  type: dict
  returned: success
policy:
  description: The policy that was compiled.
  type: dict
  returned: success
state:
  description: O(state) of the plan.
  type: str
  returned: success
discarded:
  description: With O(discard), whether a directory was removed.
  type: bool
  returned: with O(discard)
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._planning.spec import (  # noqa: E402
    ARGUMENT_SPEC,
    MUTUALLY_EXCLUSIVE,
)


def main() -> None:
    """Only reached when someone runs the module without its action plugin."""
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE, supports_check_mode=True)
    module.fail_json(msg="zerotrust.workloads.plan runs on the controller as an action plugin")


if __name__ == "__main__":
    main()
