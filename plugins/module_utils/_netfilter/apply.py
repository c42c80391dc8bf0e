# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""One ``allowlist`` module run: resolve targets, pick the backend, apply per namespace.

This is the orchestration around :class:`backend.Backend`: a per-namespace lock (so
two runs on the same namespace serialise and both finish correct), read -> plan ->
apply -> verify, rollback of a failed apply to the state read before it, the
management allowance on the host target, and the rollback watchdog.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn, Optional

from . import lockout, netlink
from . import persist as persistence
from .backend import Backend, LiveState, Options, Plan, Step, failed_line
from .errors import ApplyError, BackendUnavailableError, CommandError, NamespaceNotFoundError, NetfilterError
from .model import AddressSet, ModelError, Ruleset, sets_from_dict
from .netns import AddressIndex, namespace_from_hint, resolve_pod_namespace
from .readcache import ReadCache
from .runner import Namespace, Runner, tool_exists
from .targets import pod_label

BACKEND_CHOICES = ("auto", "iptables", "iptables-legacy", "iptables-nft", "nftables")
LOCK_TIMEOUT_SECONDS = 120.0


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The module's arguments, already validated by Ansible."""

    state: str = "present"
    backend: str = "auto"
    options: Options = dataclasses.field(default_factory=Options)
    management_addresses: tuple[str, ...] = ()
    keep_ssh: bool = True
    rollback_timeout: int = 0
    confirm: str = ""
    host_netns: Optional[str] = None
    ssh_from_ancestors: bool = False
    """Also look for the SSH client in the parent processes' environment (the module under become)."""
    check_mode: bool = False
    diff_mode: bool = False
    report_changes: bool = True
    """Return each namespace's structured plan (``changes``) in check and diff mode; the counts come always."""
    state_dir: str = lockout.STATE_DIR
    persist: Optional[persistence.PersistOptions] = None
    """Boot persistence of the host target (``None``: not managed, as in tests of the apply alone)."""
    sets: Mapping[str, AddressSet] = dataclasses.field(default_factory=dict)
    """The host's shared sets (the module's ``sets``, from ``shared_sets``): the rulesets name them with ``shared: true``."""
    pristine_pods: frozenset[str] = frozenset()
    """Pods (by target) a check-mode run found holding nothing of ours: written without a read first (``Backend.create_plan``)."""
    read_cache: bool = True
    """Keep the nf_tables read commands' outputs in ``state_dir`` and reuse them while nothing was committed (``readcache.py``)."""


@dataclasses.dataclass
class Target:
    """One enforcement point of this run."""

    label: str
    namespace: Optional[Namespace]
    ruleset: Optional[Ruleset]
    is_host: bool = False
    skip_reason: str = ""
    pristine: bool = False
    """A check-mode run found nothing of ours here: try writing without reading first."""


def backend_class(name: str) -> type[Backend]:
    """The class behind a backend name (``auto`` resolved before).

    Only the backend a run uses is imported: every module run starts by compiling what it imports from
    the payload's sources (no bytecode travels), and the other backend is about a fifth of it (20 ms of a
    0.35 s module start on Python 3.11).
    """
    if name == "nftables":
        from .nftables import NftablesBackend  # noqa: PLC0415 - imported by the runs that use it

        return NftablesBackend
    from .iptables import IptablesBackend, IptablesLegacyBackend, IptablesNftBackend  # noqa: PLC0415 - as above

    classes: dict[str, type[Backend]] = {
        "iptables": IptablesBackend,
        "iptables-legacy": IptablesLegacyBackend,
        "iptables-nft": IptablesNftBackend,
    }
    if name not in classes:
        raise BackendUnavailableError(f"backend {name!r} is not one of {', '.join(BACKEND_CHOICES)}")
    return classes[name]


def detect_backend(runner: Runner) -> str:
    """``backend: auto``: follow kube-proxy's flavour, else the host's ``iptables`` alternative.

    kube-proxy's own nftables tables come first: the kubelet creates ``KUBE-`` chains in iptables
    (``KUBE-KUBELET-CANARY``) whatever the proxy mode, so those chains alone do not say that
    kube-proxy runs in iptables mode. nf_tables (kube-proxy's tables, iptables-nft's chains) is asked
    over netlink, names only: an ``iptables-nft-save`` of a node's kube-proxy rules costs 0.1 s of CPU
    on every module run. Without netlink here, the tools are asked.
    """
    followed = _kube_proxy_flavour(runner)
    if followed:
        return followed
    default = shutil.which("iptables", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    real = os.path.basename(os.path.realpath(default)) if default else ""
    if "legacy" in real:
        return "iptables-legacy"
    if "nft" in real:
        return "iptables-nft"
    return "iptables"


def _kube_proxy_flavour(runner: Runner) -> Optional[str]:
    """The backend kube-proxy's (or the kubelet's) objects show, or ``None`` when there are none."""

    def kube_chains(save: str) -> bool:
        if not tool_exists(save):
            return False
        try:
            return ":KUBE-" in runner.run([save]).stdout
        except CommandError:
            return False

    try:
        kernel = runner.call_inside(_kube_in_nf_tables)
    except netlink.NetlinkError:
        kernel = None
    if kernel is not None:
        proxy_tables, in_nft = kernel
    else:
        # Each table asked for by name: ``nft list tables`` reads every rule of the host first (0.17 s on a node
        # with 8,000 iptables-nft rules), where a table that does not exist answers at once.
        proxy_tables = tool_exists("nft") and any(
            runner.run(["nft", "-t", "list", "table", family, "kube-proxy"], check=False).returncode == 0 for family in ("ip", "ip6")
        )
        in_nft = not proxy_tables and kube_chains("iptables-nft-save")
    if proxy_tables:
        return "nftables"
    if in_nft:
        return "iptables-nft"
    return "iptables-legacy" if kube_chains("iptables-legacy-save") else None


IPTABLES_TABLES = ("filter", "nat", "mangle", "raw", "security")
"""The tables ``iptables-nft-save`` lists (the IPv4 ones; others in family ip are not iptables')."""


def _kube_in_nf_tables() -> tuple[bool, bool]:
    """(kube-proxy's nftables table exists in family ip or ip6, an iptables-nft table of family ip has a ``KUBE-`` chain)."""
    tables = netlink.nftables_tables()
    if any((family, "kube-proxy") in tables for family in (netlink.NFPROTO_IPV4, netlink.NFPROTO_IPV6)):
        return True, False
    chains = netlink.nftables_chains()
    return False, any(family == netlink.NFPROTO_IPV4 and table in IPTABLES_TABLES and chain.startswith("KUBE-")
                      for family, table, chain in chains)


@contextlib.contextmanager
def namespace_lock(namespace: Namespace, state_dir: str) -> Iterator[str]:
    """Hold our per-namespace lock (a second run waits, then sees the first run's result)."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, f"{namespace.lock_id}.lock")
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    while True:
        handle = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed below, after the unlink)
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise NetfilterError(
                            f"namespace {namespace.label}: another allowlist run held {path} for {LOCK_TIMEOUT_SECONDS:.0f}s; "
                            "wait for it to finish or remove a stale lock holder"
                        ) from None
                    time.sleep(0.05)
        except BaseException:
            handle.close()
            raise
        if _same_file(path, handle.fileno()):
            break
        # The previous holder removed the file as it finished: a lock on a removed file guards nothing.
        handle.close()
    try:
        yield path
    finally:
        # Remove the lock file while still holding it, so /run does not collect one file per namespace
        # ever seen; a waiter that opened the old file notices above and opens the path again.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _same_file(path: str, descriptor: int) -> bool:
    """Whether ``path`` still names the open file ``descriptor``."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (opened.st_dev, opened.st_ino)


def build_targets(ruleset: Optional[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], run: RunOptions,
                  environ: Mapping[str, str]) -> list[Target]:
    """The host target (when ``ruleset`` is given) and one target per pod."""
    targets: list[Target] = []
    if ruleset is not None or (run.state == "absent" and not pods):
        host_namespace = Namespace()
        if run.host_netns:
            found = namespace_from_hint(run.host_netns)
            if found is None:
                raise NetfilterError(f"netns {run.host_netns!r} does not exist: create it or fix the name")
            host_namespace = found
        host_ruleset = _parse_ruleset(ruleset, "the host ruleset", run.sets) if run.state == "present" else None
        if host_ruleset is not None and run.keep_ssh:
            host_ruleset = lockout.with_management_access(host_ruleset, management_addresses(run, environ))
        targets.append(Target("host", host_namespace, host_ruleset, is_host=True))
    index = AddressIndex()
    parsed: dict[str, Ruleset] = {}
    for pod in pods:
        label = pod_label(pod)
        pod_ruleset = _parse_pod_ruleset(pod.get("ruleset"), f"pod {label}", run.sets, parsed) if run.state == "present" else None
        try:
            namespace = resolve_pod_namespace(pod, index=index)
        except NamespaceNotFoundError as error:
            targets.append(Target(label, None, pod_ruleset, skip_reason=str(error)))
            continue
        targets.append(Target(label, namespace, pod_ruleset, pristine=label in run.pristine_pods))
    return targets


def management_addresses(run: RunOptions, environ: Mapping[str, str]) -> list[str]:
    """The addresses SSH stays open from: ``management_addresses`` and the SSH client this run came from."""
    addresses = list(run.management_addresses)
    client = lockout.ssh_client_address(environ)
    if client is None and run.ssh_from_ancestors:
        client = lockout.ssh_client_from_process_tree()
    if client:
        addresses.append(client)
    return addresses


def shared_sets(sets: Optional[Mapping[str, Any]], ruleset: Optional[Mapping[str, Any]],
                pods: Sequence[Mapping[str, Any]]) -> dict[str, AddressSet]:
    """The module's ``sets``, each parsed once, after checking that every set a ruleset names as shared is there.

    Called before anything else of a run, so a plan cut wrong fails whole, naming the ruleset and the set.
    """
    try:
        parsed = sets_from_dict({} if sets is None else sets)
    except ModelError as error:
        raise NetfilterError(f"sets: {error}") from error
    named = [("the host ruleset", ruleset)] + [(f"pod {pod_label(pod)}", pod.get("ruleset")) for pod in pods if isinstance(pod, Mapping)]
    for what, data in named:
        items = data.get("address_sets") if isinstance(data, Mapping) else None
        for item in items if isinstance(items, list) else ():
            name = item.get("name") if isinstance(item, Mapping) and item.get("shared") is True else None
            if isinstance(name, str) and name not in parsed:
                raise NetfilterError(f"{what}: address set {name!r} is shared, but sets has no set of that name "
                                     "(pass the compiled plan's sets of this host beside its rulesets)")
    return parsed


def _parse_pod_ruleset(data: Optional[Mapping[str, Any]], what: str, sets: Mapping[str, AddressSet],
                       parsed: dict[str, Ruleset]) -> Optional[Ruleset]:
    """:func:`_parse_ruleset` once per distinct ruleset of a run: a node's pods share a handful (one per workload
    and policy), and building the model (every rule and set checked) costs far more than its JSON text."""
    try:
        key = json.dumps(data, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return _parse_ruleset(data, what, sets)
    found = parsed.get(key)
    if found is None:
        found = _parse_ruleset(data, what, sets)
        if found is not None:
            parsed[key] = found
    return found


def _parse_ruleset(data: Optional[Mapping[str, Any]], what: str, sets: Mapping[str, AddressSet]) -> Optional[Ruleset]:
    if data is None:
        raise NetfilterError(f"{what}: state present needs a ruleset (the compiled plan's ruleset field is null)")
    try:
        return Ruleset.from_dict(data, sets)
    except ModelError as error:
        raise NetfilterError(f"{what}: {error}") from error


def run(ruleset: Optional[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], run_options: RunOptions,
        environ: Mapping[str, str]) -> dict[str, Any]:
    """One module run; returns the module result (``failed`` set when a namespace failed)."""
    # Ansible reserves a top-level ``skipped`` (a bool): skipped pods are ``skipped_pods``.
    result: dict[str, Any] = {"changed": False, "results": [], "skipped_pods": []}
    # Rollbacks belong to the host target's namespace (the root one, or ``netns`` in tests and labs).
    host_namespace = namespace_from_hint(run_options.host_netns) if run_options.host_netns else Namespace()
    host_id = (host_namespace or Namespace()).lock_id
    previous = lockout.collect_rollbacks(run_options.state_dir, mark_reported=not run_options.check_mode, host=host_id)
    result["rolled_back"] = bool(previous)
    if previous:
        result["rollbacks"] = previous
    if run_options.confirm:
        try:
            result.update(lockout.confirm(run_options.confirm, run_options.state_dir))
        except lockout.RollbackError as error:
            # A refused confirmation fails the run but keeps the rollback report collected above: this
            # call marked it reported, so it would otherwise be lost to the controller.
            result.update(failed=True, msg=str(error), confirmed=False)
            return result
        if ruleset is None and not pods:
            return result
    targets = build_targets(ruleset, pods, run_options, environ)
    if not targets:
        # A status call (no ruleset, no pods): only the rollback report above.
        return result
    backend_name = run_options.backend
    if backend_name == "auto":
        probe = next((target.namespace for target in targets if target.is_host and target.namespace), Namespace())
        backend_name = detect_backend(Runner(probe))
    cls = backend_class(backend_name)
    result["backend"] = backend_name
    read_cache = ReadCache.load(run_options.state_dir, host_id) if run_options.read_cache else None
    rollback_targets, errors = _apply_targets(cls, targets, run_options, result, read_cache)
    if read_cache is not None:
        try:
            read_cache.save()
        except OSError as error:
            # A cache that cannot be kept costs the next run its reads, nothing else.
            result.setdefault("warnings", []).append(f"could not keep the read cache {read_cache.path}: {error}")
    if run_options.persist is not None:
        _persist_host(cls, targets, run_options, environ, result, rollback_targets=rollback_targets)
    if run_options.diff_mode:
        # Ansible's --diff shows a list of before/after pairs, one per namespace.
        result["diff"] = [
            {"before_header": f"{entry['target']} ({entry['namespace']})", "after_header": f"{entry['target']} ({entry['namespace']})",
             "before": entry["diff"]["before"], "after": entry["diff"]["after"]}
            for entry in result["results"]
            if "diff" in entry
        ] + result.pop("persist_diff", [])
    if run_options.rollback_timeout > 0 and rollback_targets and not run_options.check_mode:
        result["rollback"] = lockout.start_watchdog(rollback_targets, run_options.rollback_timeout, run_options.state_dir, host_id)
    if errors:
        result["failed"] = True
        result["msg"] = "; ".join(errors)
    return result


def _persist_host(cls: type[Backend], targets: Sequence[Target], run_options: RunOptions, environ: Mapping[str, str],
                  result: dict[str, Any], *, rollback_targets: Sequence[lockout.RollbackTarget]) -> None:
    """Write (or remove) the host target's boot restore once its apply succeeded; see ``persist.py``.

    When the host's rules are under a rollback watchdog, the watchdog also puts the persisted files
    back: a host that restores its previous rules must not boot into the ones it rolled back.
    """
    options = run_options.persist
    host = next((target for target in targets if target.is_host), None)
    if options is None or host is None or host.namespace is None:
        return
    entry: dict[str, Any] = next((item for item in result["results"] if item.get("target") == host.label), {})
    if entry.get("failed"):
        result["persist"] = {"changed": False, "skipped": "the host apply failed; the persisted rules were left as they were"}
        return
    present = run_options.state == "present"
    backend = cls(Runner(host.namespace), run_options.options) if present else None
    management = management_addresses(run_options, environ) if run_options.keep_ssh else list(run_options.management_addresses)
    outcome = persistence.persist(backend, host.ruleset, management, options, present=present, check_mode=run_options.check_mode)
    warnings = outcome.pop("warnings")
    diffs = outcome.pop("diff")
    previous = outcome.pop("previous", [])
    host_rollback = next((item for item in rollback_targets if item.namespace == host.namespace), None)
    if previous and host_rollback is not None:
        host_rollback.steps.append(persistence.restore_step(previous, options))
    if warnings:
        result.setdefault("warnings", []).extend(warnings)
    if run_options.diff_mode and diffs:
        result.setdefault("persist_diff", []).extend(diffs)
    result["persist"] = outcome
    result["changed"] = result["changed"] or outcome["changed"]


def _apply_targets(cls: type[Backend], targets: Sequence[Target], run_options: RunOptions, result: dict[str, Any],
                   read_cache: Optional[ReadCache] = None) -> tuple[list[lockout.RollbackTarget], list[str]]:
    """Apply every target in turn; a failing namespace is reported and the others still run."""
    rollback_targets: list[lockout.RollbackTarget] = []
    errors: list[str] = []
    checked = False
    for target in targets:
        if target.namespace is None:
            entry = {"target": target.label, "namespace": None, "changed": False, "skipped": True, "reason": target.skip_reason}
            result["results"].append(entry)
            result["skipped_pods"].append({"target": target.label, "reason": target.skip_reason})
            continue
        runner = Runner(target.namespace, read_cache=read_cache)
        # The tools and the kernel's support are the same in every namespace of the host: asked once, not
        # once per pod (a node with 100 pods would otherwise start 100 more processes).
        unavailable = cls.available(runner) if not checked else None
        checked = True
        if unavailable:
            raise BackendUnavailableError(unavailable)
        backend = cls(runner, run_options.options)
        try:
            entry, restore = apply_target(backend, target, run_options)
        except NetfilterError as error:
            errors.append(str(error))
            entry = {"target": target.label, "namespace": target.namespace.label, "changed": False, "failed": True, "msg": str(error)}
            restore = None
        result["results"].append(entry)
        result["changed"] = result["changed"] or bool(entry.get("changed"))
        if restore is not None:
            rollback_targets.append(restore)
    return rollback_targets, errors


def apply_target(backend: Backend, target: Target, run_options: RunOptions) -> tuple[dict[str, Any], Optional[lockout.RollbackTarget]]:
    """Read, plan, apply and verify one namespace under its lock."""
    if target.namespace is None:  # skipped targets never get here
        raise ApplyError(f"{target.label}: no network namespace to apply to")
    desired = target.ruleset
    with namespace_lock(target.namespace, run_options.state_dir) as lock_path:
        written = _create_without_reading(backend, desired) if target.pristine and not run_options.check_mode else None
        if written is None:
            live = _read_for_plan(backend, desired, run_options)
            plan = backend.plan(desired, live)
        else:
            live, plan = written
        entry: dict[str, Any] = {
            "target": target.label,
            "namespace": target.namespace.label,
            "changed": plan.changed,
            "rules": desired.rule_count() if desired else 0,
            "set_members": desired.member_count() if desired else 0,
            "drift": plan.drift,
            "skipped": False,
            "reason": "",
            # What this namespace gains and loses, and what was in place: the enforce role's summary and change guard.
            **plan.changes.counts(),
        }
        if run_options.report_changes and (run_options.check_mode or run_options.diff_mode):
            # The rules and sets themselves (the audit's material): only when asked to look, not on every enforce run.
            entry["changes"] = plan.changes.to_dict()
        if run_options.diff_mode:
            entry["diff"] = {"before": plan.before, "after": plan.after}
        restore: Optional[lockout.RollbackTarget] = None
        if plan.changed and not run_options.check_mode:
            if written is None:
                _apply_or_restore(backend, plan.steps, live)
            # What a write made is always read back; where it holds exactly what was written, the kernel says so.
            after = _exactly(backend, desired) if run_options.rollback_timeout <= 0 else None
            if after is None:
                after = backend.read()
            leftover = backend.plan(desired, after)
            if leftover.changed:
                # Another tool may have raced us (kube-proxy prepending its own jump above
                # ours right after our commit): repair once more before giving up.
                _apply_or_restore(backend, leftover.steps, live)
                after = backend.read()
                leftover = backend.plan(desired, after)
            if leftover.changed:
                _restore(backend, live, after)
                raise ApplyError(
                    f"namespace {target.namespace.label}: the rules did not stick (still differing after apply: "
                    f"{'; '.join(leftover.drift) or ', '.join(step.what for step in leftover.steps)}); restored the previous rules. "
                    "Is another tool rewriting our chains?",
                    namespace=target.namespace.label,
                )
            if run_options.rollback_timeout > 0:
                restore = lockout.RollbackTarget(target.namespace, lock_path, backend.restore_steps(live, after))
        runner = backend.runner
        entry["commands"] = {"reads": runner.reads, "writes": runner.writes, "cached_reads": runner.cached_reads,
                             "netlink_reads": runner.netlink_reads}
    return entry, restore


def _read_for_plan(backend: Backend, desired: Optional[Ruleset], run_options: RunOptions) -> LiveState:
    """What the plan starts from: a read, unless a look without a command can tell what it would find.

    A namespace that holds nothing of ours (a pod's before its first enforce), or exactly ``desired`` (a pod's on
    every later run that changes nothing), is known so without a command. Diff mode reads: its texts show our
    rules as the tools print them.
    """
    # Exactly what is desired first: a no-op run asks that of every namespace, and in a fresh one it fails at its first
    # question (no chain of ours), where the look for nothing of ours asks two.
    exact = _exactly(backend, desired) if not run_options.diff_mode else None
    if exact is not None:
        return exact
    return backend.nothing_of_ours() if backend.holds_nothing_of_ours() else backend.read()


def _exactly(backend: Backend, desired: Optional[Ruleset]) -> Optional[LiveState]:
    return backend.holding_exactly(desired) if desired is not None else None


def _create_without_reading(backend: Backend, desired: Optional[Ruleset]) -> Optional[tuple[LiveState, Plan]]:
    """Write ``desired`` into a namespace believed to hold nothing of ours, without reading it first.

    Returns what a read would have found and the plan from it, once written. ``None`` when the backend
    cannot write this way, or when a step failed on a line that creates a chain or a set: that object of
    ours was there after all (a run in between), and the caller reads and applies the usual way (the
    steps before the failing line made only objects of ours that are right, see ``Backend.create_plan``).
    Any other failure is the write's own: what it made is removed, as a failed apply restores the state
    read before it, and the error is raised. The verification read that follows every write still
    compares the whole namespace with ``desired``.
    """
    plan = backend.create_plan(desired) if desired is not None else None
    if plan is None or not plan.changed:
        return None
    empty = backend.nothing_of_ours()
    for step in plan.steps:
        try:
            backend.apply([step])
        except ApplyError as error:
            if _failed_creating(step, error):
                return None
            _restore_and_raise(backend, empty, error)
    return empty, plan


def _failed_creating(step: Step, error: ApplyError) -> bool:
    """Whether ``step`` failed on a line that creates a chain (``-N``) or a set (``create``): the object existed."""
    cause = error.__cause__
    line = failed_line(cause.stderr) if isinstance(cause, CommandError) else 0
    lines = step.stdin.splitlines()
    return 0 < line <= len(lines) and lines[line - 1].startswith(("-N ", "create "))


def _apply_or_restore(backend: Backend, steps: Sequence[Step], live: LiveState) -> None:
    try:
        backend.apply(steps)
    except ApplyError as error:
        _restore_and_raise(backend, live, error)


def _restore_and_raise(backend: Backend, live: LiveState, error: ApplyError) -> NoReturn:
    """After a failed write: put our objects back as ``live`` found them, and raise ``error`` saying so."""
    try:
        _restore(backend, live, backend.read())
    except NetfilterError as restore_error:
        raise ApplyError(f"{error}; restoring the previous rules ALSO failed: {restore_error}", error.namespace, error.rule) from error
    raise ApplyError(f"{error} (the previous rules were restored)", error.namespace, error.rule) from error


def _restore(backend: Backend, target: LiveState, current: LiveState) -> None:
    steps = backend.restore_steps(target, current)
    if steps:
        backend.apply(steps)
