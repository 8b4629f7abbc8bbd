#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Render fault_bench output (host and VM) as bench/results/faults.md.

    render_faults.py OUT.md HOST_LINES_FILE VM_TAP_FILE

Each input holds lines "fault_bench key=value ..." (in the VM's TAP file
they follow "# "). A missing or empty file becomes a line saying so.
"""
import datetime
import platform
import sys


def parse(path):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip().lstrip("# ")
                if line.startswith("fault_bench "):
                    rows.append(dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv))
    except OSError:
        pass
    return rows


def section(title, rows):
    out = [f"## {title}", ""]
    if not rows:
        return out + ["No measurements (the run did not happen or produced nothing).", ""]
    out += ["### Fault and release one 8 MiB chunk (median us of the runs)", "",
            "| backend | chunk | fault | release | touching its pages again |",
            "|---|---|---|---|---|"]
    for r in rows:
        if r.get("test") != "cycle":
            continue
        if "skipped" in r:
            out.append(f"| {r['backend']} | | skipped: {r['skipped']} | | |")
            continue
        fill = "fully written" if r["fill"] == "touched" else "one page written"
        out.append(f"| {r['backend']} | {fill} | {r['fault_us_med']} | "
                   f"{r['release_us_med']} | {r['touch_us_med']} |")
    out += ["", "### Batches of 16 chunks (us per chunk)", "",
            "| backend | fault | release |", "|---|---|---|"]
    for r in rows:
        if r.get("test") == "batch" and "skipped" not in r:
            out.append(f"| {r['backend']} | {r['fault_us_per_chunk_med']} | "
                       f"{r['release_us_per_chunk_med']} |")
    out += ["", "### Quarantine scaling: one-page ranges held", "",
            "| backend | ranges | stopped by | VMAs of the mapping | us per range |",
            "|---|---|---|---|---|"]
    for r in rows:
        if r.get("test") != "capacity":
            continue
        if "skipped" in r:
            out.append(f"| {r['backend']} | skipped: {r['skipped']} | | | |")
            continue
        out.append(f"| {r['backend']} | {r['ranges']} | {r['stop']} | "
                   f"{r.get('vmas', '')} | {r['us_per_range']} |")
    return out + [""]


def main():
    out, host, vm = sys.argv[1:4]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Fault backends", "",
             f"- Date: {now}; host: `{platform.system()} {platform.release()} "
             f"{platform.machine()}`; the VM runs Debian's 6.1 kernel under full "
             "emulation (TCG), so compare VM figures with each other only.",
             "- `bench/fault_bench.c` talks to the kernel directly (no libmheap): the "
             "cost of the mechanisms alone. kmod = `/dev/mheap` by ioctl or io_uring; "
             "`none` does nothing, which is what not faulting costs.", ""]
    lines += section("Host (none, guard, mprotect)", parse(host))
    lines += section("VM with the module loaded (kmod, mprotect)", parse(vm))
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
