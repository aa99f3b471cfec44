#!/usr/bin/env bash
# Debian packages the test suite uses. Installs only what is missing; safe to run again.
set -euo pipefail

# php-cli + php-soap: the PHP SoapClient interop tests; chromium: the browser tests;
# openssh-server + openssh-client: the command worker's tests run a real sshd (started by the
# test fixture itself, never as a system service) and generate keys with ssh-keygen
PACKAGES=(${QRM_SYSTEM_PACKAGES:-php-cli php-soap chromium openssh-server openssh-client})

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
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
