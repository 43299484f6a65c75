#!/bin/sh
# vipmon-l2-vip.sh - float a VIP on a Layer-2 segment; use as vipmon's --on-change hook.
#
#   VIPMON_ROLE  set by vipmon: MASTER adds the VIP, any other role removes it
#   VIP_ADDR     the VIP with its prefix length, e.g. 192.0.2.100/24
#   VIP_DEV      the interface that carries it, e.g. eth0
#   VIP_ARP_COUNT  gratuitous ARPs to send on MASTER (default 3)
#
# Idempotent: adding a VIP that is there, or removing one that is not, succeeds.
# Exit status: 0 done; 1 an ip command failed; 2 a variable is missing.
# Needs iproute2 (ip) and, for the gratuitous ARP, iputils-arping (arping).

set -u

die() {
    code=$1
    shift
    echo "vipmon-l2-vip: $*" >&2
    exit "$code"
}

role=${VIPMON_ROLE:-}
[ -n "$role" ] || die 2 "VIPMON_ROLE is not set (run me as a vipmon hook)"
[ -n "${VIP_ADDR:-}" ] || die 2 "VIP_ADDR is not set (e.g. 192.0.2.100/24)"
[ -n "${VIP_DEV:-}" ] || die 2 "VIP_DEV is not set (e.g. eth0)"
case $VIP_ADDR in
    */*) ;;
    *) die 2 "VIP_ADDR=$VIP_ADDR needs a prefix length, e.g. $VIP_ADDR/24" ;;
esac
ip=${VIP_ADDR%/*}

if [ "$role" = MASTER ]; then
    ip addr replace "$VIP_ADDR" dev "$VIP_DEV" || die 1 "cannot add $VIP_ADDR on $VIP_DEV"
    echo "vipmon-l2-vip: $VIP_ADDR on $VIP_DEV (term ${VIPMON_TERM:-?})"
    if command -v arping >/dev/null 2>&1; then
        # Tell the neighbours the VIP's new MAC; a failure here is only a warning.
        arping -q -U -c "${VIP_ARP_COUNT:-3}" -I "$VIP_DEV" "$ip" ||
            echo "vipmon-l2-vip: warning: gratuitous ARP for $ip failed" >&2
    else
        echo "vipmon-l2-vip: warning: arping not found (install iputils-arping);" \
            "neighbours keep the old MAC for $ip until their ARP entry expires" >&2
    fi
    exit 0
fi

addrs=$(ip -o addr show dev "$VIP_DEV") || die 1 "cannot read the addresses of $VIP_DEV"
if printf '%s\n' "$addrs" | grep -qF "inet $ip/"; then
    ip addr del "$VIP_ADDR" dev "$VIP_DEV" || die 1 "cannot remove $VIP_ADDR from $VIP_DEV"
    echo "vipmon-l2-vip: $VIP_ADDR removed from $VIP_DEV (role $role)"
else
    echo "vipmon-l2-vip: $VIP_ADDR not on $VIP_DEV (role $role)"
fi
exit 0
