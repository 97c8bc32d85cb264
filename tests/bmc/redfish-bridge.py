#!/usr/bin/env python3
"""Wires sushy-emulator's fake driver to a QEMU VM.

sushy-tools' fake driver keeps a system's power state in memory, applies a change 1-11 s after
the request (observed on the next GET) and, with `external_notifier: True`, PUTs the whole
system JSON to EXTERNAL_NOTIFICATION_URL on every change. This server receives those PUTs and
makes the VM follow through the same chassis-control script ipmi_sim uses:
  power_state Off (also the first half of a restart)  -> VM off
  power_state On with nothing pending                 -> VM on
  boot_device Pxe / Hdd                               -> next boot from network / disk
Usage: redfish-bridge.py PORT CHASSIS_CONTROL_SCRIPT BMC_DIR  (listens on 127.0.0.1:PORT)
"""
import json
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, CTL, DIR = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def ctl(*args):
    subprocess.run([CTL, DIR, "0x20", *args], check=False)


class Notify(BaseHTTPRequestHandler):
    def do_PUT(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            system = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            system = {}
        power, pending = system.get("power_state"), system.get("pending_power")
        boot = system.get("boot_device")
        print(f"{time.strftime('%T')} power={power} pending={pending} boot={boot}", flush=True)
        if boot in ("Pxe", "Hdd"):
            ctl("set", "boot", "pxe" if boot == "Pxe" else "disk")
        if power == "Off":
            ctl("set", "power", "0")
        elif power == "On" and not pending:
            ctl("set", "power", "1")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Notify).serve_forever()
