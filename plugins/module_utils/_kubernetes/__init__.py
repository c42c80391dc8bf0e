# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Private backend of the ``zerotrust.workloads.kubernetes`` inventory plugin.

``connection`` resolves clusters and credentials (kubeconfig, host + token, in-cluster, the
``K8S_AUTH_*`` variables), ``api`` lists objects as plain JSON with pagination, ``records``
turns objects into ``workload`` records, ``naming`` makes host and group names safe, and
``builder`` assembles hosts and groups. No Ansible imports: the plugin is the only surface.
"""
