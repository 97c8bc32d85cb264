#!/usr/bin/env python3
# Run from src/tftp/testdata: python3 extract.py /work/shared/lab/captures  (writes the *.bin RRQ payloads here)
"""Pull the client RRQ payloads out of the lab captures (classic libpcap,
Ethernet/IPv4/UDP) with the standard library only.

Client names are inferred from the option sets and the captures' README:
curl sends `tsize 0 blksize N timeout 6`, atftp `tsize enable ...` /
`blksize .. windowsize ..`, tftp-hpa no options.
"""
import os
import struct
import sys

CAPTURES = {
    "uefi-native-tftp-rrq.pcap": ["ovmf-rrq-1", "ovmf-rrq-2"],
    "tftp-clients-rrq.pcap": [
        "curl-rrq-1",
        "curl-rrq-2",
        "tftp-hpa-rrq-1",
        "tftp-hpa-rrq-2",
        "atftp-rrq-1",
        "atftp-rrq-2",
        "tftp-hpa-rrq-3",
    ],
}


def udp_payloads(data):
    magic = data[:4]
    if magic == b"\xd4\xc3\xb2\xa1":
        endian = "<"
    elif magic == b"\xa1\xb2\xc3\xd4":
        endian = ">"
    else:
        raise ValueError("not a classic libpcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError("link type %d is not Ethernet" % linktype)
    off = 24
    while off + 16 <= len(data):
        _ts, _tsu, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        eth_type = struct.unpack("!H", frame[12:14])[0]
        l3 = 14
        if eth_type == 0x8100:  # one 802.1Q tag
            eth_type = struct.unpack("!H", frame[16:18])[0]
            l3 = 18
        if eth_type != 0x0800:
            continue
        ihl = (frame[l3] & 0x0F) * 4
        if frame[l3 + 9] != 17:
            continue
        total_len = struct.unpack("!H", frame[l3 + 2:l3 + 4])[0]
        ip = frame[l3:l3 + total_len]
        udp = ip[ihl:]
        sport, dport, ulen = struct.unpack("!HHH", udp[:6])
        yield sport, dport, udp[8:ulen]


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/lab/captures"
    for name, labels in CAPTURES.items():
        with open(os.path.join(src, name), "rb") as f:
            data = f.read()
        rrqs = [p for _s, _d, p in udp_payloads(data) if p[:2] == b"\x00\x01"]
        if len(rrqs) != len(labels):
            raise SystemExit("%s: %d RRQs, expected %d" % (name, len(rrqs), len(labels)))
        for label, payload in zip(labels, rrqs):
            with open(label + ".bin", "wb") as out:
                out.write(payload)
            print("%s.bin: %r" % (label, payload))


if __name__ == "__main__":
    main()
