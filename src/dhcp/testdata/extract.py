#!/usr/bin/env python3
"""Extract real DHCP client packets (UDP payloads) from the lab captures.

Usage: python3 extract.py [CAPTURE_DIR]   (default: /work/shared/lab/captures)
Writes the *.bin files next to this script. Standard library only (struct):
classic libpcap, Ethernet II / IPv4 / UDP. Each vector is picked by capture
file and 0-based frame index, and checked (ports, op, xid, message type)
before it is written, so a changed capture fails loudly instead of silently
producing a different vector.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/lab/captures"

# name, pcap, frame index, expected (src ip, src port, dst port), xid, option 53
VECTORS = [
    ("bios-ipxe-discover", "bios-proxy-dhcp.pcap", 0, ("0.0.0.0", 68, 67), 0x67F93415, 1),
    ("bios-ipxe-request-67", "bios-proxy-dhcp.pcap", 6, ("0.0.0.0", 68, 67), 0x67F93415, 3),
    ("bios-ipxe-request-4011", "bios-proxy-dhcp.pcap", 8, ("10.99.0.115", 68, 4011), 0x00000000, 3),
    ("ovmf-discover", "uefi-native-proxy-dhcp.pcap", 0, ("0.0.0.0", 68, 67), 0x6FE2AF09, 1),
    ("ovmf-request-67", "uefi-native-proxy-dhcp.pcap", 3, ("0.0.0.0", 68, 67), 0x6FE2AF09, 3),
    ("ovmf-request-4011", "uefi-native-proxy-dhcp.pcap", 5, ("10.99.0.115", 4011, 4011), 0x852E5C25, 3),
    ("ipxe-efi-discover", "uefi-native-proxy-dhcp.pcap", 7, ("0.0.0.0", 68, 67), 0x5D06F543, 1),
    ("ipxe-efi-request-4011", "uefi-native-proxy-dhcp.pcap", 12, ("10.99.0.115", 68, 4011), 0x5D06F543, 3),
    ("perfdhcp-discover", "perfdhcp-pxe.pcap", 0, ("10.99.0.50", 67, 67), 0x00000000, 1),
    ("perfdhcp-request", "perfdhcp-pxe.pcap", 2, ("10.99.0.50", 67, 67), 0x00000000, 3),
]


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0xA1B2C3D4:
        endian = "<"
    elif magic == 0xD4C3B2A1:
        endian = ">"
    else:
        raise SystemExit(f"{path}: not a classic microsecond libpcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise SystemExit(f"{path}: link type {linktype}, expected 1 (Ethernet)")
    off = 24
    while off + 16 <= len(data):
        _ts, _us, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        yield data[off + 16:off + 16 + incl]
        off += 16 + incl


def udp(frame):
    """Return (src ip, src port, dst port, payload) of an Ethernet/IPv4/UDP frame."""
    (ethertype,) = struct.unpack("!H", frame[12:14])
    if ethertype != 0x0800:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != 17:
        return None
    src = ".".join(str(b) for b in ip[12:16])
    sport, dport, length = struct.unpack("!HHH", ip[ihl:ihl + 6])
    return src, sport, dport, ip[ihl + 8:ihl + length]


def option(payload, code):
    i = 240
    while i < len(payload):
        c = payload[i]
        if c == 0:
            i += 1
            continue
        if c == 255:
            return None
        n = payload[i + 1]
        if c == code:
            return payload[i + 2:i + 2 + n]
        i += 2 + n
    return None


def main():
    for name, pcap, index, (src, sport, dport), xid, msg_type in VECTORS:
        frame = list(frames(os.path.join(CAPTURES, pcap)))[index]
        got = udp(frame)
        assert got is not None, (name, "not UDP/IPv4")
        g_src, g_sport, g_dport, payload = got
        assert (g_src, g_sport, g_dport) == (src, sport, dport), (name, got[:3])
        assert payload[0] == 1, (name, "not BOOTREQUEST")
        assert struct.unpack("!I", payload[4:8])[0] == xid, (name, "xid")
        assert option(payload, 53) == bytes([msg_type]), (name, "option 53")
        out = os.path.join(HERE, name + ".bin")
        with open(out, "wb") as f:
            f.write(payload)
        print(f"{name}.bin  {len(payload):4d} B  {pcap} frame {index}  {src}:{sport} -> :{dport}")


if __name__ == "__main__":
    main()
