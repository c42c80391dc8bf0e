# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Rules and set members added and removed in one namespace, from the diff texts of a plan.

Both backends describe our objects in the same text they show in diff mode
(``Plan.before`` / ``Plan.after``):

- iptables: ``-A CHAIN spec`` lines are rules; ``ipset NAME (inet): a b c`` lines list a
  set's members;
- nftables: under ``  set NAME ...`` the indented lines are members; under
  ``  chain NAME ...`` they are rules.

A rule whose text changes counts as one removed and one added. The ``allowlist`` module
returns these counts per namespace and the enforce role's summary and change guard add
them up, so neither needs the (large) diff texts on the controller.
"""

from __future__ import annotations


def parse_objects(text: str) -> tuple[set[str], set[str]]:
    """The (rules, set members) of one diff text; each item is a self-identifying string."""
    rules: set[str] = set()
    members: set[str] = set()
    # While reading an nft block: "set" or "chain", and its name ("" outside any block).
    section_kind = ""
    section_name = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("-A "):
            rules.add(stripped)
        elif stripped.startswith("ipset "):
            head, _sep, listed = stripped[len("ipset ") :].partition(":")
            set_name = head.split()[0] if head.split() else head
            members.update(f"{set_name} {member}" for member in listed.split() if member != "(empty)")
        elif line.startswith("  ") and not line.startswith("    "):
            words = stripped.split()
            known = len(words) > 1 and words[0] in ("set", "chain")
            section_kind, section_name = (words[0], words[1]) if known else ("", "")
        elif line.startswith("    ") and section_kind:
            (members if section_kind == "set" else rules).add(f"{section_name} {stripped}")
    return rules, members


def count_changes(before: str, after: str) -> dict[str, int]:
    """Rules and set members added and removed going from ``before`` to ``after``, and what was in place."""
    rules_before, members_before = parse_objects(before)
    # A namespace with nothing to write (every no-op run) passes the same text twice: parse it once.
    rules_after, members_after = (rules_before, members_before) if after == before else parse_objects(after)
    return {
        "rules_added": len(rules_after - rules_before),
        "rules_removed": len(rules_before - rules_after),
        "set_members_added": len(members_after - members_before),
        "set_members_removed": len(members_before - members_after),
        "in_place": len(rules_before) + len(members_before),
    }
