# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""The audit core (pure: no Ansible imports, no I/O).

``observation`` parses what the ``flows`` module reads on a host (conntrack tables and the
observer's nft sets) and merges the views of many namespaces into one list of
connections; ``classify`` decides each observed flow against the policy (permitted,
escaped, partial, rejected, unanswered), one line per source, destination and port;
``rules`` maps live rules back to the policies that produced them and finds drift;
``report`` assembles the whole report (the JSON twin); ``layout`` places the policy
graph; ``html`` renders it as one self-contained page; ``errors`` holds :class:`AuditError`.
"""
