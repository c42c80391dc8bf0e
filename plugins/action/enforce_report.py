# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright: contributors to zerotrust.workloads
"""zerotrust.workloads.enforce_report: the enforce role's change guard and run summary.

Runs on the controller only and never connects to a host. It reads what the
``allowlist`` module returned per host (the check-mode preview, the apply, the
confirmation) and counts, per host and per pod, the rules and set members that were
(or would be) added and removed. The module reports those counts per namespace
(``rules_added``, ``rules_removed``, ``set_members_added``, ``set_members_removed``,
``in_place``: derived from the structured plan, docs/contracts.md section 4); a namespace that failed carries none and
counts as zero. Documentation: plugins/modules/enforce_report.py.

With ``registered`` the action reads those results from each host's variables itself, untemplated:
passing them as templated arguments (``map('extract', hostvars)``) walked and copied every host's
per-namespace results several times, seconds per run at hundreds of pods.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

__all__ = ["ActionModule", "hosts_to_write", "registered_results", "summarise"]

COUNT_KEYS = ("rules_added", "rules_removed", "set_members_added", "set_members_removed")


def _entries(result: Any) -> list[Mapping[str, Any]]:
    if not isinstance(result, Mapping):
        return []
    entries = result.get("results") or []
    return [entry for entry in entries if isinstance(entry, Mapping)]


def namespace_report(entry: Mapping[str, Any], applied: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """One namespace's line of the summary: counts from the preview, ``changed`` from the apply if it ran."""
    # The module counted them per namespace, from the same before/after texts as its diff.
    counts = {key: int(entry.get(key) or 0) for key in (*COUNT_KEYS, "in_place")}
    changed = bool(entry.get("changed")) if applied is None else bool(applied.get("changed"))
    report: dict[str, Any] = {"changed": changed, **counts, "rules": int(entry.get("rules") or 0)}
    if not changed:
        # Nothing was (or would be) written: a diff text that differs only in formatting is no change.
        report.update(dict.fromkeys(COUNT_KEYS, 0))
    drift = list(entry.get("drift") or [])
    if drift:
        report["drift"] = drift
    if entry.get("failed") or (applied is not None and applied.get("failed")):
        report["failed"] = str((applied or {}).get("msg") or entry.get("msg") or "failed")
    return report


def _namespace_lines(preview: Mapping[str, Any], applied: Any, check_mode: bool) -> tuple[dict[str, Any], list[dict[str, str]], bool]:
    """Per-namespace lines of one host (``host`` and pods), its skipped pods, and whether the apply ran."""
    apply_ran = isinstance(applied, Mapping) and not applied.get("skipped") and "results" in applied
    applied_entries = {str(entry.get("target")): entry for entry in _entries(applied)} if apply_ran else {}
    lines: dict[str, Any] = {}
    skipped: list[dict[str, str]] = []
    for entry in _entries(preview):
        target = str(entry.get("target"))
        if entry.get("skipped"):
            skipped.append({"pod": target, "reason": str(entry.get("reason") or "")})
        elif apply_ran:
            lines[target] = namespace_report(entry, applied_entries.get(target, {"changed": False}))
        elif check_mode or not preview.get("changed"):
            lines[target] = namespace_report(entry, None)
        else:
            lines[target] = namespace_report(entry, {"changed": False, "failed": True, "msg": "not applied (the apply did not run)"})
    return lines, skipped, apply_ran


def host_report(preview: Any, applied: Any, rollback: Optional[Mapping[str, Any]], check_mode: bool) -> dict[str, Any]:
    """Everything the summary says about one VM or node."""
    if not isinstance(preview, Mapping) or not preview or preview.get("skipped"):
        return {"status": "not run", "reason": "the host left the play before the preview (unreachable or failed earlier)"}
    if preview.get("unreachable") or preview.get("failed"):
        return {"status": "failed", "reason": str(preview.get("msg") or "preview failed")}
    lines, skipped, apply_ran = _namespace_lines(preview, applied, check_mode)
    pods = {target: line for target, line in lines.items() if target != "host"}
    report: dict[str, Any] = {"status": "unchanged", "pods": pods, "skipped_pods": skipped}
    if "host" in lines:
        report["host"] = lines["host"]
    changed = any(line.get("changed") for line in lines.values())
    if rollback:
        report["status"] = "rolled back"
        report["reason"] = str(rollback.get("reason") or "the confirmation did not arrive; the host restored its previous rules")
        for line in lines.values():
            line["changed"] = False
    elif isinstance(applied, Mapping) and applied.get("unreachable"):
        report["status"] = "unreachable"
        report["reason"] = f"lost after the write: {str(applied.get('msg') or '').strip()}"
    elif check_mode:
        report["status"] = "would change" if changed else "unchanged"
    elif apply_ran and applied.get("failed"):
        report["status"] = "failed"
        report["reason"] = str(applied.get("msg") or "apply failed")
    elif changed:
        report["status"] = "changed"
    return report


RESULT_KINDS = ("previews", "applied", "rollbacks")


def _host_variables(hostvars: Any, host: str) -> Mapping[str, Any]:
    """A host's variables as stored, not templated (registered results hold data, not templates)."""
    raw_get = getattr(hostvars, "raw_get", None)
    variables = raw_get(host) if callable(raw_get) else hostvars.get(host) if isinstance(hostvars, Mapping) else None
    return variables if isinstance(variables, Mapping) else {}


def registered_results(hostvars: Any, hosts: Iterable[str], names: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per kind in ``names`` (previews, applied, rollbacks -> variable name): inventory hostname -> that host's variable.

    Hosts without the variable are left out (a host that left the play before the task registered nothing).
    """
    found: dict[str, dict[str, Any]] = {kind: {} for kind in names}
    for host in hosts:
        variables = _host_variables(hostvars, host)
        for kind, name in names.items():
            value = variables.get(name)
            if value is not None:
                found[kind][host] = value
    return found


def hosts_to_write(previews: Mapping[str, Any], plan_hosts: Iterable[str], play_hosts: Iterable[str]) -> list[str]:
    """The play hosts (in play order) whose preview found something to write: a namespace's rules or sets, or the boot files.

    Made once for the play here, so that the role can let every other host leave before the apply (Ansible starts
    a process per host and task, also for a task it then skips) and run the apply on these hosts only.
    """
    in_plan = set(plan_hosts)
    writers = []
    for host in play_hosts:
        preview = previews.get(host)
        if host not in in_plan or not isinstance(preview, Mapping):
            continue
        persist = preview.get("persist")
        if any(entry.get("changed") for entry in _entries(preview)) or (isinstance(persist, Mapping) and persist.get("changed")):
            writers.append(host)
    return writers


TOTAL_KEYS = (*COUNT_KEYS, "in_place", "hosts_changed", "namespaces_changed", "pods_skipped", "hosts_failed", "hosts_rolled_back")


def summarise(
    plan_hosts: Iterable[str],
    play_hosts: Iterable[str],
    *,
    previews: Mapping[str, Any],
    applied: Mapping[str, Any],
    rollbacks: Mapping[str, Any],
    check_mode: bool,
) -> dict[str, Any]:
    """The whole run's summary (what ``set_stats`` hands to AWX as ``zerotrust_enforce``)."""
    in_play = set(play_hosts)
    hosts: dict[str, Any] = {}
    totals = dict.fromkeys(TOTAL_KEYS, 0)
    for host in sorted(plan_hosts):
        if host not in in_play:
            hosts[host] = {"status": "not in play", "reason": "the plan names this host but the play does not target it (--limit, hosts:)"}
            continue
        rollback = rollbacks.get(host)
        rollback = rollback if isinstance(rollback, Mapping) and rollback else None
        report = host_report(previews.get(host), applied.get(host), rollback, check_mode)
        hosts[host] = report
        lines = [report["host"]] if "host" in report else []
        lines.extend(report.get("pods", {}).values())
        for line in lines:
            if report["status"] != "rolled back":
                for key in COUNT_KEYS:
                    totals[key] += int(line.get(key, 0))
            totals["in_place"] += int(line.get("in_place", 0))
            totals["namespaces_changed"] += int(bool(line.get("changed")))
        totals["pods_skipped"] += len(report.get("skipped_pods", []))
        totals["hosts_changed"] += int(report["status"] in ("changed", "would change"))
        totals["hosts_failed"] += int(report["status"] in ("failed", "not run", "unreachable"))
        totals["hosts_rolled_back"] += int(report["status"] == "rolled back")
    return {"check_mode": check_mode, "hosts": hosts, "totals": totals}


def change_percent(totals: Mapping[str, int]) -> Optional[float]:
    """Added plus removed as a percentage of what is in place; None when nothing is in place (a first run)."""
    if not totals.get("in_place"):
        return None
    moved = sum(int(totals.get(key, 0)) for key in COUNT_KEYS)
    return round(100.0 * moved / int(totals["in_place"]), 1)


def render_lines(summary: Mapping[str, Any]) -> list[str]:
    """The summary as short lines for the play's output."""
    lines: list[str] = []

    def counts(line: Mapping[str, Any]) -> str:
        return (
            f"rules +{line.get('rules_added', 0)} -{line.get('rules_removed', 0)}, "
            f"set members +{line.get('set_members_added', 0)} -{line.get('set_members_removed', 0)}"
        )

    for host, report in summary["hosts"].items():
        reason = f" ({report['reason']})" if report.get("reason") else ""
        own = f": {counts(report['host'])}" if "host" in report else ""
        lines.append(f"{host}: {report['status']}{reason}{own}")
        for pod, line in report.get("pods", {}).items():
            lines.append(f"  pod {pod}: {'changed' if line.get('changed') else 'unchanged'}, {counts(line)}")
        for skipped in report.get("skipped_pods", []):
            lines.append(f"  pod {skipped['pod']}: skipped ({skipped['reason']})")
    totals = summary["totals"]
    lines.append(
        f"total: {totals['hosts_changed']} hosts and {totals['namespaces_changed']} namespaces "
        f"{'would change' if summary['check_mode'] else 'changed'}, {counts(totals)}, "
        f"{totals['pods_skipped']} pods skipped, {totals['hosts_failed']} hosts failed, {totals['hosts_rolled_back']} rolled back"
    )
    return lines


class ActionModule(ActionBase):  # type: ignore[misc]
    """Summarise (and guard) an enforce run on the controller."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("plan_hosts", "play_hosts", *RESULT_KINDS, "registered", "check_mode", "max_change_percent", "details"))
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Build the summary; with ``max_change_percent`` > 0, fail when the change exceeds it."""
        result: dict[str, Any] = super().run(tmp, task_vars)
        args = self._task.args
        plan_hosts = args.get("plan_hosts") or []
        if isinstance(plan_hosts, (str, Mapping)) or not all(isinstance(host, str) for host in plan_hosts):
            raise AnsibleActionFail("enforce_report: plan_hosts must be a list of inventory hostnames (the keys of the plan's hosts)")
        for name in RESULT_KINDS:
            if not isinstance(args.get(name, {}), Mapping):
                raise AnsibleActionFail(f"enforce_report: {name} must be a mapping of inventory hostname to result")
        results = {name: args.get(name) or {} for name in RESULT_KINDS}
        play_hosts = list(args.get("play_hosts") or [])
        registered = args.get("registered")
        if registered is not None:
            if not isinstance(registered, Mapping) or not all(
                kind in RESULT_KINDS and isinstance(name, str) and name for kind, name in registered.items()
            ):
                raise AnsibleActionFail(
                    "enforce_report: registered must map previews, applied or rollbacks to the name of a host variable "
                    "(registered: {previews: enforce_preview})"
                )
            given = sorted(kind for kind in registered if args.get(kind))
            if given:
                raise AnsibleActionFail(f"enforce_report: {', '.join(given)} given both directly and in registered: give each in one place")
            in_play = set(play_hosts)
            hosts = [host for host in plan_hosts if host in in_play]
            results.update(registered_results((task_vars or {}).get("hostvars"), hosts, registered))
        summary = summarise(
            list(plan_hosts),
            play_hosts,
            previews=results["previews"],
            applied=results["applied"],
            rollbacks=results["rollbacks"],
            check_mode=bool(args.get("check_mode", False)),
        )
        percent = change_percent(summary["totals"])
        summary["totals"]["change_percent"] = percent
        if not boolean(args.get("details", True), strict=False):
            # The guard's view: each host's status and the totals. Every pod's counts make the result large at
            # thousands of pods, and Ansible copies a result several times on its way to the callbacks.
            summary["hosts"] = {
                host: {key: report[key] for key in ("status", "reason") if key in report} for host, report in summary["hosts"].items()
            }
        writers = hosts_to_write(results["previews"], plan_hosts, play_hosts)
        result.update(changed=False, summary=summary, lines=render_lines(summary), writers=writers)
        limit = int(args.get("max_change_percent") or 0)
        if limit > 0 and percent is not None and percent > limit:
            totals = summary["totals"]
            result.update(
                failed=True,
                msg=(
                    f"refusing to write: the change is {percent}% of the {totals['in_place']} rules and set members in place "
                    f"(rules +{totals['rules_added']}/-{totals['rules_removed']}, "
                    f"set members +{totals['set_members_added']}/-{totals['set_members_removed']}), "
                    f"above enforce_max_change_percent={limit}. No host was changed. "
                    "Check the inventory (a cluster or group missing?) and the policy; if the change is intended, "
                    "run again with a higher enforce_max_change_percent (0 switches the guard off)."
                ),
            )
        return result
