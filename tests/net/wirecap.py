#!/usr/bin/env python3
"""Capture the frames a given MAC sends, as the client's NIC receives them.

  wirecap.py IFACE MAC OUT     (run inside the client's namespace; stops on SIGTERM)

Writes one line per frame whose source is MAC: "T LEN CRC ETHERTYPE HEAD" where
T is the kernel's receive timestamp (CLOCK_REALTIME, ns, SO_TIMESTAMPNS), LEN the
frame length without Ethernet padding (an IPv4 frame ends with its datagram: a
bridge may trim the padding), CRC the CRC-32C of those bytes in hex (the digest
castor-vmm writes in its event log for every frame it releases), HEAD the
first 80 bytes in hex. Standard library only.
"""
import signal
import socket
import struct
import sys

SO_TIMESTAMPNS = 35
ETH_P_ALL = 0x0003

_TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    _TABLE.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    t = _TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def unpadded(f):
    """An IPv4 frame without Ethernet padding (as castor-vmm's event log digests it)."""
    if len(f) >= 34 and f[12:14] == b"\x08\x00":
        return f[:min(len(f), 14 + (f[16] << 8 | f[17]))]
    return f


def main():
    iface, mac, out = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), sys.argv[3]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    s.settimeout(0.2)
    frames = []
    print("ready", flush=True)
    while not stop:
        try:
            data, anc, _, addr = s.recvmsg(65536, 256)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        if addr[2] == socket.PACKET_OUTGOING or data[6:12] != mac:
            continue
        t = 0
        for level, kind, val in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", val[:16])
                t = sec * 1000000000 + nsec
        frames.append((t, unpadded(data)))
    with open(out, "w") as f:
        for t, data in frames:
            f.write(f"{t} {len(data)} {crc32c(data):08x} {data[12:14].hex()} {data[:80].hex()}\n")


if __name__ == "__main__":
    main()
