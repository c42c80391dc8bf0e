# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab: the seed's cluster and VMs built from real network namespaces on one machine.

Run as ``python -m lab up|down|status|probe|move-pod``; see ``lab/__main__.py``.
"""
