#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Install the Debian packages the lab, the tests and the demo need, only when missing.
# Runs as root (the lab creates network namespaces); idempotent and quiet when all is there.
set -euo pipefail

needed=()
have() { command -v "$1" >/dev/null 2>&1; }
have iptables        || needed+=(iptables)
have ipset           || needed+=(ipset)
have nft             || needed+=(nftables)
have ip              || needed+=(iproute2)
have ss              || needed+=(iproute2)
[ -x /usr/sbin/sshd ] || needed+=(openssh-server)
[ -x /usr/sbin/dnsmasq ] || needed+=(dnsmasq-base)
have ssh             || needed+=(openssh-client)
have ssh-keygen      || needed+=(openssh-client)
have conntrack       || needed+=(conntrack)
have systemd-analyze || needed+=(systemd)  # checks the restore unit (tests); no systemd needs to run
have openssl         || needed+=(openssl)
have pgrep           || needed+=(procps)
have kubectl         || needed+=(kubernetes-client)
have java            || needed+=(openjdk-17-jre-headless)
[ -x /usr/bin/python3 ] || needed+=(python3)
if [ "${ZT_WITH_CHROMIUM:-1}" = 1 ]; then
  have chromium || needed+=(chromium)
fi

if [ "${#needed[@]}" -gt 0 ]; then
  echo "setup-system: installing ${needed[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi
