#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build the collection tarball users install:
#   scripts/build-collection.sh [OUTPUT_DIR]        (default .build/dist)
# The build runs on a staged copy of what a fresh clone holds (tracked and not-ignored files,
# no links that tools leave in the tree), where antsibull-changelog renders CHANGELOG.rst for
# galaxy.yml's version from changelogs/ first; the working tree itself is never changed.
# Prints the tarball's path on its last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/.build/dist}")"
bin="${ZT_BIN:-$root/.venv/bin}"
stage="$(mktemp -d /tmp/zt-build.XXXXXX)"
trap 'rm -rf "$stage"' EXIT

if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$root" ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' name; do
    if [ -f "$root/$name" ] && [ ! -L "$root/$name" ]; then
      mkdir -p "$stage/src/$(dirname "$name")"
      cp -p "$root/$name" "$stage/src/$name"
    fi
  done
else
  cp -a "$root/." "$stage/src/"
fi

version="$("$bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' "$stage/src/galaxy.yml")"
# The collection's own plugins are read for the "New Plugins" sections: make the staged copy the one
# Ansible finds, whatever the caller's ANSIBLE_COLLECTIONS_PATH says.
mkdir -p "$stage/collections/ansible_collections/zerotrust"
printf '[defaults]\n' >"$stage/ansible.cfg"  # no settings of the caller's or the checkout's
ln -s "$stage/src" "$stage/collections/ansible_collections/zerotrust/workloads"
(cd "$stage/src" && PATH="$bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$stage/collections" ANSIBLE_CONFIG="$stage/ansible.cfg" \
  "$bin/antsibull-changelog" release --version "$version" >"$stage/changelog.log" 2>&1) || {
  echo "antsibull-changelog could not render CHANGELOG.rst:" >&2; cat "$stage/changelog.log" >&2; exit 1; }
test -s "$stage/src/CHANGELOG.rst" || { echo "antsibull-changelog wrote no CHANGELOG.rst" >&2; exit 1; }

mkdir -p "$out"
ANSIBLE_CONFIG="$stage/ansible.cfg" "$bin/ansible-galaxy" collection build "$stage/src" --output-path "$out" --force >/dev/null
echo "$out/zerotrust-workloads-$version.tar.gz"
