# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""Host and group names from untrusted text; host_format validation."""

from __future__ import annotations

import pytest
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import naming
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import ConnectionConfigError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("k8s_pods", "k8s_pods"),
        ("label_app.kubernetes.io/name_web", "label_app_kubernetes_io_name_web"),
        ("service_wordpress_wordpress", "service_wordpress_wordpress"),
        ("label_x_$(reboot)", "label_x___reboot_"),
        ("label_x_a\nb", "label_x_a_b"),
        ("label_q_it's \"q\"", "label_q_it_s__q_"),
        ("9lives", "_9lives"),
        ("", "_"),
        ("ünï", "_n_"),
    ],
)
def test_safe_group_name(raw: str, expected: str) -> None:
    assert naming.safe_group_name(raw) == expected


def test_long_group_names_are_cut_with_a_distinguishing_hash() -> None:
    first = naming.safe_group_name("label_k_" + "a" * 300)
    second = naming.safe_group_name("label_k_" + "a" * 299 + "b")
    assert len(first) == len(second) == naming.MAX_GROUP_NAME
    assert first != second and first.startswith("label_k_aaaa")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("web-1.ns.pod.lab", "web-1.ns.pod.lab"),
        ("two words", "two_words"),
        ("$(reboot)", "__reboot_"),
        ("a\nb", "a_b"),
        (".hidden.", "hidden"),
        ("...", "_"),
    ],
)
def test_safe_host_name(raw: str, expected: str) -> None:
    assert naming.safe_host_name(raw) == expected


def test_render_host_name_sanitises_each_field() -> None:
    assert naming.render_host_name("{name}.{namespace}.pod.{cluster}", name="a b", namespace="", cluster="lab") == "a_b._.pod.lab"


@pytest.mark.parametrize(
    ("formats", "message"),
    [
        ({"pod": "{name}.{secret}"}, "placeholder {secret} is not allowed"),
        ({"pod": "{name.__class__}"}, "placeholder {name.__class__} is not allowed"),
        ({"pod": "{name!r}"}, "placeholder {name} is not allowed"),
        ({"pod": "{name:>9}"}, "placeholder {name} is not allowed"),
        ({"pod": "{namespace}"}, "must contain {name}"),
        ({"vm": "{name}"}, "unknown kinds ['vm']"),
        ({"node": ""}, "host_format.node must be a non-empty string"),
        ({"pod": "{name"}, "is not a valid format"),
    ],
)
def test_invalid_host_formats(formats: dict[str, str], message: str) -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        naming.validate_host_format(formats)
    assert message in str(caught.value)


def test_host_format_merges_over_defaults() -> None:
    assert naming.validate_host_format({"node": "{name}.{cluster}"}) == {
        "pod": "{name}.{namespace}.pod.{cluster}", "service": "{name}.{namespace}.service.{cluster}", "node": "{name}.{cluster}"}
