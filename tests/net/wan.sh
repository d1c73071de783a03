#!/usr/bin/env bash
# Two hosts joined through a link namespace where tests/net/linkemu.py will run: the
# shape of a WAN on one machine (no netem here). Everything lives in namespaces this
# script creates.
#
#   wan.sh up TAG     TAG-a: a0 10.98.0.1/24; TAG-b: b0 10.98.0.2/24; TAG-link: a1 and b1,
#                     the other ends of a0's and b0's veth pairs, promiscuous, no
#                     addresses, IPv6 off. Offloads off on all four (ethtool): a packet
#                     socket cannot re-send a frame whose TCP checksum the kernel left
#                     for later, nor a 64 KiB GSO segment. Nothing crosses until
#                     linkemu.py --a a1 --b b1 runs in TAG-link.
#   wan.sh down TAG   delete the three namespaces
#
# Source it (`. wan.sh`) to get wan_up/wan_down and WAN_* variables instead.
WAN_NET=10.98.0
WAN_A_IP=$WAN_NET.1
WAN_B_IP=$WAN_NET.2

wan_down() {
	local n
	for n in a b link; do ip netns del "$1-$n" 2>/dev/null; done
	return 0
}

wan_up() {
	local a="$1-a" b="$1-b" l="$1-link" x
	wan_down "$1"
	ip netns add "$a" && ip netns add "$b" && ip netns add "$l" &&
		ip -n "$l" link add a1 type veth peer name a0 &&
		ip -n "$l" link set a0 netns "$a" &&
		ip -n "$l" link add b1 type veth peer name b0 &&
		ip -n "$l" link set b0 netns "$b" &&
		ip netns exec "$l" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 &&
		ip -n "$l" link set a1 promisc on up && ip -n "$l" link set b1 promisc on up &&
		ip -n "$a" addr add "$WAN_A_IP/24" dev a0 && ip -n "$a" link set a0 up &&
		ip -n "$a" link set lo up &&
		ip -n "$b" addr add "$WAN_B_IP/24" dev b0 && ip -n "$b" link set b0 up &&
		ip -n "$b" link set lo up ||
		{ echo "wan.sh: could not build the WAN for $1" >&2; wan_down "$1"; return 1; }
	for x in "$a a0" "$b b0" "$l a1" "$l b1"; do
		# shellcheck disable=SC2086
		set -- $x
		ip netns exec "$1" ethtool -K "$2" tx off sg off tso off gso off gro off \
			>/dev/null 2>&1 || {
			echo "wan.sh: ethtool cannot turn offloads off on $2" \
				"(scripts/install-deps.sh installs ethtool)" >&2
			return 1
		}
	done
	return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	case "${1:-}" in
	up) wan_up "${2:?tag}" ;;
	down) wan_down "${2:?tag}" ;;
	*) echo "usage: wan.sh up|down TAG" >&2; exit 2 ;;
	esac
fi
