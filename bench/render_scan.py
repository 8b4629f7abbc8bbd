#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Medians of scan_bench lines (bench/Makefile's scan target).

  render_scan.py heap       lines "threads=.. heap_mib=.. scan_ms=.. ..." on
                            stdin: a table row per heap size and readers
  render_scan.py workload   lines "scan=0|1 seconds=.. cpu_seconds=..
                            maxrss_mib=.. peak_rss_pte_mib=.. maps=.. scans=.. scan_ms=..":
                            one row per setting, then the ratios
"""
import statistics
import sys


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def main():
    rows = [fields(l) for l in sys.stdin if l.strip()]
    med = lambda rs, k: statistics.median(float(r[k]) for r in rs)
    if sys.argv[1] == "heap":
        sizes = sorted({int(r["heap_mib"]) for r in rows})
        for m in sizes:
            for t in sorted({r["threads"] for r in rows}, key=lambda t: t == "0"):
                rs = [r for r in rows if int(r["heap_mib"]) == m and r["threads"] == t]
                print("| %d MiB | %s | %.1f ms | %.1f ms | %.0f MiB | %.2f |" % (
                    m, "one per CPU" if t == "0" else t, med(rs, "scan_ms"), med(rs, "pause_ms"),
                    med(rs, "bytes_mib"), med(rs, "gbps")))
        return
    for s, name in (("1", "scan"), ("0", "FIFO")):
        rs = [r for r in rows if r["scan"] == s]
        print("| %s | %.3f s | %.3f s | %.1f MiB | %.1f MiB | %d | %d | %.1f ms |" % (
            name, med(rs, "seconds"), med(rs, "cpu_seconds"), med(rs, "maxrss_mib"),
            med(rs, "peak_rss_pte_mib"), med(rs, "maps"), med(rs, "scans"), med(rs, "scan_ms")))
    # Rounds ran scan then FIFO: the i-th of each is one round.
    rounds = list(zip([r for r in rows if r["scan"] == "1"], [r for r in rows if r["scan"] == "0"]))
    ratio = lambda k: statistics.median(float(a[k]) / float(b[k]) for a, b in rounds)
    print()
    print("Scan / FIFO, medians of the per-round ratios: time %.3f, CPU time %.3f, peak RSS %.3f, "
          "peak RSS + page tables %.3f (MineSweeper's published cost: 1.054 time, 1.111 memory)." % (
              ratio("seconds"), ratio("cpu_seconds"), ratio("maxrss_mib"), ratio("peak_rss_pte_mib")))

if __name__ == "__main__":
    main()
