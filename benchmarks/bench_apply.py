# SPDX-License-Identifier: GPL-3.0-or-later
"""Applying a 1,000-rule allowlist with 10,000 peer addresses, side by side in one run.

Every method works in its own throwaway network namespace (``ztb-<random>-*``, removed
at the end whatever happens); no packet is sent. Measured, as wall-clock seconds of
the whole command:

- ``module_<backend>_first`` / ``_noop``: our ``zerotrust.workloads.allowlist`` module in a
  real ``ansible-playbook`` run (``connection: local``, the host target with its
  ``netns`` option), first apply and a re-run with nothing to change. Backends:
  ``nftables`` and ``iptables`` (the host's default flavour, with ipset); both write
  IPv4 and IPv6.
- ``builtin_first`` / ``_rerun``: ``ansible.builtin.iptables`` in one task with ``loop:``
  over the rules (``match_set`` on the same ipsets, created beforehand), run inside the
  namespace with ``ip netns exec``, once per run (not repeated): at ~0.2 s per rule the full
  1,000 rules take minutes. ``--builtin-rules 100`` measures 100 rules instead and SCALES
  them to ``--rules`` as ``fixed + (measured - fixed) * 1000 / 100`` (``fixed`` below; this
  favours the builtin), for a quick look. IPv4 only (it has no sets of its own).
- ``raw``: ``ipset restore`` of the 10,000 members plus one ``iptables-restore --noflush``
  of the 1,000 rules: the limit any tool can reach.
- ``fixed``: Ansible's own cost, one ``ansible-playbook`` run with one ``ping`` task;
  ``fixed_vars``: the same run also loading the 1 MB vars file the module runs take their
  ruleset from (what Ansible spends on holding the data before any module sees it).
- ``bigset_<backend>_first`` / ``_noop``: the module with one rule whose address set holds
  ``--big-set`` IPv4 members (default 100,000: more than ipset's default ``maxelem`` of 65,536,
  which made the iptables backend fail with ``Hash is full`` before the sets were sized from
  their members). Once per backend, in a fresh namespace; ``--big-set 0`` skips it, ``--big-set-only``
  measures it alone (last line ``RESULT apply_bigset ...``).
- ``module_plan_<backend>_first`` / ``_noop``: the same ruleset handed over as the enforce role
  does: the task gives ``plan`` (a plan outline), the allowlist action reads the host's part from
  the plan directory on the controller and sends it as one JSON text (``plan_json``).
  ``--plan-only`` measures fixed, raw, the module and the module through a plan alone
  (``--repeats`` times; last line ``RESULT apply_plan ...``).

Ratios: ``first_ratio_vs_builtin`` = builtin first / module first, ``noop_ratio_vs_builtin``
= builtin re-run / module no-op, ``first_vs_raw_plus_fixed`` = module first / (raw + fixed).
Goals: >= 50, >= 100, <= 3. Margins: ``noop_over_fixed_s`` = module no-op - fixed (goal <= 0.5)
and ``first_over_fixed_raw_s`` = module first - fixed - raw (goal <= 1), per backend;
``noop_over_fixed_vars_s`` = module no-op - fixed_vars.

Everything but the builtin runs ``--repeats`` times (fresh namespaces) and the median is
reported. Run as root from anywhere: ``.venv/bin/python benchmarks/bench_apply.py`` (``make
bench-apply``). The last line is ``RESULT apply ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
RULES = 1000
PEERS_PER_RULE = 10


def peer(rule: int, index: int) -> str:
    """The ``index``-th peer of rule ``rule``: scattered /32s, 10,000 in all."""
    number = rule * PEERS_PER_RULE + index
    return f"10.{100 + number // 62500}.{(number // 250) % 250}.{(number % 250) + 2}"


def set_name(rule: int) -> str:
    """Address set of rule ``rule`` (model name; ipsets get ``-4``/``-6`` from the backend)."""
    return f"zt-b{rule:04d}"


def ruleset_dict(rules: int) -> dict[str, Any]:
    """The allowlist in the ruleset model's dictionary form (what the compiler hands the module)."""
    body: list[dict[str, Any]] = [
        {"verdict": "accept", "origin": "implicit:conntrack", "conntrack": ["established", "related"]},
        {"verdict": "accept", "origin": "implicit:loopback", "interface": "lo"},
    ]
    for rule in range(rules):
        port = str(10000 + rule)
        origin = f"default[{rule}] bench"
        body.append({"verdict": "accept", "origin": origin, "protocol": "tcp", "ports": [port], "peer_set": set_name(rule)})
    sets = [{"name": set_name(rule), "members": [peer(rule, index) for index in range(PEERS_PER_RULE)]} for rule in range(rules)]
    return {
        "version": 1,
        "address_sets": sets,
        "chains": [
            {"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": body},
            {"name": "egress", "hook": "output", "default_verdict": "accept", "rules": []},
        ],
    }


def big_set_ruleset(members: int) -> dict[str, Any]:
    """One ingress rule whose peer set holds ``members`` scattered IPv4 addresses."""
    addresses = [f"10.{100 + number // 62500}.{(number // 250) % 250}.{(number % 250) + 2}" for number in range(members)]
    return {
        "version": 1,
        "address_sets": [{"name": "zt-big", "members": addresses}],
        "chains": [
            {"name": "ingress", "hook": "input", "default_verdict": "deny", "rules": [
                {"verdict": "accept", "origin": "bench big set", "protocol": "tcp", "ports": ["80"], "peer_set": "zt-big"}]},
        ],
    }


def raw_ipset_restore(rules: int) -> str:
    """``ipset restore`` input: one hash:net set per rule with its members."""
    lines = []
    for rule in range(rules):
        name = f"ztb-raw-{rule:04d}"
        lines.append(f"create {name} hash:net family inet")
        lines += [f"add {name} {peer(rule, index)}" for index in range(PEERS_PER_RULE)]
    return "\n".join(lines) + "\n"


def raw_iptables_restore(rules: int) -> str:
    """``iptables-restore --noflush`` input: our chain, its jump and one rule per allow."""
    lines = ["*filter", ":ZTB-INGRESS - [0:0]", "-I INPUT 1 -j ZTB-INGRESS"]
    lines.append("-A ZTB-INGRESS -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
    lines.append("-A ZTB-INGRESS -i lo -j ACCEPT")
    lines += [
        f"-A ZTB-INGRESS -p tcp -m set --match-set ztb-raw-{rule:04d} src -m tcp --dport {10000 + rule} -j ACCEPT" for rule in range(rules)
    ]
    lines += ["-A ZTB-INGRESS -j DROP", "COMMIT"]
    return "\n".join(lines) + "\n"


def builtin_playbook(rules: int, workdir: Path) -> Path:
    """A playbook applying ``rules`` allows with ansible.builtin.iptables in a loop."""
    items = [{"set": f"ztb-raw-{rule:04d}", "port": str(10000 + rule)} for rule in range(rules)]
    (workdir / "builtin_vars.json").write_text(json.dumps({"bench_rules": items}))
    playbook = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(workdir / "builtin_vars.json")],
            "tasks": [
                {
                    "name": "One allow per rule",
                    "ansible.builtin.iptables": {
                        "chain": "INPUT",
                        "protocol": "tcp",
                        "match_set": "{{ item.set }}",
                        "match_set_flags": "src",
                        "destination_port": "{{ item.port }}",
                        "jump": "ACCEPT",
                        "comment": "bench {{ item.set }}",
                    },
                    "loop": "{{ bench_rules }}",
                }
            ],
        }
    ]
    path = workdir / "builtin.yml"
    path.write_text(json.dumps(playbook))
    return path


def module_playbook(backend: str, namespace: str, workdir: Path, variables: str = "ruleset_vars.json") -> Path:
    """A playbook applying the ruleset (``bench_ruleset`` in ``variables``) with our module in ``namespace``."""
    playbook = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [str(workdir / variables)],
            "tasks": [
                {
                    "name": "Apply the allowlist",
                    "zerotrust.workloads.allowlist": {
                        "netns": namespace,
                        "backend": backend,
                        "keep_ssh": False,
                        "ruleset": "{{ bench_ruleset }}",
                    },
                }
            ],
        }
    ]
    path = workdir / f"module_{backend}_{Path(variables).stem}.yml"
    path.write_text(json.dumps(playbook))
    return path


def plan_playbook(backend: str, namespace: str, workdir: Path, rules: int) -> Path:
    """A playbook applying the ruleset through a plan, as the enforce role hands it over (``plan``: an outline)."""
    sys.path.insert(0, str(REPO / ".collections"))
    from ansible_collections.zerotrust.workloads.plugins.plugin_utils._planning import store  # noqa: PLC0415 - the collection, not a package

    directory = store.create(str(workdir))
    store.write_json(os.path.join(directory, store.REQUEST), {})
    hosts = store.write_hosts(directory, {"localhost": {"ruleset": ruleset_dict(rules), "pods": [], "sets": {}}})
    outline = {"path": directory, "complete": True, "hosts": hosts, "run": {"state": "present"}}
    task = {"netns": namespace, "backend": backend, "keep_ssh": False, "plan": outline}
    play = {"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [{"zerotrust.workloads.allowlist": task}]}
    path = workdir / f"module_plan_{backend}.yml"
    path.write_text(json.dumps([play]))
    return path


def fixed_playbook(workdir: Path, variables: Optional[str] = None) -> Path:
    """One trivial task: Ansible's floor (with ``variables``: also loading the ruleset's vars file, not using it)."""
    play: dict[str, Any] = {"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [{"ansible.builtin.ping": {}}]}
    if variables:
        play["vars_files"] = [str(workdir / variables)]
    path = workdir / ("fixed.yml" if variables is None else "fixed_vars.yml")
    path.write_text(json.dumps([play]))
    return path


def ansible_env() -> dict[str, str]:
    """Environment of every ansible-playbook run (same for all methods)."""
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0")
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    for variable in ("SSH_CONNECTION", "SSH_CLIENT"):
        env.pop(variable, None)
    return env


CPU_SECONDS: list[float] = []
"""CPU seconds (user + system, the command and the processes it waited for) of every :func:`timed` command, in order."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], stdin: Optional[str] = None, expect: str = "") -> float:
    """Wall-clock seconds of one command, which must succeed (and print ``expect``); its CPU seconds go to CPU_SECONDS."""
    started, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(argv, input=stdin, cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False, timeout=3600)
    elapsed = time.perf_counter() - started
    CPU_SECONDS.append(_children_cpu() - cpu)
    if done.returncode != 0 or expect not in done.stdout:
        raise SystemExit(f"{' '.join(argv[:6])} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def playbook(path: Path, namespace: Optional[str] = None, expect: str = "") -> float:
    """Seconds of one ansible-playbook run (inside ``namespace`` when given)."""
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    return timed([*prefix, str(VENV_BIN / "ansible-playbook"), str(path)], expect=expect)


def recap(changed: bool) -> str:
    """The PLAY RECAP fragment a run must print (proves it did or did not change)."""
    return "changed=1" if changed else "changed=0"


def report(times: dict[str, float], backends: list[str], rules: int, builtin_rules: int, measured: Optional[tuple[float, float]]) -> None:
    """The human-readable table."""
    print(f"Applying {rules} rules with {rules * PEERS_PER_RULE} peer addresses (wall-clock seconds)")
    for name in ("fixed", "fixed_vars", "raw"):
        print(f"  {name:<28} {times[name]:9.3f}")
    for backend in backends:
        for run in ("first", "noop"):
            print(f"  {f'module_{backend}_{run}':<28} {times[f'module_{backend}_{run}']:9.3f}")
    note = f"  (SCALED from {builtin_rules} rules: measured {measured[0]:.1f} s / {measured[1]:.1f} s)" if measured else ""
    print(f"  {'builtin_first':<28} {times['builtin_first']:9.3f}{note}")
    print(f"  {'builtin_rerun':<28} {times['builtin_rerun']:9.3f}")
    for name in sorted(name for name in times if name.startswith(("bigset_", "module_plan_"))):
        print(f"  {name:<28} {times[name]:9.3f}")


def plan_margins(times: dict[str, float], backend: str, suffix: str) -> dict[str, str]:
    """The margins over Ansible's cost of the module run through a plan (the enforce role's way), when measured."""
    if f"module_plan_{backend}_noop" not in times:
        return {}
    first, noop = times[f"module_plan_{backend}_first"], times[f"module_plan_{backend}_noop"]
    return {f"plan_noop_over_fixed_s{suffix}": f"{noop - times['fixed']:.3f}",
            f"plan_first_over_fixed_raw_s{suffix}": f"{first - times['fixed'] - times['raw']:.3f}"}


def ratios(times: dict[str, float], backends: list[str]) -> dict[str, str]:
    """RESULT fields: the ratios per backend (the first one unsuffixed) and every time."""
    fields: dict[str, str] = {}
    for backend in backends:
        suffix = "" if backend == backends[0] else f"_{backend}"
        first, noop = times[f"module_{backend}_first"], times[f"module_{backend}_noop"]
        fields[f"first_ratio_vs_builtin{suffix}"] = f"{times['builtin_first'] / first:.1f}"
        fields[f"noop_ratio_vs_builtin{suffix}"] = f"{times['builtin_rerun'] / noop:.1f}"
        fields[f"first_vs_raw_plus_fixed{suffix}"] = f"{first / (times['raw'] + times['fixed']):.2f}"
        fields[f"noop_over_fixed_s{suffix}"] = f"{noop - times['fixed']:.3f}"
        fields[f"noop_over_fixed_vars_s{suffix}"] = f"{noop - times['fixed_vars']:.3f}"
        fields[f"first_over_fixed_raw_s{suffix}"] = f"{first - times['fixed'] - times['raw']:.3f}"
        fields.update(plan_margins(times, backend, suffix))
    fields["primary_backend"] = backends[0]
    fields.update({f"{name}_s": f"{value:.3f}" for name, value in times.items()})
    return fields


class Namespaces:
    """Throwaway namespaces ``ztb-<random>-<n>``, all removed by :meth:`remove_all`."""

    def __init__(self) -> None:
        self.prefix = f"ztb-{secrets.token_hex(3)}"
        self.created: list[str] = []

    def new(self) -> str:
        name = f"{self.prefix}-{len(self.created)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.created.append(name)
        return name

    def remove_all(self) -> None:
        for name in self.created:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def measure_big_set(members: int, backends: list[str], namespaces: Namespaces, workdir: Path) -> dict[str, float]:
    """The one-set case: first apply and no-op of one rule whose set holds ``members`` addresses, per backend, once each."""
    (workdir / "big_set_vars.json").write_text(json.dumps({"bench_ruleset": big_set_ruleset(members)}))
    times: dict[str, float] = {}
    for backend in backends:
        path = module_playbook(backend, namespaces.new(), workdir, "big_set_vars.json")
        times[f"bigset_{backend}_first"] = playbook(path, expect=recap(True))
        times[f"bigset_{backend}_noop"] = playbook(path, expect=recap(False))
    return times


def measure_modules(args: argparse.Namespace, backends: list[str], namespaces: Namespaces, workdir: Path) -> dict[str, list[float]]:
    """Fixed, raw and the module (given the ruleset, and through a plan) per backend: ``--repeats`` samples each.

    Beside each wall-clock sample ``NAME``, ``cpu_NAME`` holds the CPU seconds of the same command(s).
    """
    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float, commands: int = 1) -> None:
        samples.setdefault(name, []).append(seconds)
        samples.setdefault(f"cpu_{name}", []).append(sum(CPU_SECONDS[-commands:]))

    (workdir / "ruleset_vars.json").write_text(json.dumps({"bench_ruleset": ruleset_dict(args.rules)}))
    for _ in range(args.repeats):
        add("fixed", playbook(fixed_playbook(workdir), expect="ok=1"))
        add("fixed_vars", playbook(fixed_playbook(workdir, "ruleset_vars.json"), expect="ok=1"))
        raw_ns = ["ip", "netns", "exec", namespaces.new()]
        ipset_seconds = timed([*raw_ns, "ipset", "restore"], stdin=raw_ipset_restore(args.rules))
        iptables_seconds = timed([*raw_ns, "iptables-restore", "-w", "--noflush"], stdin=raw_iptables_restore(args.rules))
        add("raw", ipset_seconds + iptables_seconds, commands=2)
        for backend in backends:
            path = module_playbook(backend, namespaces.new(), workdir)
            add(f"module_{backend}_first", playbook(path, expect=recap(True)))
            add(f"module_{backend}_noop", playbook(path, expect=recap(False)))
            path = plan_playbook(backend, namespaces.new(), workdir, args.rules)
            add(f"module_plan_{backend}_first", playbook(path, expect=recap(True)))
            add(f"module_plan_{backend}_noop", playbook(path, expect=recap(False)))
    return samples


def measure(args: argparse.Namespace, backends: list[str], namespaces: Namespaces, workdir: Path) -> dict[str, float]:
    """Every method; medians over ``--repeats`` fresh namespaces except for the long builtin."""
    samples = measure_modules(args, backends, namespaces, workdir)
    times = {name: statistics.median(values) for name, values in samples.items() if not name.startswith("cpu_")}
    if args.big_set:
        times.update(measure_big_set(args.big_set, backends, namespaces, workdir))

    # The builtin needs the sets to exist; creating them is not part of its time.
    builtin_ns = namespaces.new()
    subprocess.run(["ip", "netns", "exec", builtin_ns, "ipset", "restore"], input=raw_ipset_restore(args.rules), text=True, check=True)
    builtin = builtin_playbook(args.builtin_rules, workdir)
    times["builtin_measured_first"] = playbook(builtin, builtin_ns, expect=recap(True))
    times["builtin_measured_rerun"] = playbook(builtin, builtin_ns, expect=recap(False))
    scale = args.rules / args.builtin_rules
    times["builtin_first"] = times["fixed"] + (times["builtin_measured_first"] - times["fixed"]) * scale
    times["builtin_rerun"] = times["fixed"] + (times["builtin_measured_rerun"] - times["fixed"]) * scale
    return times


def plan_only(args: argparse.Namespace, backends: list[str], namespaces: Namespaces) -> int:
    """``--plan-only``: fixed, raw, the module given the ruleset and through a plan; every sample and the medians."""
    try:
        with tempfile.TemporaryDirectory(prefix="ztb-") as temporary:
            samples = measure_modules(args, backends, namespaces, Path(temporary))
    finally:
        namespaces.remove_all()
    times = {name: statistics.median(values) for name, values in samples.items()}
    print(f"Applying {args.rules} rules with {args.rules * PEERS_PER_RULE} peer addresses (wall-clock seconds, median; samples)")
    for name, values in samples.items():
        print(f"  {name:<28} {times[name]:9.3f}  {' '.join(f'{value:.3f}' for value in values)}")
    # CPU seconds are steadier than wall seconds on a shared machine: the same figures by CPU.
    cpu = {name: statistics.median(values) for name, values in samples.items() if name.startswith("cpu_")}
    for backend in backends:
        suffix = "" if backend == backends[0] else f"_{backend}"
        for kind in ("", "plan_"):
            if f"cpu_module_{kind}{backend}_noop" in cpu:
                noop, first = cpu[f"cpu_module_{kind}{backend}_noop"], cpu[f"cpu_module_{kind}{backend}_first"]
                times[f"cpu_{kind}noop_over_fixed{suffix}"] = noop - cpu["cpu_fixed"]
                times[f"cpu_{kind}first_over_fixed_raw{suffix}"] = first - cpu["cpu_fixed"] - cpu["cpu_raw"]
    fields: dict[str, str] = {}
    for backend in backends:
        suffix = "" if backend == backends[0] else f"_{backend}"
        fields[f"noop_over_fixed_s{suffix}"] = f"{times[f'module_{backend}_noop'] - times['fixed']:.3f}"
        fields.update(plan_margins(times, backend, suffix))
    fields.update({f"{name}_s": f"{value:.3f}" for name, value in times.items()})
    print(f"RESULT apply_plan repeats={args.repeats} " + " ".join(f"{key}={value}" for key, value in fields.items()))
    return 0


def main() -> int:
    """Measure every method and print the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=RULES)
    parser.add_argument("--builtin-rules", type=int, default=0,
                        help="rules the builtin loop really applies, scaled to --rules (default: all of --rules, unscaled)")
    parser.add_argument("--backends", default="nftables,iptables", help="our module's backends to measure")
    parser.add_argument("--repeats", type=int, default=3, help="runs of everything but the builtin (median)")
    parser.add_argument("--big-set", type=int, default=100000, help="members of the one-set case (0: skip it)")
    parser.add_argument("--big-set-only", action="store_true", help="measure the one-set case alone (RESULT apply_bigset ...)")
    parser.add_argument("--plan-only", action="store_true", help="measure fixed, raw and the module alone (RESULT apply_plan ...)")
    args = parser.parse_args()
    args.builtin_rules = args.builtin_rules or args.rules
    backends = [name for name in args.backends.split(",") if name]
    namespaces = Namespaces()
    if args.big_set_only:
        if args.big_set <= 0:
            parser.error("--big-set-only needs --big-set above 0")
        try:
            with tempfile.TemporaryDirectory(prefix="ztb-") as temporary:
                big = measure_big_set(args.big_set, backends, namespaces, Path(temporary))
        finally:
            namespaces.remove_all()
        print(f"Applying one rule whose address set holds {args.big_set} IPv4 members (wall-clock seconds)")
        for name, value in big.items():
            print(f"  {name:<28} {value:9.3f}")
        print(f"RESULT apply_bigset members={args.big_set} " + " ".join(f"{name}_s={value:.3f}" for name, value in big.items()))
        return 0
    if args.plan_only:
        return plan_only(args, backends, namespaces)
    try:
        with tempfile.TemporaryDirectory(prefix="ztb-") as temporary:
            times = measure(args, backends, namespaces, Path(temporary))
    finally:
        namespaces.remove_all()
    scaled = args.builtin_rules != args.rules
    measured = (times.pop("builtin_measured_first"), times.pop("builtin_measured_rerun"))
    report(times, backends, args.rules, args.builtin_rules, measured if scaled else None)
    fields = ratios(times, backends)
    fields["builtin_scaled"] = str(scaled).lower()
    fields["builtin_rules_measured"] = str(args.builtin_rules)
    fields["repeats"] = str(args.repeats)
    fields["bigset_members"] = str(args.big_set)
    print("RESULT apply " + " ".join(f"{key}={value}" for key, value in fields.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
