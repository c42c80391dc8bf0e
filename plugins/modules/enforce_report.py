#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the enforce_report action plugin (it runs on the controller only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: enforce_report
short_description: Summarise an enforce run per host and pod, and guard against unexpectedly large changes
description:
  - Used by the C(zerotrust.workloads.enforce) role. Runs on the controller only and never connects to a host.
  - Reads what the C(zerotrust.workloads.allowlist) module returned per host (the check-mode preview, the apply) and
    adds up, per host and per pod, the rules and set members added and removed that the module counted per
    namespace (a namespace that failed counts as zero).
  - With O(max_change_percent), fails when the rules and set members that would be added or removed, over all hosts,
    exceed that percentage of those in place. Nothing in place (a first run) never trips the guard.
version_added: 0.1.0
author: zerotrust.workloads contributors (@zerotrust)
options:
  plan_hosts:
    description:
      - The inventory hostnames the compiled plan covers (the keys of its C(hosts)).
      - Only the names, because the rules themselves are large and the report does not need them.
    type: list
    elements: str
    required: true
  play_hosts:
    description: The hosts the play targets; plan hosts outside it are reported as not in play.
    type: list
    elements: str
    required: true
  previews:
    description:
      - Inventory hostname to the registered result of the check-mode allowlist run.
      - Give this or C(previews) in O(registered).
    type: dict
  registered:
    description:
      - "Read the results from the hosts' variables instead: C(previews), C(applied) and C(rollbacks), each the name of the
        variable that holds that result on every host (C({previews: enforce_preview, applied: enforce_applied}))."
      - The plugin reads them untemplated, for the hosts of O(plan_hosts) that are in O(play_hosts). This is much cheaper
        than templating every host's results into O(previews), O(applied) and O(rollbacks) at hundreds of pods.
      - A kind named here must not also be given directly.
    type: dict
  applied:
    description: Inventory hostname to the registered result of the allowlist run that wrote.
    type: dict
    default: {}
  rollbacks:
    description: Inventory hostname to C({reason}) for hosts whose watchdog restored the previous rules.
    type: dict
    default: {}
  check_mode:
    description: The run is a preview; counts say what would change.
    type: bool
    default: false
  max_change_percent:
    description: Fail above this percentage of change; C(0) or absent does not check.
    type: int
    default: 0
  details:
    description:
      - Report each host's C(host), C(pods) and C(skipped_pods) in RV(summary), and a line per pod in RV(lines).
      - Off, RV(summary) holds each host's C(status) (and C(reason)) and the totals, and RV(lines) a line per host and the
        total. That is what the enforce role's change guard needs, without a result the size of every pod's counts.
    type: bool
    default: true
notes:
  - An action plugin; this file only documents it.
"""

EXAMPLES = r"""
- name: Stop before writing when the change is far larger than expected
  zerotrust.workloads.enforce_report:
    plan_hosts: "{{ enforce_plan.hosts.keys() | list }}"
    play_hosts: "{{ ansible_play_hosts }}"
    registered:
      previews: enforce_preview
    max_change_percent: 50
  run_once: true
"""

RETURN = r"""
summary:
  description:
    - Per host (C(status), C(host) and C(pods) counts, C(skipped_pods)) and C(totals) of the run.
    - Without O(details), each host has only C(status) and C(reason).
  type: dict
  returned: always
  sample:
    check_mode: false
    hosts:
      haproxy:
        status: changed
        host: {changed: true, rules_added: 9, rules_removed: 0, set_members_added: 7, set_members_removed: 0, in_place: 0, rules: 9}
        pods: {}
        skipped_pods: []
    totals: {rules_added: 9, rules_removed: 0, set_members_added: 7, set_members_removed: 0, in_place: 0, change_percent: null}
lines:
  description: The summary as short human-readable lines.
  type: list
  elements: str
  returned: always
writers:
  description:
    - The hosts of O(play_hosts), in their order, whose preview found something to write (a namespace's rules or
      sets, or the boot files), whatever O(check_mode) says. The enforce role applies on these hosts only.
  type: list
  elements: str
  returned: always
  sample: [k8s-node1, vm-web2]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def main() -> None:
    """Only reached when someone runs the module without its action plugin."""
    module = AnsibleModule(
        argument_spec={
            "plan_hosts": {"type": "list", "elements": "str", "required": True},
            "play_hosts": {"type": "list", "elements": "str", "required": True},
            "previews": {"type": "dict"},
            "registered": {"type": "dict"},
            "applied": {"type": "dict", "default": {}},
            "rollbacks": {"type": "dict", "default": {}},
            "check_mode": {"type": "bool", "default": False},
            "max_change_percent": {"type": "int", "default": 0},
            "details": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="zerotrust.workloads.enforce_report runs on the controller as an action plugin")


if __name__ == "__main__":
    main()
