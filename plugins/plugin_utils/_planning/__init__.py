# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The planning step the enforce and audit roles share (the ``zerotrust.workloads.plan`` action).

Controller only (an action plugin's helpers, so YAML is at hand); no Ansible imports. :mod:`.inputs`
turns the step's arguments into the effective compile and run options, loads the policy, checks the
guards on coded findings and reads the controller's address from what the hosts reported;
:mod:`.store` keeps the compiled plan on the controller, one file per host, and hands each host its
part. The argument spec lives in ``plugins/module_utils/_planning/spec.py``, shared with the
documentation module.
"""
