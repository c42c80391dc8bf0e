# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# Copyright: contributors to zerotrust.workloads
"""Inventory plugin: Kubernetes pods, services and nodes as hosts beside any other inventory."""

from __future__ import annotations

DOCUMENTATION = r"""
name: kubernetes
short_description: Kubernetes pods, services and nodes as hosts with workload records
version_added: 0.1.0
description:
  - Reads Nodes, Namespaces, Pods, Services and EndpointSlices from one or more clusters, with one paginated
    cluster-wide LIST per kind (C(limit)/C(continue), re-listed after a 410 Gone), and turns them into hosts
    and groups, so that pods, services, nodes and the VMs of any other inventory source stand side by side.
  - One host per running pod with an IP (not per container), one per service, one per node. Every host gets
    the C(workload) record of the collection's contract (for pods with their UID, IPs, container IDs and
    node name); pods also get C(ansible_host) (their node's InternalIP) and C(zt_enforce_host) (their
    node's inventory hostname).
  - Services are logical hosts, their C(ansible_connection) is C(zerotrust.workloads.logical), which fails
    at once with a clear message instead of timing out. Target the group C(service_<namespace>_<name>) to
    reach the pods a service selects.
  - "Groups (all sanitised to valid names): C(k8s_cluster_<cluster>), C(k8s_pods), C(k8s_services),
    C(k8s_nodes), C(k8s_namespace_<namespace>), C(k8s_node_<node>) (the pods running there),
    C(label_<key>_<value>) and C(service_<namespace>_<name>)."
  - Any failure (lost connection, 401/403, timeout, malformed body, missing kind, interrupted pagination)
    fails the whole inventory with an error naming the cluster, the call and the cause; no partial cluster
    is ever returned. Tokens and keys never appear in hostvars, output or errors.
  - The configuration file name must end in C(.kubernetes.yml) or C(.kubernetes.yaml), or in C(.k8s.yml) or C(.k8s.yaml)
    as kubernetes.core's files do; a file naming this plugin under another name is refused with a warning that says so.
  - Annotations are copied into C(workload.annotations) except C(kubectl.kubernetes.io/last-applied-configuration), which
    C(kubectl apply) fills with the whole object again (see O(drop_annotations) and O(keep_annotations)).
  - Needs only C(urllib3) and C(PyYAML) for static credentials; kubeconfig users with C(exec) or
    C(auth-provider) need the C(kubernetes) Python package.
notes:
  - The connection settings take kubernetes.core's names too, aliases included (C(ssl_ca_cert), C(verify_ssl),
    C(cert_file), C(key_file)), with its proxy and impersonation settings. Basic authentication (C(username),
    C(password)) is refused with a clear message, as Kubernetes removed it in 1.19.
  - With ansible-core's default settings a source that fails is reported as a warning and left out; set
    C(inventory_any_unparsed_is_failed) (C(ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED=true)) so that a failure fails the run.
  - Large clusters. The plugin reads and builds 10,000 pods in about a second, but C(ansible-inventory --list) then
    spends several more on ansible-core's own work for each host (its variables resolved, each value encoded), as it
    would for the same hosts from any source; C(--graph) skips most of it. Every host variable is paid for per host,
    so nothing in C(workload) is repeated in other variables. Constructed expressions (C(compose), C(groups),
    C(keyed_groups)) cost about half a millisecond per expression and host, as ansible-core compiles each anew for
    every host (three of them add some 18 seconds at 10,000 pods).
author:
  - zerotrust.workloads maintainers (@zerotrust)
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks this file as a configuration of this plugin.
    required: true
    type: str
    choices: [zerotrust.workloads.kubernetes]
  connections:
    description:
      - The clusters to read. Without it, one cluster from the C(K8S_AUTH_*) variables, C(~/.kube/config)
        or the pod's service account.
      - Each setting not given falls back to the variable kubernetes.core reads
        (C(K8S_AUTH_HOST), C(K8S_AUTH_API_KEY), C(K8S_AUTH_KUBECONFIG), C(K8S_AUTH_CONTEXT),
        C(K8S_AUTH_SSL_CA_CERT), C(K8S_AUTH_CERT_FILE), C(K8S_AUTH_KEY_FILE), C(K8S_AUTH_VERIFY_SSL),
        C(K8S_AUTH_PROXY), C(K8S_AUTH_NO_PROXY), C(K8S_AUTH_IMPERSONATE_USER), C(K8S_AUTH_IMPERSONATE_GROUPS)),
        as AWX's "OpenShift or Kubernetes API Bearer Token" credential injects them.
    type: list
    elements: dict
    suboptions:
      name:
        description:
          - The cluster's name in host names, groups and C(workload.cluster).
          - Defaults to the kubeconfig context's name, else the API host's name, else C(in-cluster).
        type: str
      kubeconfig:
        description: Path to a kubeconfig file (C(a:b) lists as in C(KUBECONFIG) are merged).
        type: path
      context:
        description: The kubeconfig context; defaults to its current-context.
        type: str
      host:
        description: The API URL, e.g. C(https://api.example.com:6443).
        type: str
      api_key:
        description: A bearer token. Never shown in output or errors.
        type: str
      ca_cert:
        description: CA certificate file that signs the API server's certificate.
        type: path
        aliases: [ssl_ca_cert]
      client_cert:
        description: Client certificate file for certificate authentication.
        type: path
        aliases: [cert_file]
      client_key:
        description: Key of O(connections[].client_cert).
        type: path
        aliases: [key_file]
      validate_certs:
        description:
          - Verify the API server's certificate (the default, unless the kubeconfig says C(insecure-skip-tls-verify)).
            Only turn it off for throw-away test clusters.
        type: bool
        aliases: [verify_ssl]
      proxy:
        description:
          - An HTTP proxy to reach the API through, C(http://HOST:PORT) (HTTPS goes through it with C(CONNECT), and the API
            server's certificate is still verified end to end). A kubeconfig cluster's C(proxy-url) is used the same way.
        type: str
      no_proxy:
        description:
          - API hosts reached directly although O(connections[].proxy) is set, as a list or comma-separated text of host
            names (C(.example.com) matches its subdomains), addresses or CIDRs, or C(*) for every host.
        type: list
        elements: str
      proxy_headers:
        description:
          - C(proxy_basic_auth) (C(USER:PASSWORD), sent to the proxy only and never shown) and C(user_agent), as in
            kubernetes.core.
        type: dict
      impersonate_user:
        description: Act as this user (C(Impersonate-User)); the credentials need the C(impersonate) permission.
        type: str
      impersonate_groups:
        description: Act with these groups too (one C(Impersonate-Group) header each); needs O(connections[].impersonate_user).
        type: list
        elements: str
      persist_config:
        description: Accepted for kubernetes.core compatibility and ignored; this plugin never writes the kubeconfig.
        type: bool
      in_cluster:
        description:
          - Use the pod's service account (token and CA under /var/run/secrets/kubernetes.io/serviceaccount).
            Defaults to false.
        type: bool
      namespaces:
        description:
          - Only these namespaces. When a cluster-wide list is forbidden (RBAC bound per namespace),
            the plugin lists each of these namespaces instead.
        type: list
        elements: str
  host_format:
    description:
      - Host name formats per kind, with the placeholders C({name}), C({namespace}), C({cluster}), C({kind}),
        C({uid}) and C({node}). Every value is made host-safe (C([A-Za-z0-9._-])).
      - Nodes default to their name so that they match an SSH inventory of the same machines. Objects whose
        names collide (e.g. nodes of two clusters) all get the cluster-qualified form and a warning.
    type: dict
    default:
      pod: "{name}.{namespace}.pod.{cluster}"
      service: "{name}.{namespace}.service.{cluster}"
      node: "{name}"
  kinds:
    description: Which kinds become hosts. Nodes are read for pods' addresses only when listed here.
    type: list
    elements: str
    choices: [pods, services, nodes]
    default: [pods, services, nodes]
  label_selectors:
    description:
      - Label selector per kind (keys C(pods), C(services), C(nodes)), in the Kubernetes API's syntax.
      - For example C(pods) set to V(app=wordpress,tier!=batch) or to a set-based V(tier in (frontend,backend\)).
    type: dict
    default: {}
  field_selectors:
    description: Field selector per kind, for example C(pods) set to C(status.phase=Running).
    type: dict
    default: {}
  skip_pod_phases:
    description: Pods in these phases are not hosts. Pods without an IP never are.
    type: list
    elements: str
    default: [Pending, Succeeded, Failed]
  drop_annotations:
    description:
      - Annotations left out of C(workload.annotations), by key; shell wildcards (C(*), C(?), C([...])) are allowed.
      - The default drops C(kubectl.kubernetes.io/last-applied-configuration), the whole object again as JSON on every
        object created with C(kubectl apply). Set V([]) to keep every annotation.
      - Applied after O(keep_annotations). Node tunnel addresses are read before either applies.
    type: list
    elements: str
    default: [kubectl.kubernetes.io/last-applied-configuration]
  keep_annotations:
    description:
      - When set, only annotations whose key matches one of these (shell wildcards allowed) are kept, for example
        V([team, "example.com/*"]) for the annotations the policy filters on (C(annotation.<key>)).
      - Empty (the default) keeps every annotation not in O(drop_annotations).
    type: list
    elements: str
    default: []
  page_size:
    description: Objects per LIST page (the C(limit) parameter).
    type: int
    default: 500
  request_timeout:
    description: Seconds to wait for each API answer.
    type: float
    default: 30
  vulnerabilities:
    description:
      - V(trivy) also lists trivy-operator's C(VulnerabilityReports) (C(aquasecurity.github.io/v1alpha1)) cluster-wide, paginated
        like every other kind, joins them to pods through owner references and container names, and gives each pod
        C(workload.vulnerabilities) with C(critical), C(high), C(medium), C(low) and C(unknown) (sums over its containers),
        C(ids) (sorted, unique) and C(scanned) (whether any of its containers has a report). The policy reads them as
        C(vuln.critical), C(vuln.high), C(vuln.medium), C(vuln.low), C(vuln.unknown) and C(vuln.id).
      - The credentials need get/list/watch on C(vulnerabilityreports) of C(aquasecurity.github.io) (docs/rbac.md). A cluster
        without the CRD gives a warning, not a failure, and its pods no summary.
      - V(none) (the default) reads no reports. The join rules are in docs/vulnerabilities.md.
    type: str
    choices: [none, trivy]
    default: none
"""

EXAMPLES = r"""
# lab.kubernetes.yml
plugin: zerotrust.workloads.kubernetes
connections:
  - kubeconfig: /home/ops/.kube/config
    context: lab

# Two clusters, a token from AWX's credential (K8S_AUTH_HOST / K8S_AUTH_API_KEY) for the second
# plugin: zerotrust.workloads.kubernetes
# connections:
#   - {kubeconfig: ~/.kube/config, context: prod-eu, name: eu}
#   - {name: us, ca_cert: /etc/pki/us-ca.crt}
# label_selectors:
#   pods: "tier in (frontend, backend)"
# keyed_groups:
#   - key: workload.labels.app | default('none')
#     prefix: app
# compose:
#   zt_labels: workload.labels
# cache: true
# cache_plugin: ansible.builtin.jsonfile
# cache_connection: /tmp/zt-k8s-cache
"""

import os  # noqa: E402
import re  # noqa: E402
from typing import Any  # noqa: E402

from ansible.errors import AnsibleParserError  # noqa: E402
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes import api, builder, vulnerabilities  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.connection import resolve_connections  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.errors import KubernetesInventoryError  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._kubernetes.naming import validate_host_format  # noqa: E402
from ansible_collections.zerotrust.workloads.plugins.module_utils._memory import collector_paused  # noqa: E402

_KIND_OPTION = {"pods": api.PODS, "services": api.SERVICES, "nodes": api.NODES}
SUFFIXES = (".kubernetes.yml", ".kubernetes.yaml", ".k8s.yml", ".k8s.yaml")


_PLUGIN_LINE = re.compile(r"^plugin:\s*['\"]?zerotrust\.workloads\.kubernetes['\"]?\s*(#.*)?$", re.MULTILINE)


def _names_this_plugin(path: str) -> bool:
    """Does the file (its first 64 KiB) say ``plugin: zerotrust.workloads.kubernetes``?"""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return bool(_PLUGIN_LINE.search(handle.read(65536)))
    except OSError:
        return False


def _direct_set_variable(inventory: Any) -> Any:
    """``set_variable`` of the inventory data itself, past ansible-core's compatibility proxy.

    Since 2.19 the proxy deep-copies every value and tags each container with its origin, for
    plugins that do not manage template trust themselves; at 10,000 pods that is two thirds of
    this plugin's run time (measured: ``--graph`` 3x faster without it). What it guarantees holds
    here anyway: every value is a fresh, unshared tree of plain JSON types built for that host,
    and strings from the cluster stay untrusted (nothing tags them as templates), so a label like
    ``{{ lookup('pipe', 'id') }}`` is never evaluated. Without the proxy (older ansible-core) this
    is the inventory's own method.
    """
    data = getattr(inventory, "__wrapped__", inventory)
    return data.set_variable


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):  # type: ignore[misc]
    """Reads clusters (or the cache) and fills the inventory from ``builder.build``."""

    NAME = "zerotrust.workloads.kubernetes"

    def verify_file(self, path: str) -> bool:
        """Only ``*.kubernetes.y(a)ml`` and ``*.k8s.y(a)ml`` files are ours; another name gets a warning saying so."""
        if not super().verify_file(path):
            return False
        if path.endswith(SUFFIXES):
            return True
        # ansible-core would only say "could not be verified": for a file written for this plugin, say why.
        if _names_this_plugin(path):
            self.display.warning(f"{self.NAME}: {path} is not read because its name does not end in {', '.join(SUFFIXES)}; rename it")
        return False

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        """Fetch (or read from cache) every cluster's objects, then build hosts and groups."""
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        with collector_paused():
            model = self._model(path, cache)
            self._populate(model)
        # Constructed features template every host: that leaves cyclic garbage, so the collector is on again
        # (measured at 10,000 pods with three expressions: paused, 20% slower and 120 MB more).
        self._construct(model)

    def _model(self, path: str, cache: bool) -> builder.InventoryModel:
        """Hosts and groups from the snapshots, read from the cache or fetched from every cluster."""
        try:
            settings = builder.BuildSettings(
                host_format=validate_host_format(self.get_option("host_format") or {}),
                kinds=self.get_option("kinds"),
                skip_pod_phases=self.get_option("skip_pod_phases"),
                keep_annotations=tuple(self.get_option("keep_annotations") or ()),
                drop_annotations=tuple(self.get_option("drop_annotations") or ()),
                vulnerabilities=self.get_option("vulnerabilities") == "trivy",
            )
            cache_key = self.get_cache_key(path)
            use_cache = bool(self.get_option("cache"))
            snapshots = None
            if use_cache and cache:
                snapshots = self._cache.get(cache_key)
            if snapshots is None:
                snapshots = self._fetch_all()
                if use_cache:
                    self._cache[cache_key] = snapshots
            model = builder.build(snapshots, settings)
        except KubernetesInventoryError as exc:
            raise AnsibleParserError(f"{self.NAME}: {exc}") from None
        for warning in model.warnings:
            self.display.warning(warning)
        return model

    def _fetch_all(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        connections = resolve_connections(self.get_option("connections"), os.environ)
        wanted = [_KIND_OPTION[kind] for kind in self.get_option("kinds")]
        kinds = tuple(kind for kind in api.ALL_KINDS if kind in wanted or kind is api.NAMESPACES
                      or (kind is api.ENDPOINT_SLICES and api.SERVICES in wanted))
        label_selectors = self.get_option("label_selectors") or {}
        field_selectors = self.get_option("field_selectors") or {}
        unknown = (set(label_selectors) | set(field_selectors)) - set(_KIND_OPTION)
        if unknown:
            raise KubernetesInventoryError(f"label_selectors/field_selectors: unknown kinds {sorted(unknown)}; use pods, services, nodes")
        options = {
            kind.name: api.ListOptions(label_selector=label_selectors.get(option), field_selector=field_selectors.get(option),
                                       page_size=self.get_option("page_size"))
            for option, kind in _KIND_OPTION.items()
        }
        for kind in (api.NAMESPACES, api.ENDPOINT_SLICES):
            options[kind.name] = api.ListOptions(page_size=self.get_option("page_size"))
        snapshots: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for connection in connections:
            client = api.ClusterClient(connection, timeout=float(self.get_option("request_timeout")))
            try:
                snapshots[connection.name] = api.fetch_cluster(client, kinds, options)
                if self.get_option("vulnerabilities") == "trivy" and "pods" in self.get_option("kinds"):
                    snapshots[connection.name].update(vulnerabilities.fetch_reports(client, self.get_option("page_size")))
            finally:
                client.close()
        return snapshots

    def _populate(self, model: builder.InventoryModel) -> None:
        """Add the model's groups, hosts with their variables, and memberships to the inventory."""
        inventory = self.inventory
        for group in model.groups:
            inventory.add_group(group)
        set_variable = _direct_set_variable(inventory)
        for host, hostvars in model.hosts.items():
            inventory.add_host(host)
            for name, value in hostvars.items():
                set_variable(host, name, value)
        for group, members in model.groups.items():
            for host in members:
                inventory.add_child(group, host)

    def _construct(self, model: builder.InventoryModel) -> None:
        """Apply compose, groups and keyed_groups to every host."""
        compose = self.get_option("compose")
        composed_groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        strict = self.get_option("strict")
        if not (compose or composed_groups or keyed_groups):
            return
        for host, hostvars in model.hosts.items():
            # Constructed expressions see our hostvars plus anything composed before them.
            self._set_composite_vars(compose, hostvars, host, strict=strict)
            self._add_host_to_composed_groups(composed_groups, hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(keyed_groups, hostvars, host, strict=strict)
