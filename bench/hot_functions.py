#!/usr/bin/env python3
"""The functions of one binary that callgrind saw run, hottest first (by their own instruction
count), one mangled name per line: lld's --symbol-ordering-file (see src/cli/build.rs).

usage: hot_functions.py BINARY CALLGRIND_OUT...
"""
import collections
import os
import re
import sys

binary, outs = os.path.realpath(sys.argv[1]), sys.argv[2:]
LINE = re.compile(r"^(ob|cob|fn|cfn)=\((\d+)\)(?: (.*))?$")
cost = collections.Counter()
ran = set()
for path in outs:
    objects, names = {}, {}
    ob = cob = fn = called = None
    after_call = False
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if m:
                kind, ref, name = m.groups()
                table = objects if kind in ("ob", "cob") else names
                if name:
                    table[ref] = name
                if kind == "ob":
                    ob = objects.get(ref)
                elif kind == "cob":
                    cob = objects.get(ref)
                elif kind == "fn":
                    fn, cob = (ob, names.get(ref)), None
                else:
                    called, cob = (cob or ob, names.get(ref)), None
                continue
            if line.startswith("calls="):
                if called:
                    ran.add(called)
                after_call = True  # the next cost line is the call's inclusive cost
                continue
            if fn and line[:1] in "0123456789+-*":
                if after_call:
                    after_call = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    cost[fn] += int(parts[1])
                ran.add(fn)

# callgrind marks a function's recursion levels with a suffix ('2, --separate-recs); functions
# without a name ("0x...", "(below main)") cannot be listed.
SYMBOL = re.compile(r"^[A-Za-z_.$][A-Za-z0-9_.$]*$")
best = collections.Counter()
for obj, name in ran:
    if obj and name and os.path.realpath(obj) == binary:
        symbol = re.sub(r"'\d+$", "", name)
        if SYMBOL.match(symbol):
            best[symbol] += cost[(obj, name)]
if not best:
    sys.exit(f"hot_functions.py: callgrind saw no function of {binary} run")
for name in sorted(best, key=lambda n: (-best[n], n)):
    print(name)
