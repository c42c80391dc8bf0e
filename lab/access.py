# SPDX-License-Identifier: GPL-3.0-or-later
"""How Ansible reaches the lab: SSH keys, per-host sshd configs, and the inventory files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.scenario import Scenario
from lab.system import LAB_DIR, run

SSH_DIR = LAB_DIR / "ssh"
CLIENT_KEY = SSH_DIR / "id_ed25519"
HOST_KEY = SSH_DIR / "ssh_host_ed25519_key"
AUTHORIZED_KEYS = SSH_DIR / "authorized_keys"
CONTROL_DIR = LAB_DIR / "ssh-control"
INVENTORY_DIR = LAB_DIR / "inventory"
KUBECONFIG = LAB_DIR / "kubeconfig"
HOSTS_DIR = LAB_DIR / "hosts"
SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


def ensure_keys() -> None:
    """Generate the lab's client key and host key once; authorise the client key for root."""
    SSH_DIR.mkdir(parents=True, exist_ok=True)
    SSH_DIR.chmod(0o700)
    for key, comment in ((CLIENT_KEY, "zerotrust-lab-client"), (HOST_KEY, "zerotrust-lab-host")):
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
    AUTHORIZED_KEYS.write_text(Path(f"{CLIENT_KEY}.pub").read_text())
    AUTHORIZED_KEYS.chmod(0o600)


def sshd_config(host: str, addresses: list[str]) -> Path:
    """Write the sshd config for one lab host (root by key only, on its lab addresses)."""
    path = SSH_DIR / f"sshd_config.{host}"
    listen = "".join(f"ListenAddress {address}\n" if ":" not in address else f"ListenAddress [{address}]:22\n" for address in addresses)
    path.write_text(
        f"# zerotrust lab: sshd of {host}\n"
        "Port 22\n"
        f"{listen}"
        f"HostKey {HOST_KEY}\n"
        f"PidFile {LAB_DIR / 'run' / f'sshd.{host}.pid'}\n"
        f"AuthorizedKeysFile {AUTHORIZED_KEYS}\n"
        # The key lives in the checkout's .lab/, and a checkout may sit below a world-writable directory such
        # as /tmp, which strict modes refuse. These sshds listen on lab addresses only and take keys only.
        "StrictModes no\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "UseDNS no\n"
        "PrintMotd no\n"
        "MaxStartups 50:30:100\n"
        "MaxSessions 50\n"
        "Subsystem sftp internal-sftp\n"
        "AcceptEnv LANG LC_*\n"
        # A lab host stands in for a node, whose root shell does not set up a developer's tools. Bash reads the
        # account's ~/.bashrc for a command sshd runs unless it sees that it is not the outermost shell: here that
        # file may set up pyenv, which costs 0.15 s of CPU per command and, with 25 hosts at once, waits on
        # pyenv's rehash lock. SHLVL=1 makes the session's bash the second level, so it reads no startup file.
        "SetEnv SHLVL=1\n"
    )
    return path


def host_dirs(host: str) -> tuple[Path, Path]:
    """(persist_dir, unit_dir) of one lab host: every lab host shares this machine's /etc, so each gets its own."""
    base = HOSTS_DIR / host
    return base / "etc" / "zerotrust-workloads", base / "systemd"


def inventory_sources(scenario: Scenario, kubeconfig: Path = KUBECONFIG) -> dict[str, dict[str, Any]]:
    """The lab's inventory sources, file name -> document: the Kubernetes plugin config (on ``kubeconfig``) and the VMs.

    lab/expected.py reads the same two sources (against its own in-process API when no lab is up).
    """
    kubernetes: dict[str, Any] = {
        "plugin": "zerotrust.workloads.kubernetes",
        "connections": [{"kubeconfig": str(kubeconfig), "context": scenario.cluster.name}],
    }
    if scenario.vulnerabilities:
        # The scenario's findings are served as trivy-operator's VulnerabilityReports (lab/vulns.py).
        kubernetes["vulnerabilities"] = "trivy"
    hosts: dict[str, Any] = {}
    for vm in scenario.vms:
        addresses = [str(vm.address)] + ([str(vm.ipv6)] if vm.ipv6 is not None else [])
        hosts[vm.name] = {"ansible_host": str(vm.address), "zt_addresses": addresses, "zt_labels": dict(vm.labels)}
    return {"lab.kubernetes.yml": kubernetes, "vms.yml": {"all": {"children": {"vms": {"hosts": hosts}}}}}


def write_inventory(scenario: Scenario) -> None:
    """Write .lab/inventory/: the Kubernetes plugin config, the VMs, and the SSH settings of every host."""
    (INVENTORY_DIR / "group_vars").mkdir(parents=True, exist_ok=True)
    CONTROL_DIR.mkdir(parents=True, exist_ok=True)
    group_vars = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(CLIENT_KEY),
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_common_args": SSH_OPTIONS,
        "zt_lab_controller_addresses": [str(scenario.underlay.controller)]
        + ([str(scenario.underlay.controller_v6)] if scenario.underlay.controller_v6 is not None else []),
    }
    if scenario.upstream_dns is not None:
        # The resolver cluster DNS forwards to (a lab VM outside the inventory): the `cluster` allowance opens DNS pods -> it.
        group_vars["enforce_upstream_dns"] = [str(scenario.upstream_dns.address)]
        group_vars["audit_upstream_dns"] = [str(scenario.upstream_dns.address)]
    header = "# SPDX-License-Identifier: GPL-3.0-or-later\n# Written by `python -m lab up`; rewritten on every up.\n"
    # Boot persistence per host below .lab/hosts/ (no systemd in a namespace: `python -m lab reboot` runs the unit).
    (INVENTORY_DIR / "host_vars").mkdir(exist_ok=True)
    for host in [node.name for node in scenario.nodes] + [vm.name for vm in scenario.vms]:
        persist_dir, unit_dir = host_dirs(host)
        persist = {"enforce_persist": True, "enforce_persist_dir": str(persist_dir), "enforce_unit_dir": str(unit_dir)}
        (INVENTORY_DIR / "host_vars" / f"{host}.yml").write_text(header + yaml.safe_dump(persist, sort_keys=False))
    for name, data in (*inventory_sources(scenario).items(), ("group_vars/all.yml", group_vars)):
        (INVENTORY_DIR / name).write_text(header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False))
