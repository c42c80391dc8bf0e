# SPDX-License-Identifier: GPL-3.0-or-later
"""A runner that answers backend detection's commands from canned output, for the detection tests."""

from __future__ import annotations

from typing import Any, Optional

from ansible_collections.zerotrust.workloads.plugins.module_utils._netfilter.runner import CommandResult, Namespace, Runner


class SaveRunner(Runner):
    """Canned output per command (what the host's tools would print), keyed by the program's name.

    ``nft`` holds the tables as ``nft list tables`` prints them; ``nft -t list table FAMILY NAME`` finds a
    table there (exit 0) or fails as nft does (exit 1).
    """

    def __init__(self, outputs: dict[str, str]) -> None:
        super().__init__(Namespace())
        self.outputs = outputs

    def run(self, argv: Any, stdin: Optional[str] = None, check: bool = True, write: bool = False) -> CommandResult:
        if argv[0] == "nft":
            found = f"table {argv[-2]} {argv[-1]}" in self.outputs.get("nft", "").splitlines()
            return CommandResult(tuple(argv), 0 if found else 1, "", "" if found else "Error: No such file or directory")
        return CommandResult(tuple(argv), 0, self.outputs.get(argv[0], ""), "")

    def call_inside(self, function: Any) -> None:
        """Only the canned commands answer (not this machine's kernel over netlink)."""
        return None
