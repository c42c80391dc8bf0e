# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The argument spec of the ``zerotrust.workloads.plan`` action, shared with its documentation module.

The planning step itself runs on the controller only and lives in ``plugins/plugin_utils/_planning/``.
"""
