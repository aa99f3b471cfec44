#!/bin/sh
# QRM Cloud resource agent (POSIX sh; runs under busybox sh).
#
#   qrm-agent boot   as PID 1 of the project's initramfs (from /init): bring the network
#                    up, fetch the server's copy of this script, register (or exchange the
#                    hand-over code of the boot script for a token), carry out the root
#                    mount its kernel parameters describe, then report every N seconds
#   qrm-agent run    register and report only (a machine whose network is up already)
#
# Everything it needs comes from the kernel command line (qrm.url, qrm.mac, qrm.id,
# qrm.kernel, qrm.image, qrm.handover, qrm.root and the root-mount parameters); every
# server reply is key=value lines. Console markers start with "qrm-agent: ".
# QRM_AGENT_LIB=1 only defines the functions (the tests source it).

QRM_CMDLINE=${QRM_CMDLINE:-/proc/cmdline}
QRM_STATE_DIR=${QRM_STATE_DIR:-/run/qrm}
QRM_UDHCPC_SCRIPT=${QRM_UDHCPC_SCRIPT:-/usr/share/udhcpc/default.script}
QRM_MODULES=${QRM_MODULES:-/lib/modules}
QRM_HTTP_TIMEOUT=${QRM_HTTP_TIMEOUT:-20}
INTERVAL=30

say() {
    echo "qrm-agent: $*"
}

# qrm_param NAME [DEFAULT]: the value of qrm.NAME on the kernel command line
qrm_param() {
    for word in $(cat "$QRM_CMDLINE" 2>/dev/null); do
        case "$word" in
            "qrm.$1="*) echo "${word#*=}"; return 0 ;;
        esac
    done
    if [ $# -ge 2 ]; then echo "$2"; fi
    return 0
}

# the MAC the machine booted from: qrm.mac, else pxelinux's BOOTIF=01-aa-bb-..., lower case
boot_mac() {
    mac=$(qrm_param mac)
    if [ -z "$mac" ]; then
        for word in $(cat "$QRM_CMDLINE" 2>/dev/null); do
            case "$word" in
                BOOTIF=01-*) mac=$(echo "${word#BOOTIF=01-}" | tr '-' ':') ;;
            esac
        done
    fi
    echo "$mac" | tr 'ABCDEF' 'abcdef'
}

# reply_value KEY FILE: the value of KEY=... in a server reply
reply_value() {
    sed -n "s/^$1=//p" "$2" 2>/dev/null | head -n 1
}

# root_plan: the root mount the parameters ask for, as one line:
#   "none" | "nfs SOURCE OPTIONS" | "local DEVICE FSTYPE" | "unknown METHOD" | "invalid WHY"
root_plan() {
    method=$(qrm_param root none)
    case "$method" in
        none|ramdisk) echo "none" ;;
        nfs)
            source=$(qrm_param nfsroot)
            case "$source" in
                ?*:/*) echo "nfs $source $(qrm_param nfsopts ro,nolock)" ;;
                *) echo "invalid qrm.nfsroot must be SERVER:/PATH" ;;
            esac ;;
        local)
            device=$(qrm_param rootdev)
            case "$device" in
                /dev/?*) echo "local $device $(qrm_param rootfstype ext4)" ;;
                *) echo "invalid qrm.rootdev must be a /dev path" ;;
            esac ;;
        *) echo "unknown $method" ;;
    esac
}

# the state to report from the ramdisk: active when it runs an assigned image there
ramdisk_state() {
    if [ -n "$(qrm_param image)" ]; then echo active; else echo idle; fi
}

interface_of() {
    for dev in /sys/class/net/*; do
        name=${dev##*/}
        [ "$name" = lo ] && continue
        if [ "$(cat "$dev/address" 2>/dev/null)" = "$1" ]; then echo "$name"; return 0; fi
    done
    for dev in /sys/class/net/*; do
        name=${dev##*/}
        if [ "$name" != lo ]; then echo "$name"; return 0; fi
    done
}

all_macs() {
    macs=""
    for dev in /sys/class/net/*; do
        [ "${dev##*/}" = lo ] && continue
        address=$(cat "$dev/address" 2>/dev/null)
        case "$address" in
            ""|00:00:00:00:00:00) ;;
            *) macs="${macs:+$macs,}$address" ;;
        esac
    done
    echo "$macs"
}

# installed memory in MB: the firmware's RAM ranges (MemTotal leaves out what the kernel
# keeps), rounded up to 8 MB; MemTotal if the firmware map is not there
memory_mb() {
    total=0
    for entry in /sys/firmware/memmap/*; do
        [ "$(cat "$entry/type" 2>/dev/null)" = "System RAM" ] || continue
        start=$(cat "$entry/start"); end=$(cat "$entry/end")
        total=$((total + end - start + 1))
    done
    if [ "$total" -gt 0 ]; then
        echo $(( (total / 1048576 + 7) / 8 * 8 ))
    else
        awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo
    fi
}

memory_used_mb() {
    awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 } END { print int((t - a) / 1024) }' \
        /proc/meminfo
}

# fetch OUT URL [WGET-OPTIONS]: one HTTP request, at most $QRM_HTTP_TIMEOUT seconds.
# The limit is timeout's, never wget's -T: busybox builds without the wget timeout
# feature (Debian's busybox-static) crash on -T instead of refusing it.
fetch() {
    out=$1 url=$2
    shift 2
    if command -v timeout >/dev/null 2>&1; then
        timeout "$QRM_HTTP_TIMEOUT" wget -q -O "$out" "$@" "$url"
    else
        wget -q -O "$out" "$@" "$url"
    fi
}

# post URL DATA OUT [TOKEN]
post() {
    if [ -n "${4:-}" ]; then
        fetch "$3" "$1" --header "Authorization: Bearer $4" --post-data "$2"
    else
        fetch "$3" "$1" --post-data "$2"
    fi
}

net_up() {
    IFACE=$(interface_of "$MAC")
    if [ -z "$IFACE" ]; then say "no network card found"; return 1; fi
    ip link set lo up 2>/dev/null
    ip link set "$IFACE" up
    tries=0
    until udhcpc -i "$IFACE" -q -n -t 10 -T 2 -s "$QRM_UDHCPC_SCRIPT" >/dev/null 2>&1; do
        tries=$((tries + 1))
        say "no DHCP answer on $IFACE (attempt $tries)"
        sleep 5
    done
    IP=$(cat "$QRM_STATE_DIR/ip" 2>/dev/null)
    say "network up: $IFACE $MAC $IP"
}

# register, or exchange a hand-over code; sets ID and TOKEN
register() {
    reply="$QRM_STATE_DIR/register"
    code=$(qrm_param handover)
    how=registration
    if [ -z "$code" ] && [ -n "$(qrm_param id)" ]; then
        # booted before (pxelinux files carry no code): ask whether a hand-over is due
        if post "$QRM_URL/boot/handover" "mac=$MAC" "$reply"; then
            code=$(reply_value handover "$reply")
        fi
    fi
    if [ -n "$code" ]; then
        how=handover
        data="mac=$MAC&handover=$code&ip=$IP"
    else
        data="macs=$(all_macs)&cpus=$(grep -c '^processor' /proc/cpuinfo)&memory_mb=$(memory_mb)"
        name=$(hostname 2>/dev/null)
        case "$name" in ""|"(none)"|localhost) name="" ;; esac
        data="$data&nics=$(all_macs | tr ',' '\n' | grep -c .)&hostname=$name&ip=$IP"
    fi
    if ! post "$QRM_URL/boot/register" "$data" "$reply"; then
        say "$how refused or failed for $MAC"
        return 1
    fi
    ID=$(reply_value id "$reply")
    TOKEN=$(reply_value token "$reply")
    INTERVAL=$(reply_value interval "$reply")
    INTERVAL=${INTERVAL:-30}
    (umask 077; printf 'id=%s\ntoken=%s\nurl=%s\n' "$ID" "$TOKEN" "$QRM_URL" \
        > "$QRM_STATE_DIR/agent.conf")
    say "registered id=$ID kernel=$KERNEL via=$how accepted=$(reply_value accepted "$reply")"
}

# report STATE [EXTRA]: one report; the reply is in $QRM_STATE_DIR/reply
report() {
    load=$(cut -d ' ' -f 1 /proc/loadavg)
    uptime=$(cut -d . -f 1 /proc/uptime)
    post "$QRM_URL/boot/report" \
        "id=$ID&state=$1&load=$load&memory_used_mb=$(memory_used_mb)&uptime_s=$uptime${2:-}" \
        "$QRM_STATE_DIR/reply" "$TOKEN"
}

# carry out the command of a reply, report its outcome
run_command() {
    case "$2" in
        reboot)
            say "command $1: reboot"
            report "$STATE" "&command_id=$1&exit_code=0"
            sync
            reboot -f ;;
        halt)
            say "command $1: halt"
            report "$STATE" "&command_id=$1&exit_code=0"
            sync
            poweroff -f ;;
        *)
            say "command $1: $2 is not a command of this agent"
            report "$STATE" "&command_id=$1&exit_code=127" ;;
    esac
}

report_loop() {
    STATE=$(ramdisk_state)
    reported=""
    while :; do
        if report "$STATE"; then
            reply="$QRM_STATE_DIR/reply"
            interval=$(reply_value interval "$reply")
            INTERVAL=${interval:-$INTERVAL}
            if [ -z "$reported" ]; then
                say "reported id=$ID state=$STATE interval=$INTERVAL"
                reported=1
            fi
            command_id=$(reply_value command_id "$reply")
            if [ -n "$command_id" ]; then
                run_command "$command_id" "$(reply_value command "$reply")"
                continue
            fi
        else
            say "report of resource $ID failed"
            reported=""
        fi
        sleep "$INTERVAL"
    done
}

# the disk and NFS modules of the initramfs (/init loads only the network cards')
load_root_modules() {
    for module in $(cat "$QRM_MODULES/load-order.root" 2>/dev/null); do
        insmod "$QRM_MODULES/$module.ko" 2>/dev/null
    done
}

# wait_for_device DEVICE: up to 10 s for a disk's driver to make its device node
wait_for_device() {
    tries=0
    while [ ! -b "$1" ] && [ "$tries" -lt 10 ]; do
        sleep 1
        tries=$((tries + 1))
    done
}

# mount the image's root and switch to it (returns when the machine stays in the ramdisk)
root_mount() {
    set -- $(root_plan)
    case "$1" in
        none) say "root-mount: none, staying in the ramdisk"; return 0 ;;
        nfs) load_root_modules; mkdir -p /newroot; mount -t nfs -o "$3" "$2" /newroot || {
                 say "root-mount: nfs $2 failed, staying in the ramdisk"; return 1; } ;;
        local) load_root_modules; wait_for_device "$2"; mkdir -p /newroot
               mount -t "$3" "$2" /newroot || {
                 say "root-mount: $2 ($3) failed, staying in the ramdisk"; return 1; } ;;
        *) shift; say "root-mount: $*, staying in the ramdisk"; return 1 ;;
    esac
    report booting >/dev/null 2>&1
    # the image's own agent continues with this resource's id and token
    mkdir -p /newroot/etc/qrm
    (umask 077; cp "$QRM_STATE_DIR/agent.conf" /newroot/etc/qrm/agent.conf)
    cp "$0" /newroot/etc/qrm/agent.sh 2>/dev/null
    say "root-mount: $1 $2, switching root"
    umount /sys /proc 2>/dev/null
    exec switch_root /newroot /sbin/init
}

main() {
    mkdir -p "$QRM_STATE_DIR"
    QRM_URL=$(qrm_param url)
    MAC=$(boot_mac)
    KERNEL=$(qrm_param kernel unknown)
    if [ -z "$QRM_URL" ]; then say "no qrm.url on the kernel command line"; return 1; fi
    if [ "${1:-boot}" = boot ] && [ "${QRM_AGENT_FETCHED:-}" != 1 ]; then
        net_up
        if [ "$(qrm_param fetch_agent 1)" = 1 ] \
                && fetch /tmp/qrm-agent.sh "$QRM_URL/boot/agent.sh"; then
            say "running the server's agent"
            QRM_AGENT_FETCHED=1
            export QRM_AGENT_FETCHED IFACE IP
            exec /bin/sh /tmp/qrm-agent.sh boot
        fi
    fi
    until register; do sleep 60; done
    if [ "${1:-boot}" = boot ]; then root_mount; fi
    report_loop
}

if [ "${QRM_AGENT_LIB:-}" != 1 ]; then
    main "$@"
    say "stopped"
    while :; do sleep 3600; done
fi
