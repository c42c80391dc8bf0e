#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# ansible-test sanity on the collection exactly as it ships: build the tarball (galaxy.yml's
# build_ignore leaves out tests, the lab and caches), install it into a scratch
# collections tree, and run sanity there with the controller Python.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.venv/bin"
# Outside the repository: inside it, ansible-test would ask git, which ignores the build.
build="$(mktemp -d /tmp/zt-sanity.XXXXXX)"
trap 'rm -rf "$build"' EXIT
mkdir -p "$build/dist" "$build/collections"
"$bin/ansible-galaxy" collection build "$root" --output-path "$build/dist" --force >/dev/null
"$bin/ansible-galaxy" collection install "$build"/dist/zerotrust-workloads-*.tar.gz \
  --collections-path "$build/collections" --force --offline >/dev/null 2>&1
# ansible-test would download a pip bootstrap script from a host we cannot reach; give it ours.
pip_version="$(grep -ohE "pip='[0-9.]+'" "$root"/.venv-sanity/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -1 | cut -d"'" -f2)"
mkdir -p "$HOME/.ansible/test/cache"
cp "$root/scripts/pip_bootstrap.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
echo "$bin/pip" > "$HOME/.ansible/test/cache/zt_host_pip"
cd "$build/collections/ansible_collections/zerotrust/workloads"
# The ignore file lives in the source tree's tests/sanity (tests are not shipped).
if [ -d "$root/tests/sanity" ]; then mkdir -p tests && cp -r "$root/tests/sanity" tests/; fi
"$root/.venv-sanity/bin/ansible-test" sanity --python 3.12 --local --color no "$@"
