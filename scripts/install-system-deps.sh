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
# libvirt-dev + pkg-config: pip builds the libvirt-python binding (the kvm plugin) against
# them; qemu-utils: the qcow2 storage's qemu-img; libvirt-daemon + libvirt-daemon-driver-qemu
# + libvirt-clients: the kvm tests start a real libvirtd (QEMU driver) as a child of the fixture
# lvm2 + cpio: the lvm-storage test boots a storage-host VM from an initramfs it builds with
# /sbin/lvm and sshd copied in (lvm never runs on this machine itself) on a qcow2 data disk
PACKAGES=(${QRM_SYSTEM_PACKAGES:-php-cli php-soap chromium openssh-server openssh-client
          isc-dhcp-server kea-dhcp4-server dnsmasq busybox-static qemu-system-x86 ipxe-qemu
          libvirt-dev pkg-config qemu-utils libvirt-daemon libvirt-daemon-driver-qemu
          libvirt-clients lvm2 cpio})
# --build: only what pip needs to build the venv (the Makefile runs this before pip)
BUILD_ONLY=""
if [ "${1:-}" = "--build" ]; then
    BUILD_ONLY=yes
    PACKAGES=(libvirt-dev pkg-config)
fi
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

[ -n "$BUILD_ONLY" ] && exit 0

# libvirtd with its QEMU driver, which the kvm tests start in the foreground themselves (never
# as a service): the user and groups Debian's packages create only under systemd, and a
# qemu.conf for a machine without cgroups, namespaces or a security driver — written only
# where there is none (a site's own is left alone).
if [ -x /usr/sbin/libvirtd ] && [ "$(id -u)" -eq 0 ]; then
    getent group kvm >/dev/null || groupadd -r kvm
    getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
    id -u libvirt-qemu >/dev/null 2>&1 \
        || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
    if [ ! -e /etc/libvirt/qemu.conf ]; then
        mkdir -p /etc/libvirt
        cat >/etc/libvirt/qemu.conf <<'CONF'
# written by QRM Cloud's scripts/install-system-deps.sh for the kvm tests (no systemd)
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
# else qemu may not spawn a guestfwd command, and the VM crashes
seccomp_sandbox = 0
CONF
        echo "wrote /etc/libvirt/qemu.conf"
    fi
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
