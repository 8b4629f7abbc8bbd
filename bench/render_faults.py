#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Render fault_bench output (host and VM) as bench/results/faults.md.

    render_faults.py OUT.md HOST_LINES_FILE VM_TAP_FILE...

Each input holds lines "fault_bench key=value ..." (in the VM's TAP files
they follow "# "). There is one VM TAP file per kernel the VM booted,
named by tools/vmtest.sh vm-<kernel>-bench-fault_bench.tap, and one section
per kernel. A missing or empty file becomes a line saying so.
"""
import datetime
import os
import platform
import re
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


def min_med(r, what):
    """"min (median)" of a cycle row, or the median alone from an older bench."""
    med = r[f"{what}_us_med"]
    return f"{r[f'{what}_us_min']} ({med})" if f"{what}_us_min" in r else med


def section(title, rows):
    out = [f"## {title}", ""]
    if not rows:
        return out + ["No measurements (the run did not happen or produced nothing).", ""]
    out += ["### Fault and release one 8 MiB chunk (us: minimum (median) of the runs)", "",
            "| backend | chunk | fault | release | touching its pages again (median) |",
            "|---|---|---|---|---|"]
    for r in rows:
        if r.get("test") != "cycle":
            continue
        if "skipped" in r:
            out.append(f"| {r['backend']} | | skipped: {r['skipped']} | | |")
            continue
        fill = "fully written" if r["fill"] == "touched" else "one page written"
        out.append(f"| {r['backend']} | {fill} | {min_med(r, 'fault')} | "
                   f"{min_med(r, 'release')} | {r['touch_us_med']} |")
    out += ["", "### Batches of 16 chunks (us per chunk)", "",
            "| backend | fault | release |", "|---|---|---|"]
    for r in rows:
        if r.get("test") == "batch" and "skipped" not in r:
            out.append(f"| {r['backend']} | {r['fault_us_per_chunk_med']} | "
                       f"{r['release_us_per_chunk_med']} |")
    out += arena(rows)
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
    return out + ratios(rows) + [""]


def arena(rows):
    """test=arena: the library end to end, and kmod over mprotect."""
    got = [r for r in rows if r.get("test") == "arena"]
    if not got:
        return []
    out = ["", "### The library: a big arena, every page written, then freed "
           "(us per 8 MiB chunk, medians)", "",
           "| backend | write (fill) | mh_arena_free | both |", "|---|---|---|---|"]
    both = {}
    for r in got:
        if "skipped" in r:
            out.append(f"| {r['backend']} | skipped: {r['skipped']} | | |")
            continue
        fill, free = float(r["fill_us_med"]), float(r["free_us_med"])
        both[r["backend"]] = (fill, free, fill + free)
        out.append(f"| {r['backend']} | {fill:.1f} | {free:.1f} | {fill + free:.1f} |")
    for base in ("mprotect", "mprotect-norecycle"):
        if "kmod" in both and base in both:
            k, m = both["kmod"], both[base]
            out += ["", f"kmod over {base}, this run: " + ", ".join(
                f"{what} {a / b:.2f}" for what, a, b in
                zip(("write", "free", "both"), k, m) if b) + "."]
    if any(r.get("backend") == "mprotect-norecycle" for r in got):
        out += ["", "mprotect-norecycle is mprotect with `MHEAP_ARENA_RECYCLE=0`: freed "
                "full chunks are faulted, as kmod's are, instead of moved warm."]
    return out


def ratios(rows):
    """kmod against mprotect on the same kernel, in the same run."""
    def value(test, backend, key, fill=None):
        for r in rows:
            if (r.get("test") == test and r.get("backend") == backend and
                    "skipped" not in r and (fill is None or r.get("fill") == fill)):
                try:
                    return float(r[key])
                except (KeyError, ValueError):
                    return None
        return None

    cases = [("fault a fully written 8 MiB chunk (minima)", "cycle", "fault_us_min", "touched"),
             ("fault a chunk with one page written (minima)", "cycle", "fault_us_min",
              "sparse"),
             ("fault, in a batch of 16 (per chunk, medians)", "batch",
              "fault_us_per_chunk_med", None),
             ("release, in a batch of 16 (per chunk, medians)", "batch",
              "release_us_per_chunk_med", None)]
    pairs = [(kmod, base) for base in ("mprotect", "mprotect-4k")
             for kmod in ("kmod-ioctl", "kmod-uring")]
    out = []
    for what, test, key, fill in cases:
        cells = []
        for kmod, base in pairs:
            v, b = value(test, kmod, key, fill), value(test, base, key, fill)
            cells.append(f"{v / b:.2f}" if v is not None and b else "")
        if any(cells):
            out.append(f"| {what} | " + " | ".join(cells) + " |")
    if not out:
        return []
    return ["", "### kmod over mprotect (cost ratio, this run; below 1: kmod is cheaper)", "",
            "| | " + " | ".join(f"{k} / {b}" for k, b in pairs) + " |",
            "|---" * (len(pairs) + 1) + "|"] + out


def kernel_of(path):
    """The kernel a VM TAP file is from, by its name (tools/vmtest.sh)."""
    m = re.match(r"vm-(.+)-bench-fault_bench\.tap$", os.path.basename(path))
    return m.group(1) if m else path


def main():
    out, host, vms = sys.argv[1], sys.argv[2], sys.argv[3:]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Fault backends", "",
             f"- Date: {now}; host: `{platform.system()} {platform.release()} "
             f"{platform.machine()}`; the VM boots each of "
             f"{', '.join(f'`{kernel_of(v)}`' for v in vms) or 'no kernel'} "
             "in turn under full emulation (TCG), so compare VM figures with each "
             "other only, within one kernel's section.",
             "- `bench/fault_bench.c` talks to the kernel directly (no libmheap): the "
             "cost of the mechanisms alone. kmod = `/dev/mheap` by ioctl or io_uring; "
             "`none` does nothing, which is what not faulting costs. Only its "
             "library table goes through libmheap, one process per backend "
             "(`MHEAP_BACKEND`).", ""]
    lines += section("Host (none, guard, mprotect)", parse(host))
    for vm in vms:
        lines += section(f"VM on {kernel_of(vm)}, with the module loaded (kmod, mprotect)",
                         parse(vm))
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
