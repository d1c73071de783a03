#!/usr/bin/env bash
# Two hosts and a client on one machine, for replication tests and the demo.
# Everything lives in network namespaces this script creates; the root
# namespace is never touched.
#
#   twohost.sh up [P]    create (P defaults to "castor"):
#       P-lan     the LAN: bridge lan0 joining the three veth pairs below
#       P-a       host A: bridge br0 = its LAN veth + tap0 for the guest,
#                 address 10.77.0.11/24
#       P-b       host B: the same, 10.77.0.12/24
#       P-c       host C: the same, 10.77.0.13/24 (a third host: re-protection)
#       P-client  eth0 10.77.0.100/24
#     the guest is expected at 10.77.0.2 (same MAC on either host); the
#     replication stream runs between 10.77.0.11 and 10.77.0.12 over the LAN
#   twohost.sh down [P]  delete the five namespaces (and everything in them)
#
# Source it (`. twohost.sh`) to get th_up/th_down/th_check and TH_* variables.
TH_NET=10.77.0
TH_A_IP=$TH_NET.11
TH_B_IP=$TH_NET.12
TH_C_IP=$TH_NET.13
TH_CLIENT_IP=$TH_NET.100
TH_GUEST_IP=$TH_NET.2

th_down() {
	local p=${1:-castor} n
	for n in client a b c lan; do
		ip netns del "$p-$n" 2>/dev/null || true
	done
	return 0
}

# one host: bridge br0 with the LAN veth and tap0, address $2. The bridge gets
# a fixed MAC ($3): by default it takes the lowest port's, and would change
# (leaving peers' ARP caches stale) when the guest's tap goes away.
th_host() {
	local ns=$1 ip=$2 mac=$3
	ip -n "$ns" link add br0 address "$mac" type bridge &&
		ip -n "$ns" link set eth0 master br0 &&
		ip -n "$ns" tuntap add dev tap0 mode tap &&
		ip -n "$ns" link set tap0 master br0 &&
		ip -n "$ns" addr add "$ip/24" dev br0 &&
		ip -n "$ns" link set lo up && ip -n "$ns" link set eth0 up &&
		ip -n "$ns" link set tap0 up && ip -n "$ns" link set br0 up &&
		ip netns exec "$ns" sh -c 'echo 0 > /sys/class/net/br0/bridge/forward_delay'
}

th_up() {
	local p=${1:-castor} lan="${1:-castor}-lan" n
	th_down "$p"
	for n in lan a b c client; do
		ip netns add "$p-$n" || { th_down "$p"; return 1; }
	done
	ip -n "$lan" link add lan0 type bridge &&
		ip netns exec "$lan" sh -c 'echo 0 > /sys/class/net/lan0/bridge/forward_delay' &&
		ip -n "$lan" link set lo up && ip -n "$lan" link set lan0 up ||
		{ echo "twohost.sh: could not build the LAN" >&2; th_down "$p"; return 1; }
	for n in a b c client; do
		ip -n "$lan" link add "l$n" type veth peer name eth0 &&
			ip -n "$lan" link set eth0 netns "$p-$n" &&
			ip -n "$lan" link set "l$n" master lan0 &&
			ip -n "$lan" link set "l$n" up ||
			{ echo "twohost.sh: could not wire $p-$n" >&2; th_down "$p"; return 1; }
	done
	th_host "$p-a" "$TH_A_IP" 02:00:0a:4d:00:0b && th_host "$p-b" "$TH_B_IP" 02:00:0a:4d:00:0c &&
		th_host "$p-c" "$TH_C_IP" 02:00:0a:4d:00:0d &&
		ip -n "$p-client" addr add "$TH_CLIENT_IP/24" dev eth0 &&
		ip -n "$p-client" link set lo up && ip -n "$p-client" link set eth0 up ||
		{ echo "twohost.sh: could not set up the hosts" >&2; th_down "$p"; return 1; }
	return 0
}

# Can this machine build it at all? The same needs as lan.sh's LAN.
th_check() {
	. "$(dirname "${BASH_SOURCE[0]}")/lan.sh" && lan_check
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	case "${1:-}" in
	up) th_up "${2:-castor}" ;;
	down) th_down "${2:-castor}" ;;
	*) echo "usage: twohost.sh up|down [PREFIX]" >&2; exit 2 ;;
	esac
fi
