#!/usr/bin/env bash
# Debian packages the test suite uses. Installs only what is missing; safe to run again.
set -euo pipefail

# php-cli + php-soap: the PHP SoapClient interop tests; chromium: the browser tests;
# openssh-server + openssh-client: the command worker's tests run a real sshd (started by the
# test fixture itself, never as a system service) and generate keys with ssh-keygen;
# isc-dhcp-server, kea-dhcp4-server, dnsmasq: the generated DHCP configurations are checked by
# each server's own parser (dnsmasq also serves one for real in a network namespace, with
# busybox-static's udhcpc as the client)
PACKAGES=(${QRM_SYSTEM_PACKAGES:-php-cli php-soap chromium openssh-server openssh-client
          isc-dhcp-server kea-dhcp4-server dnsmasq busybox-static})

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
fi
echo "installing ${missing[*]}"
# Installing a daemon's package must not start it (the DHCP servers would answer on the
# machine's network): policy-rc.d refuses every start while this script installs.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=yes
fi
trap '[ -n "$own_policy" ] && rm -f "$policy"' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
