# SPDX-License-Identifier: GPL-3.0-or-later
"""lab/overlay.py and lab/vtep.py without namespaces: the exact commands, MACs, annotations, wire format."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest

from lab import overlay, vtep
from lab.errors import LabError

A = overlay.OverlayNode(
    "cp", "zt-node-cp", ipaddress.IPv4Address("10.0.0.11"), ipaddress.IPv4Network("10.244.0.0/24"),
    ipaddress.IPv6Address("fd00::11"), ipaddress.IPv6Network("fd00:10:244::/64"),
)
B = overlay.OverlayNode("w1", "zt-node-w1", ipaddress.IPv4Address("10.0.0.12"), ipaddress.IPv4Network("10.244.1.0/24"))
MAC_A, MAC_B = overlay.vtep_mac("cp"), overlay.vtep_mac("w1")


def test_vtep_mac_is_stable_local_unicast_and_distinct() -> None:
    assert re.fullmatch(r"0e(:[0-9a-f]{2}){5}", MAC_A)
    assert overlay.vtep_mac("cp") == MAC_A
    assert len({overlay.vtep_mac(f"node-{i}") for i in range(500)}) == 500


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "vxlan",
            {
                "flannel.alpha.coreos.com/backend-data": json.dumps({"VNI": 1, "VtepMAC": MAC_B}, separators=(",", ":")),
                "flannel.alpha.coreos.com/backend-type": "vxlan",
                "flannel.alpha.coreos.com/kube-subnet-manager": "true",
                "flannel.alpha.coreos.com/public-ip": "10.0.0.12",
            },
        ),
        (
            "routed",
            {
                "flannel.alpha.coreos.com/backend-data": "null",
                "flannel.alpha.coreos.com/backend-type": "host-gw",
                "flannel.alpha.coreos.com/kube-subnet-manager": "true",
                "flannel.alpha.coreos.com/public-ip": "10.0.0.12",
            },
        ),
    ],
)
def test_flannel_annotations(mode: overlay.Mode, expected: dict[str, str]) -> None:
    assert overlay.flannel_annotations(B, mode) == expected


@pytest.mark.parametrize(
    ("node", "mode", "expected"), [(A, "vxlan", ["flannel.1", "flannel-v6.1"]), (B, "vxlan", ["flannel.1"]), (A, "routed", [])]
)
def test_node_devices(node: overlay.OverlayNode, mode: overlay.Mode, expected: list[str]) -> None:
    assert overlay.node_devices(node, mode) == expected


def test_dual_stack_nodes_get_the_v6_annotations() -> None:
    annotations = overlay.flannel_annotations(A, "vxlan")
    assert annotations["flannel.alpha.coreos.com/backend-v6-data"] == json.dumps({"VNI": 1, "VtepMAC": MAC6_A}, separators=(",", ":"))
    assert annotations["flannel.alpha.coreos.com/public-ipv6"] == "fd00::11"
    assert len(annotations) == 6
    routed = overlay.flannel_annotations(A, "routed")
    assert (routed["flannel.alpha.coreos.com/backend-v6-data"], routed["flannel.alpha.coreos.com/public-ipv6"]) == ("null", "fd00::11")


def test_routed_commands_are_the_direct_routes() -> None:
    assert overlay.routed_commands([A, B]) == [
        ["ip", "-n", "zt-node-cp", "route", "add", "10.244.1.0/24", "via", "10.0.0.12", "dev", "eth0"],
        ["ip", "-n", "zt-node-w1", "route", "add", "10.244.0.0/24", "via", "10.0.0.11", "dev", "eth0"],
        ["ip", "-n", "zt-node-w1", "-6", "route", "add", "fd00:10:244::/64", "via", "fd00::11", "dev", "eth0"],
    ]


B6 = overlay.OverlayNode(
    "w1", "zt-node-w1", B.address, B.pod_cidr, ipaddress.IPv6Address("fd00::12"), ipaddress.IPv6Network("fd00:10:244:1::/64")
)
MAC6_A, MAC6_B = overlay.vtep_mac("cp", "flannel-v6.1"), overlay.vtep_mac("w1", "flannel-v6.1")


def test_kernel_vxlan_commands_dual_stack_use_flannel_v6() -> None:
    assert overlay.vxlan_commands([A, B6], "kernel")[:15] == [
        ["ip", "-n", "zt-node-cp", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472", "local", "10.0.0.11",
         "dev", "eth0", "nolearning"],
        ["ip", "-n", "zt-node-cp", "link", "set", "flannel.1", "address", MAC_A],
        ["ip", "-n", "zt-node-cp", "addr", "add", "10.244.0.0/32", "dev", "flannel.1"],
        ["ip", "-n", "zt-node-cp", "link", "set", "flannel.1", "up"],
        ["ip", "-n", "zt-node-cp", "link", "add", "flannel-v6.1", "type", "vxlan", "id", "1", "dstport", "8472", "local", "fd00::11",
         "dev", "eth0", "nolearning"],
        ["ip", "-n", "zt-node-cp", "link", "set", "flannel-v6.1", "address", MAC6_A],
        ["ip", "-n", "zt-node-cp", "addr", "add", "fd00:10:244::/128", "dev", "flannel-v6.1", "nodad"],
        ["ip", "-n", "zt-node-cp", "link", "set", "flannel-v6.1", "up"],
        ["ip", "-n", "zt-node-cp", "neigh", "replace", "10.244.1.0", "lladdr", MAC_B, "dev", "flannel.1", "nud", "permanent"],
        ["ip", "-n", "zt-node-cp", "route", "add", "10.244.1.0/24", "via", "10.244.1.0", "dev", "flannel.1", "onlink"],
        ["bridge", "-n", "zt-node-cp", "fdb", "append", MAC_B, "dev", "flannel.1", "dst", "10.0.0.12"],
        ["ip", "-n", "zt-node-cp", "-6", "neigh", "replace", "fd00:10:244:1::", "lladdr", MAC6_B, "dev", "flannel-v6.1", "nud",
         "permanent"],
        ["ip", "-n", "zt-node-cp", "-6", "route", "add", "fd00:10:244:1::/64", "via", "fd00:10:244:1::", "dev", "flannel-v6.1", "onlink"],
        ["bridge", "-n", "zt-node-cp", "fdb", "append", MAC6_B, "dev", "flannel-v6.1", "dst", "fd00::12"],
        ["ip", "-n", "zt-node-w1", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472", "local", "10.0.0.12",
         "dev", "eth0", "nolearning"],
    ]


def test_without_an_ipv6_underlay_ipv6_pod_cidrs_ride_flannel_1() -> None:
    node_a = overlay.OverlayNode("cp", "zt-node-cp", A.address, A.pod_cidr, None, A.pod_cidr_v6)
    node_b = overlay.OverlayNode("w1", "zt-node-w1", B.address, B.pod_cidr, None, B6.pod_cidr_v6)
    assert overlay.vxlan_commands([node_a, node_b], "kernel")[:9] == [
        ["ip", "-n", "zt-node-cp", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472", "local", "10.0.0.11",
         "dev", "eth0", "nolearning"],
        ["ip", "-n", "zt-node-cp", "link", "set", "flannel.1", "address", MAC_A],
        ["ip", "-n", "zt-node-cp", "addr", "add", "10.244.0.0/32", "dev", "flannel.1"],
        ["ip", "-n", "zt-node-cp", "addr", "add", "fd00:10:244::/128", "dev", "flannel.1", "nodad"],
        ["ip", "-n", "zt-node-cp", "link", "set", "flannel.1", "up"],
        ["ip", "-n", "zt-node-cp", "neigh", "replace", "10.244.1.0", "lladdr", MAC_B, "dev", "flannel.1", "nud", "permanent"],
        ["ip", "-n", "zt-node-cp", "route", "add", "10.244.1.0/24", "via", "10.244.1.0", "dev", "flannel.1", "onlink"],
        ["bridge", "-n", "zt-node-cp", "fdb", "append", MAC_B, "dev", "flannel.1", "dst", "10.0.0.12"],
        ["ip", "-n", "zt-node-cp", "-6", "neigh", "replace", "fd00:10:244:1::", "lladdr", MAC_B, "dev", "flannel.1", "nud", "permanent"],
    ]
    assert overlay.vxlan_commands([node_a, node_b], "kernel")[9] == [
        "ip", "-n", "zt-node-cp", "-6", "route", "add", "fd00:10:244:1::/64", "via", "fd00:10:244:1::", "dev", "flannel.1", "onlink"
    ]
    assert not [argv for argv in overlay.vxlan_commands([node_a, node_b], "kernel") if "flannel-v6.1" in argv]


def test_userspace_commands_make_a_tap_and_leave_the_fdb_to_the_vtep() -> None:
    commands = overlay.vxlan_commands([A, B], "userspace")
    assert commands[:2] == [
        ["ip", "-n", "zt-node-cp", "tuntap", "add", "dev", "flannel.1", "mode", "tap"],
        ["ip", "-n", "zt-node-cp", "link", "set", "flannel.1", "address", MAC_A, "mtu", "1450", "gso_max_segs", "1"],
    ]
    assert not [argv for argv in commands if argv[0] == "bridge"]
    # No v6 route when the peer has no v6 pod CIDR.
    assert not [argv for argv in commands if "-6" in argv]
    v6 = overlay.vtep_argv(A, [A, B6], "flannel-v6.1")
    assert v6[-9:] == ["--device", "flannel-v6.1", "--local", "fd00::11", "--vni", "1", "--port", "8472", f"--peer={MAC6_B}=fd00::12"]
    assert ["ip", "-n", "zt-node-cp", "link", "set", "flannel-v6.1", "address", MAC6_A, "mtu", "1430", "gso_max_segs", "1"] in (
        overlay.vxlan_commands([A, B6], "userspace")
    )
    argv = overlay.vtep_argv(A, [A, B])
    assert argv[:4] == ["ip", "netns", "exec", "zt-node-cp"]
    assert argv[-9:] == ["--device", "flannel.1", "--local", "10.0.0.11", "--vni", "1", "--port", "8472", f"--peer={MAC_B}=10.0.0.12"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: overlay.setup_overlay([A], "geneve"), "unknown overlay 'geneve': expected one of vxlan, routed"),  # type: ignore[arg-type]
        (lambda: overlay.setup_overlay([A], "vxlan", "ebpf"), "unknown VXLAN backend 'ebpf': expected one of auto, kernel, userspace"),  # type: ignore[arg-type]
        (lambda: overlay.flannel_annotations(A, "host-gw"), "unknown overlay 'host-gw': expected one of vxlan, routed"),  # type: ignore[arg-type]
        (lambda: overlay.vxlan_commands([A, A], "kernel"), "overlay: node names must be unique, got cp more than once"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(call: object, message: str) -> None:
    with pytest.raises(LabError) as error:
        call()  # type: ignore[operator]
    assert str(error.value) == message


FRAME = bytes.fromhex("0e1122334455 0e6677889900 0800".replace(" ", "")) + b"payload"


@pytest.mark.parametrize(
    ("datagram", "expected"),
    [
        (bytes([0x08, 0, 0, 0, 0, 0, 1, 0]) + FRAME, FRAME),  # VNI 1
        (bytes([0x08, 0, 0, 0, 0, 0, 2, 0]) + FRAME, None),  # another VNI
        (bytes([0x00, 0, 0, 0, 0, 0, 1, 0]) + FRAME, None),  # I flag clear
        (bytes([0x08, 0, 0, 0, 0, 0, 1, 0]) + FRAME[:13], None),  # shorter than an Ethernet header
        (b"", None),
    ],
)
def test_vtep_decapsulate(datagram: bytes, expected: bytes | None) -> None:
    assert vtep.decapsulate(1, datagram) == expected


def test_vtep_encapsulate_round_trips() -> None:
    assert vtep.encapsulate(1, FRAME) == bytes([0x08, 0, 0, 0, 0, 0, 1, 0]) + FRAME
    assert vtep.decapsulate(4242, vtep.encapsulate(4242, FRAME)) == FRAME


@pytest.mark.parametrize("text", ["0e:11:22:33:44", "0e:11:22:33:44:5", "zz:11:22:33:44:55", ""])
def test_vtep_parse_mac_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        vtep.parse_mac(text)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--local", "10.0.0.11", "--peer", "0e:11:22:33:44:55=fd00::12"],
         "--peer '0e:11:22:33:44:55=fd00::12': fd00::12 is not an IPv4 address like --local"),
        (["--local", "10.0.0.11", "--peer", "0e:11:22:33:44=10.0.0.12"],
         "--peer '0e:11:22:33:44=10.0.0.12': not a MAC address: '0e:11:22:33:44'"),
        (["--local", "node-a"], "--local: 'node-a' does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_vtep_command_line_refuses_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        vtep.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"error: {message}")
