# SPDX-License-Identifier: GPL-3.0-or-later
"""Rules and set members added and removed, counted from the backends' diff texts."""

from __future__ import annotations

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.counts import count_changes, parse_objects

IPTABLES_BEFORE = """ipset zt-aaa (inet): 10.244.3.18
ipset zt-bbb (inet6): (empty)
# IPv4 filter
-A INPUT -j ZT-INGRESS
:ZT-INGRESS
-A ZT-INGRESS -m conntrack --ctstate ESTABLISHED,RELATED -m comment --comment "zt:1111111111111111 implicit:established" -j ACCEPT
-A ZT-INGRESS -m comment --comment "zt:2222222222222222 catch_all" -j DROP
"""

IPTABLES_AFTER = """ipset zt-aaa (inet): 10.244.2.18 10.244.2.19
ipset zt-bbb (inet6): (empty)
# IPv4 filter
-A INPUT -j ZT-INGRESS
:ZT-INGRESS
-A ZT-INGRESS -m conntrack --ctstate ESTABLISHED,RELATED -m comment --comment "zt:1111111111111111 implicit:established" -j ACCEPT
-A ZT-INGRESS -p tcp --dport 80 -m comment --comment "zt:3333333333333333 default[0]" -j ACCEPT
-A ZT-INGRESS -m comment --comment "zt:2222222222222222 catch_all" -j DROP
"""

NFT_BEFORE = """table inet zerotrust
  set zt-aaa ipv4_addr interval
    10.244.3.18
  chain ingress filter input 0 accept
    zt:1111111111111111 implicit:established
    zt:2222222222222222 catch_all
"""

NFT_AFTER = """table inet zerotrust
  set zt-aaa ipv4_addr interval
    10.244.2.18
  chain ingress filter input 0 accept
    zt:1111111111111111 implicit:established
    zt:4444444444444444 catch_all
"""


def _counts(added: int, removed: int, members_added: int, members_removed: int, in_place: int) -> dict[str, int]:
    return {
        "rules_added": added,
        "rules_removed": removed,
        "set_members_added": members_added,
        "set_members_removed": members_removed,
        "in_place": in_place,
    }


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("", "", _counts(0, 0, 0, 0, 0)),
        ("", IPTABLES_BEFORE, _counts(3, 0, 1, 0, 0)),
        (IPTABLES_BEFORE, IPTABLES_AFTER, _counts(1, 0, 2, 1, 4)),
        (IPTABLES_BEFORE, "", _counts(0, 3, 0, 1, 4)),
        (NFT_BEFORE, NFT_AFTER, _counts(1, 1, 1, 1, 3)),
        (NFT_BEFORE, NFT_BEFORE, _counts(0, 0, 0, 0, 3)),
    ],
    ids=["nothing", "iptables-first", "iptables-pod-moved", "iptables-absent", "nft-changed", "nft-same"],
)
def test_count_changes(before: str, after: str, expected: dict[str, int]) -> None:
    assert count_changes(before, after) == expected


def test_parse_objects_names_members_by_set() -> None:
    rules, members = parse_objects(NFT_BEFORE)
    assert members == {"zt-aaa 10.244.3.18"}
    assert rules == {"ingress zt:1111111111111111 implicit:established", "ingress zt:2222222222222222 catch_all"}
