# SPDX-License-Identifier: MIT
"""The markdown report (results/latest.md): the machine and the builds, the
headline and summary tables, one table per workload with the ratios, the
peer table of the program-like shapes."""

import datetime
import math
import os
import platform
import subprocess

from bench_matrix import SCUDO_SO

FAULT_US = 3.0  # cost of one minor fault on these machines, for the estimate
# Workloads whose report adds mheap's ratios to every peer (issue #24's
# program-like shapes).
PEER_TABLE_WORKLOADS = ("bigchurn", "localchurn", "server", "peakfree")


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True).stdout.strip()
    except OSError:
        return ""


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_mheap(top, build, so):
    """Which libmheap the mheap rows measured (called when the snapshot is taken)."""
    if not so:
        return "not built (build/libmheap.so missing)"
    import hashlib
    with open(so, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    mt = datetime.datetime.fromtimestamp(os.path.getmtime(so))
    desc = ("build/libmheap.so built %s (sha256 %s), copied to build/bench/ at the "
            "start so every run preloads the same build" % (
                mt.strftime("%Y-%m-%d %H:%M"), digest))
    a = os.path.join(build, "bench", "alloc_bench_mh")
    if os.path.exists(a):
        desc += "; alloc_bench_mh linked with build/libmheap.a at %s" % (
            datetime.datetime.fromtimestamp(os.path.getmtime(a)).strftime("%Y-%m-%d %H:%M"))
    rev = sh("git -C %s rev-parse --short HEAD 2>/dev/null" % top)
    if rev:
        desc += "; git HEAD %s%s" % (rev, ", userlib/ modified" if sh(
            "git -C %s status --porcelain userlib 2>/dev/null" % top) else "")
    return desc


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def pkg_version(pkg):
    return sh("dpkg-query -W -f='${Version}' %s 2>/dev/null" % pkg) or "?"


def fmt_mib(kb):
    return "-" if kb is None else "%.1f" % (kb / 1024.0)


def fmt_ratio(x):
    return "-" if x is None else "%.2f×" % x


def fmt_time(s):
    if s is None:
        return "-"
    if s < 0.01:
        return "%.2f ms" % (s * 1e3)
    if s < 1:
        return "%.1f ms" % (s * 1e3)
    return "%.3f s" % s


def fmt_mops(m):
    if m is None:
        return "-"
    return "%.1f" % m if m >= 10 else "%.2f" % m if m >= 0.1 else "%.4f" % m


def status_text(st):
    if st.get("missing"):
        return "not available: " + st["missing"]
    if st.get("unavailable"):
        return "not available: " + st["unavailable"].replace("_", " ")
    if st.get("failed"):
        return "FAILED: " + st["failed"].replace("|", "/")
    return "no runs"


# The peers a user would pick instead of mheap, each preloaded (the -linked
# rows call the same allocators through their own API and are left out).
MATRIX_PEERS = ("glibc", "jemalloc", "tcmalloc", "mimalloc", "scudo")


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def matrix_summary(cases, stats):
    """Issue #24's whole-matrix targets for mheap over the program-like cases:
    per case its time against mimalloc, tcmalloc and the fastest peer, and its
    peak RSS against mimalloc (medians of per-round ratios); then their
    geometric means and the worst case. Returns (rows, totals)."""
    rows = []
    for c in cases:
        if c.section != "Program-like":
            continue
        vp = stats[c.id].get("mheap", {}).get("vs_peers")
        if not vp:
            continue
        timed = {p: vp[p]["seconds"] for p in MATRIX_PEERS
                 if p in vp and vp[p]["seconds"]}
        best = min(timed, key=lambda p: stats[c.id][p]["seconds"]) if timed else None
        rows.append({"case": c.id,
                     "vs_mimalloc": timed.get("mimalloc"),
                     "vs_tcmalloc": timed.get("tcmalloc"),
                     "best": best, "vs_best": timed.get(best),
                     "rss_vs_mimalloc": (vp.get("mimalloc") or {}).get("peak_rss_kb")})
    tot = {k: geomean([r[k] for r in rows])
           for k in ("vs_mimalloc", "vs_tcmalloc", "vs_best", "rss_vs_mimalloc")}
    worst = max(rows, key=lambda r: r["vs_best"] or 0) if rows else None
    tot["worst"] = worst
    tot["rss_max"] = max((r["rss_vs_mimalloc"] or 0 for r in rows), default=None)
    return rows, tot


def render_matrix(cases, stats):
    rows, tot = matrix_summary(cases, stats)
    if not rows:
        return []
    L = ["## Program-like matrix", "",
         "`mheap` (preloaded) ÷ each peer over the program-like cases, medians of the "
         "per-round ratios; the last row is their geometric mean. Issue #24's targets: "
         "geometric mean at most 0.90× mimalloc and below 1.00× tcmalloc, no case above "
         "1.20× the fastest peer, peak RSS at most mimalloc's.", "",
         "| case | time vs mimalloc | time vs tcmalloc | fastest peer | time vs fastest "
         "| peak RSS vs mimalloc |", "|---|---|---|---|---|---|"]
    for r in rows:
        L.append("| %s | %s | %s | %s | %s | %s |" % (
            r["case"], fmt_ratio(r["vs_mimalloc"]), fmt_ratio(r["vs_tcmalloc"]),
            r["best"] or "-", fmt_ratio(r["vs_best"]), fmt_ratio(r["rss_vs_mimalloc"])))
    L.append("| **geometric mean** | **%s** | **%s** | | %s | **%s** |" % (
        fmt_ratio(tot["vs_mimalloc"]), fmt_ratio(tot["vs_tcmalloc"]),
        fmt_ratio(tot["vs_best"]), fmt_ratio(tot["rss_vs_mimalloc"])))
    w = tot["worst"]

    def verdict(ok):
        return "met" if ok else "**not met**"
    L += ["", "- geometric mean vs mimalloc %s (target ≤ 0.90×): %s" % (
              fmt_ratio(tot["vs_mimalloc"]),
              verdict(tot["vs_mimalloc"] is not None and tot["vs_mimalloc"] <= 0.90)),
          "- geometric mean vs tcmalloc %s (target < 1.00×): %s" % (
              fmt_ratio(tot["vs_tcmalloc"]),
              verdict(tot["vs_tcmalloc"] is not None and tot["vs_tcmalloc"] < 1.0)),
          "- slowest case against its fastest peer: %s, %s %s (target ≤ 1.20×): %s" % (
              w["case"], fmt_ratio(w["vs_best"]), w["best"],
              verdict(w["vs_best"] is not None and w["vs_best"] <= 1.20)),
          "- peak RSS vs mimalloc: geometric mean %s, largest %s (target ≤ 1.00×): %s" % (
              fmt_ratio(tot["rss_vs_mimalloc"]), fmt_ratio(tot["rss_max"]),
              verdict(tot["rss_max"] is not None and tot["rss_max"] <= 1.0)), ""]
    return L


def render_md(path, meta, cases, runners_for, stats, headline):
    L = []
    L.append("# mheap benchmark results (%s)" % meta["mode"])
    L.append("")
    L.append("- Date: %s" % meta["date"])
    L.append("- Machine: `%s`, CPU: %s, %d online CPUs" % (
        meta["uname"], meta["cpu"], meta["ncpu"]))
    L.append("- Runs: every figure is the median of **%d** runs, interleaved across "
             "allocators (round 1 of every allocator, then round 2, ...; within a "
             "round a case's allocators run in a random order drawn anew each round, "
             "seed %s, so that no row always follows the same run; `--seed %s` "
             "repeats the orders, raw.jsonl gives each run's predecessor). The whole "
             "matrix took %.0f s." % (
                 meta["runs"], meta.get("seed", "?"), meta.get("seed", "?"),
                 meta["elapsed"]))
    L.append("- Allocators: glibc %s (no preload); jemalloc %s, tcmalloc (gperftools) "
             "%s `%s`, mimalloc %s, Scudo (LLVM %s, `%s`), each LD_PRELOADed under "
             "the plain-malloc driver; "
             "`mheap` = LD_PRELOAD=build/libmheap.so under the same driver; "
             "`mheap-linked` = the same workload source compiled with -DUSE_MH calling "
             "mh_malloc/mh_free, linked with build/libmheap.a%s." % (
                 meta["glibc"], meta["jemalloc"], meta["tcmalloc"],
                 os.path.basename(meta["tcmalloc_so"]), meta["mimalloc"],
                 meta["scudo"], os.path.basename(SCUDO_SO),
                 "; `mimalloc-linked` = -DUSE_MI calling mi_malloc/mi_free"
                 if meta["mi_linked"] else ""))
    L.append("- mheap: %s" % meta["mheap"])
    L.append("- Ratios are time ÷ the reference's time, the median of the per-round "
             "ratios against the reference run in the same round: **below 1.00× is "
             "faster** than mimalloc / glibc. Arena tables use `mimalloc heap` and "
             "`glibc malloc` as the references, and add `mheap malloc` (mh_malloc + "
             "mh_free of the same objects); the arena's targets are at most 0.20× "
             "`mheap malloc` and 0.50× `mimalloc heap` for 16 B objects. Arena tables "
             "time the driver's CPU time over the timed rounds (single-threaded: its "
             "wall time less other tasks' time slices; wall time is `wall_seconds` "
             "in raw.jsonl).")
    L.append("- Mops/s = allocation calls (malloc, realloc or arena alloc; each "
             "matched by a free) per second of the median time, all threads together.")
    L.append("- Peak RSS is VmHWM of the whole process (includes the driver's "
             "pre-faulted tables and the loaded libraries, about 2-10 MiB); RSS after "
             "free is VmRSS right after the workload freed everything. Minor faults "
             "are ru_minflt during the workload (median); 'faults × 3 µs' is their "
             "estimated cost at the nominal %.0f µs per fault of these machines, to "
             "set against the median time (measured here: 2-9 µs per first-touch "
             "fault, so read it as an order of magnitude)." % FAULT_US)
    L.append("- ± (MAD) = median absolute deviation of the run times / median time: "
             "a noise gauge that one outlier run does not move.")
    L.append("- Load average (1, 5, 15 min) at start: %s; at end: %s. The machine is "
             "shared: other jobs may have run at the same time." % (
                 meta["load_start"], meta["load_end"]))
    L.append("")

    # headline
    L.append("## Headline")
    L.append("")
    hdr = ["allocator"] + [h[0] for h in headline]
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "---|" * len(hdr))
    names = []
    for c in cases:
        if not c.arena:
            names = [r.name for r in runners_for(c)]
            break
    for n in names:
        row = [n]
        for _, cid, key in headline:
            st = stats.get(cid, {}).get(n)
            if not st or "seconds" not in st:
                row.append("n/a")
            elif key == "mops":
                row.append("%s (%s)" % (fmt_mops(st["mops"]), fmt_ratio(st.get("vs_mimalloc"))))
            else:
                row.append(fmt_mib(st.get(key)))
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("Throughput columns: Mops/s (time vs mimalloc). RSS columns: MiB, from "
             "the memory workload.")
    L.append("")

    section = None
    for c in cases:
        if c.section != section:
            section = c.section
            L.append("## " + section)
            L.append("")
        L.append("### %s" % c.title)
        L.append("")
        params = " ".join("%s=%s" % kv for kv in c.params.items())
        if c.arena:
            L.append("`arena_bench %s VARIANT %s`" % (c.workload, params))
        else:
            L.append("`alloc_bench %s %s`" % (c.workload, params))
        L.append("")
        extra_mem = c.workload == "memory"
        hdr = ["allocator", "median time", "Mops/s", "vs mimalloc", "vs glibc",
               "peak RSS MiB"]
        if c.arena:
            hdr.insert(5, "vs mheap malloc")
        if extra_mem:
            hdr += ["RSS half freed MiB"]
        hdr += ["RSS after free MiB"]
        if extra_mem:
            hdr += ["RSS +%d ms MiB" % c.params["settle_ms"]]
        hdr += ["minor faults", "faults × 3 µs", "± (MAD)"]
        L.append("| " + " | ".join(hdr) + " |")
        L.append("|" + "---|" * len(hdr))
        for rn in runners_for(c):
            st = stats[c.id][rn.name]
            if "seconds" not in st:
                L.append("| %s | %s |" % (rn.name, status_text(st)) +
                         " |" * (len(hdr) - 2))
                continue
            fs = st["minflt"] * FAULT_US * 1e-6 if st.get("minflt") is not None else None
            row = [rn.name + ("" if st["fail_runs"] == 0 else
                              " (%d/%d runs failed: %s)" % (
                                  st["fail_runs"], st["runs"],
                                  (st.get("failed") or "?").replace("|", "/"))),
                   fmt_time(st["seconds"]), fmt_mops(st["mops"]),
                   fmt_ratio(st.get("vs_mimalloc")), fmt_ratio(st.get("vs_glibc")),
                   fmt_mib(st.get("peak_rss_kb"))]
            if c.arena:
                row.insert(5, fmt_ratio(st.get("vs_mheap_malloc")))
            if extra_mem:
                row.append(fmt_mib(st.get("rss_half_kb")))
            row.append(fmt_mib(st.get("rss_after_kb")))
            if extra_mem:
                row.append(fmt_mib(st.get("rss_settled_kb")))
            row += ["%d" % st["minflt"] if st.get("minflt") is not None else "-",
                    "-" if fs is None else fmt_time(fs),
                    "%.1f%%" % (100 * st["spread"])]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        vp = stats[c.id].get("mheap", {}).get("vs_peers")
        if vp and c.workload in PEER_TABLE_WORKLOADS:
            L.append("mheap ÷ each peer, median of the per-round ratios "
                     "(below 1.00× is less):")
            L.append("")
            L.append("| peer | time | minor faults | peak RSS |")
            L.append("|---|---|---|---|")
            for peer, d in vp.items():
                L.append("| %s | %s | %s | %s |" % (
                    peer, fmt_ratio(d["seconds"]), fmt_ratio(d["minflt"]),
                    fmt_ratio(d["peak_rss_kb"])))
            L.append("")
    L += render_matrix(cases, stats)
    secure = [c for c in cases if c.section == "Program-like"]
    if secure:
        L.append("## Secure mode")
        L.append("")
        L.append("`mheap-secure` = `mheap` with MHEAP_SECURE=1 (docs/secure.md). "
                 "Ratios are against `mheap` in the same round (medians of the per-round "
                 "ratios); the targets are at most 1.30× the time and 1.20× the peak RSS.")
        L.append("")
        L.append("| case | time vs mheap | peak RSS vs mheap | time vs Scudo |")
        L.append("|---|---|---|---|")
        for c in secure:
            st = stats[c.id].get("mheap-secure", {})
            if "seconds" not in st:
                L.append("| %s | %s | | |" % (c.id, status_text(st)))
                continue
            L.append("| %s | %s | %s | %s |" % (
                c.id, fmt_ratio(st.get("vs_mheap")), fmt_ratio(st.get("rss_vs_mheap")),
                fmt_ratio(st.get("vs_scudo"))))
        sts = [stats[c.id].get("mheap-secure", {}) for c in secure]
        L.append("| **geometric mean** | **%s** | **%s** | **%s** |" % tuple(
            fmt_ratio(geomean([st.get(k) for st in sts]))
            for k in ("vs_mheap", "rss_vs_mheap", "vs_scudo")))
        L.append("")
    if meta.get("plots"):
        L.append("## Plots")
        L.append("")
        for png, title in meta["plots"]:
            L.append("![%s](%s)" % (title, png))
            L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))
