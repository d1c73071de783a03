#!/usr/bin/env bash
# A LAN on one machine, for tests and the demo. Everything lives in network
# namespaces this script creates; the root namespace is never touched.
#
#   lan.sh up TAG     create TAG-client and TAG-host:
#                       TAG-host:   bridge lan0 (10.66.0.254/24) with the host end of a
#                                   veth pair and a tap "tap0" for the guest
#                       TAG-client: eth0 10.66.0.1/24, the other end of the veth pair
#                     the guest is expected at 10.66.0.2
#   lan.sh down TAG   delete both namespaces (and everything in them)
#
# Source it (`. lan.sh`) to get lan_up/lan_down and LAN_* variables instead.
LAN_NET=10.66.0
LAN_CLIENT_IP=$LAN_NET.1
LAN_GUEST_IP=$LAN_NET.2
LAN_HOST_IP=$LAN_NET.254

lan_down() {
	local tag=$1
	ip netns del "$tag-client" 2>/dev/null || true
	ip netns del "$tag-host" 2>/dev/null || true
	return 0
}

lan_up() {
	local tag=$1 c="$1-client" h="$1-host"
	lan_down "$tag"
	ip netns add "$c" || return 1
	ip netns add "$h" || { lan_down "$tag"; return 1; }
	# the veth pair is created inside the host namespace, then one end moves
	ip -n "$h" link add vc0 type veth peer name eth0 &&
		ip -n "$h" link set eth0 netns "$c" &&
		ip -n "$h" link add lan0 type bridge &&
		ip -n "$h" link set vc0 master lan0 &&
		ip -n "$h" tuntap add dev tap0 mode tap &&
		ip -n "$h" link set tap0 master lan0 &&
		ip -n "$h" addr add "$LAN_HOST_IP/24" dev lan0 &&
		ip -n "$h" link set lo up && ip -n "$h" link set vc0 up &&
		ip -n "$h" link set tap0 up && ip -n "$h" link set lan0 up &&
		ip -n "$c" addr add "$LAN_CLIENT_IP/24" dev eth0 &&
		ip -n "$c" link set lo up && ip -n "$c" link set eth0 up ||
		{ echo "lan.sh: could not build the LAN for $tag" >&2; lan_down "$tag"; return 1; }
	# no STP delays: forward as soon as ports are up
	ip netns exec "$h" sh -c 'echo 0 > /sys/class/net/lan0/bridge/forward_delay' 2>/dev/null
	return 0
}

# Can this machine build the LAN at all? (root, iproute2, netns, tap, bridge)
lan_check() {
	[ "$(id -u)" = 0 ] || { echo "needs root"; return 1; }
	command -v ip >/dev/null || { echo "needs iproute2"; return 1; }
	[ -c /dev/net/tun ] || { echo "needs /dev/net/tun"; return 1; }
	local probe="castor-probe-$$"
	ip netns add "$probe" 2>/dev/null || { echo "cannot create network namespaces"; return 1; }
	ip netns del "$probe"
	return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	case "${1:-}" in
	up) lan_up "${2:?tag}" ;;
	down) lan_down "${2:?tag}" ;;
	*) echo "usage: lan.sh up|down TAG" >&2; exit 2 ;;
	esac
fi
