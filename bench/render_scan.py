#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Medians of scan_bench lines (bench/Makefile's scan target).

  render_scan.py heap       lines "heap_mib=.. scan_ms=.. ..." on stdin:
                            one table row per heap size
  render_scan.py workload   lines "scan=0|1 seconds=.. cpu_seconds=..
                            maxrss_mib=.. peak_rss_pte_mib=.. maps=.. scans=..":
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
            rs = [r for r in rows if int(r["heap_mib"]) == m]
            print("| %d MiB | %.1f ms | %.1f ms | %.0f MiB | %.2f |" % (
                m, med(rs, "scan_ms"), med(rs, "pause_ms"), med(rs, "bytes_mib"),
                med(rs, "gbps")))
        return
    t, c, m, p = {}, {}, {}, {}
    for s, name in (("1", "scan"), ("0", "FIFO")):
        rs = [r for r in rows if r["scan"] == s]
        t[s], c[s] = med(rs, "seconds"), med(rs, "cpu_seconds")
        m[s], p[s] = med(rs, "maxrss_mib"), med(rs, "peak_rss_pte_mib")
        print("| %s | %.3f s | %.3f s | %.1f MiB | %.1f MiB | %d | %d |" % (
            name, t[s], c[s], m[s], p[s], med(rs, "maps"), med(rs, "scans")))
    print()
    print("Scan / FIFO, same run: time %.3f, CPU time %.3f, peak RSS %.3f, peak RSS + page "
          "tables %.3f (MineSweeper's published cost: 1.054 time, 1.111 memory)." % (
              t["1"] / t["0"], c["1"] / c["0"], m["1"] / m["0"], p["1"] / p["0"]))


if __name__ == "__main__":
    main()
