#!/usr/bin/env bash
# Debian packages the test suite uses. Installs only what is missing; safe to run again.
set -euo pipefail

# php-cli + php-soap: the PHP SoapClient interop tests; chromium: the browser tests;
# openssh-server + openssh-client: the command worker's tests run a real sshd (started by the
# test fixture itself, never as a system service) and generate keys with ssh-keygen;
# isc-dhcp-server, kea-dhcp4-server, dnsmasq: the generated DHCP configurations are checked by
# each server's own parser (dnsmasq also serves one for real in a network namespace, with
# busybox-static's udhcpc as the client)
# qemu-system-x86 + ipxe-qemu + busybox-static: the network-boot test boots a real VM
# (TCG) through the boot face's iPXE script into the project's own initramfs
# lvm2 + cpio + qemu-utils: the lvm-storage test boots a storage-host VM from an initramfs it
# builds with /sbin/lvm and sshd copied in (lvm never runs on this machine itself) on a qcow2
# data disk
PACKAGES=(${QRM_SYSTEM_PACKAGES:-php-cli php-soap chromium openssh-server openssh-client
          isc-dhcp-server kea-dhcp4-server dnsmasq busybox-static qemu-system-x86 ipxe-qemu
          lvm2 cpio qemu-utils})
#: where the kernel package of the boot test is kept (resolved at run time by the test)
KERNEL_CACHE=${QRM_KERNEL_CACHE:-/var/cache/qrm-test}

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -ne 0 ]; then
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
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    [ -n "$own_policy" ] && rm -f "$policy"
fi

# The kernel of the boot test: the current cloud kernel's package, downloaded (never
# installed into /boot) and unpacked under $KERNEL_CACHE/kernel (boot/vmlinuz-*, lib/modules/).
if ! ls "$KERNEL_CACHE"/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ] && [ ! -w "$(dirname "$KERNEL_CACHE")" ]; then
        echo "the boot test's kernel is missing under $KERNEL_CACHE (run as root)" >&2
        exit 1
    fi
    package=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
    if [ -z "$package" ]; then
        apt-get update -qq
        package=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
    fi
    mkdir -p "$KERNEL_CACHE"
    (cd "$KERNEL_CACHE" && rm -f ./*.deb && apt-get download -qq "$package" \
        && rm -rf kernel.tmp && dpkg-deb -x ./"$package"_*.deb kernel.tmp \
        && rm -rf kernel && mv kernel.tmp kernel)
    chmod -R a+rX "$KERNEL_CACHE"
    echo "kernel $package unpacked under $KERNEL_CACHE/kernel"
fi
