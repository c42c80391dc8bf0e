# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""How the allowlist module names its targets in its results.

The action in front of the module, on the controller, names pods the same way (it leaves out the pods
a preview found unchanged). It imports this module alone: importing :mod:`apply` would load the whole
dataplane (both backends, netlink, persistence) into every ``ansible-playbook`` run, about 0.1 s of CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pod_label(pod: Mapping[str, Any]) -> str:
    """The ``target`` a pod is reported under: its inventory hostname, else namespace/name."""
    return str(pod.get("host") or f"{pod.get('namespace')}/{pod.get('name')}")
