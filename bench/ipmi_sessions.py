#!/usr/bin/env python3
"""IPMI sessions per BMC, seen on the wire: how many BMCs had two sessions open at once.

Reads a pcap (tcpdump -w, stdlib only) of RMCP traffic to BMCs listening on UDP ports LO..HI.
A session is the traffic between one client port and one BMC port, starting with the client's
Get Channel Authentication Capabilities request (IPMI v1.5 wrapper, netFn App, cmd 0x38; every
lanplus client opens with it) and ending with the last packet before the next one on that port
pair (the Close Session reply). Retransmitted 0x38 requests do not start a new session.

Prints one JSON object: sessions, BMCs, sessions per BMC (min/max), the highest number of
sessions open at once on one BMC (1 = never two commands at once) with the offending BMC ports,
the highest number of BMCs in a session at once (the client's parallelism), and the smallest gap
between two sessions on one BMC (the per-BMC minimum interval as the BMC saw it).
"""
import json
import struct
import sys


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        end = "<"
    else:
        end = ">"
        magic = struct.unpack(">I", data[:4])[0]
    nano = magic == 0xA1B23C4D
    linktype = struct.unpack(end + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(end + "IIII", data[off : off + 16])
        off += 16
        frame = data[off : off + incl]
        off += incl
        ts = sec + frac / (1e9 if nano else 1e6)
        if linktype == 1:  # Ethernet (Linux lo)
            if len(frame) < 14 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked v1
            if len(frame) < 16 or frame[14:16] != b"\x08\x00":
                continue
            ip = frame[16:]
        elif linktype == 276:  # Linux cooked v2
            if len(frame) < 20 or frame[0:2] != b"\x08\x00":
                continue
            ip = frame[20:]
        elif linktype in (101, 228):  # raw IPv4
            ip = frame
        else:
            sys.exit(f"unsupported pcap link type {linktype}")
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        udp = ip[ihl:]
        if len(udp) < 8:
            continue
        sport, dport = struct.unpack(">HH", udp[:4])
        yield ts, ip[12:16], sport, ip[16:20], dport, udp[8:]


def is_auth_caps_request(p):
    # RMCP (06 00 ff 07), then the v1.5 session header: auth type 0 (none) at 4, seq 5..8,
    # session id 9..12, length 13; the message: rsAddr 14, netFn App (0x06 << 2) at 15,
    # checksum 16, rqAddr 17, rqSeq 18, cmd 0x38 at 19.
    return len(p) >= 20 and p[0] == 0x06 and p[3] == 0x07 and p[4] == 0x00 and p[15] == 0x18 and p[19] == 0x38


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: ipmi_sessions.py FILE.pcap LO_PORT HI_PORT")
    path, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    open_by_pair = {}  # (bmc, client) -> session dict
    sessions = []
    for ts, src, sport, dst, dport, payload in packets(path):
        if lo <= dport <= hi:
            bmc, client, to_bmc = dport, (src, sport), True
        elif lo <= sport <= hi:
            bmc, client, to_bmc = sport, (dst, dport), False
        else:
            continue
        key = (bmc, client)
        cur = open_by_pair.get(key)
        starts = to_bmc and is_auth_caps_request(payload)
        if cur is None or (starts and cur["other"]):
            cur = {"bmc": bmc, "start": ts, "end": ts, "other": False}
            sessions.append(cur)
            open_by_pair[key] = cur
        cur["end"] = ts
        if not starts:
            cur["other"] = True
    by_bmc = {}
    for s in sessions:
        by_bmc.setdefault(s["bmc"], []).append(s)
    max_per_bmc, offenders, min_gap = 0, [], None
    for bmc, ss in by_bmc.items():
        ss.sort(key=lambda s: s["start"])
        open_ends = []
        worst = 0
        for s in ss:
            open_ends = [e for e in open_ends if e >= s["start"]]
            open_ends.append(s["end"])
            worst = max(worst, len(open_ends))
        if worst > 1:
            offenders.append(bmc)
        max_per_bmc = max(max_per_bmc, worst)
        latest_end = None
        for s in ss:
            if latest_end is not None:
                gap = s["start"] - latest_end
                min_gap = gap if min_gap is None else min(min_gap, gap)
            latest_end = s["end"] if latest_end is None else max(latest_end, s["end"])
    # Parallelism across BMCs: sweep over all session intervals.
    events = sorted([(s["start"], 1) for s in sessions] + [(s["end"], -1) for s in sessions],
                    key=lambda e: (e[0], -e[1]))
    level = peak = 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    counts = [len(v) for v in by_bmc.values()]
    print(json.dumps({
        "sessions": len(sessions),
        "bmcs": len(by_bmc),
        "sessions_per_bmc_min": min(counts) if counts else 0,
        "sessions_per_bmc_max": max(counts) if counts else 0,
        "max_open_sessions_on_one_bmc": max_per_bmc,
        "bmcs_with_overlapping_sessions": sorted(offenders),
        "max_bmcs_in_session_at_once": peak,
        "min_gap_between_sessions_on_one_bmc_ms": None if min_gap is None else round(min_gap * 1000, 3),
        "mean_session_ms": round(sum(s["end"] - s["start"] for s in sessions) / len(sessions) * 1000, 3) if sessions else None,
    }))


if __name__ == "__main__":
    main()
