#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run the mheap benchmark matrix and render the results.

    run_bench.py --mode quick|full|smoke --top TOP --build BUILD [--runs N]

Every (workload, allocator) pair runs --runs times. Runs are interleaved:
round 1 runs every case on every allocator, then round 2, and so on; inside a
round the allocator order rotates so that no allocator always goes first.
Each figure is the median over the rounds; ratios are the median of the
per-round ratios (time of the allocator / time of the reference measured in
the same round).

Raw lines go to BUILD/bench/MODE/raw.jsonl; the markdown report and the
gnuplot PNGs go to bench/results/ (quick, full) or BUILD/bench/smoke/ (smoke).
Standard library only.
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

LIBDIR = "/usr/lib/x86_64-linux-gnu"
# Scudo, LLVM's hardened allocator, from Debian's libclang-rt-14-dev.
SCUDO_SO = "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.scudo_standalone-x86_64.so"
FAULT_US = 3.0
# Workloads whose report adds mheap's ratios to every peer (issue #24's
# program-like shapes).
PEER_TABLE_WORKLOADS = ("bigchurn", "localchurn", "server", "peakfree")  # cost of one minor fault on these machines, for the estimate


# --------------------------------------------------------------- runners

class Runner:
    """One way of running a driver: a binary plus an optional LD_PRELOAD."""

    def __init__(self, name, binary, preload=None, prefix_args=(), missing=None,
                 skip=None, env=None):
        self.name = name
        self.binary = binary
        self.preload = preload
        self.prefix_args = list(prefix_args)
        self.missing = missing  # reason it cannot run, or None
        self.skip = skip or {}  # workload -> why this runner sits it out
        self.env = dict(env or {})  # variables set for its runs

    def check(self):
        if self.missing:
            return self.missing
        if not os.path.exists(self.binary):
            return "binary %s was not built" % os.path.basename(self.binary)
        if self.preload and not os.path.exists(self.preload):
            return "%s is missing" % self.preload
        return None


def first_existing(*paths):
    for p in paths:
        if os.path.exists(p):
            return p
    return paths[0]


def alloc_runners(out, build, with_mi_linked, so):
    plain = os.path.join(out, "alloc_bench")
    mh_missing = None
    if not so or not os.path.exists(so):
        mh_missing = "build/libmheap.so missing (run `make lib`)"
    runners = [
        Runner("glibc", plain),
        Runner("jemalloc", plain, os.path.join(LIBDIR, "libjemalloc.so.2")),
        Runner("tcmalloc", plain, first_existing(
            os.path.join(LIBDIR, "libtcmalloc_minimal.so.4"),
            os.path.join(LIBDIR, "libtcmalloc.so.4"))),
        Runner("mimalloc", plain, os.path.join(LIBDIR, "libmimalloc.so.2")),
        Runner("scudo", plain, SCUDO_SO, skip={
            "realloc": "Scudo did not finish the quick realloc growth in "
                       "60 s where the others take 0.1 s (2026-12-06)"}),
    ]
    if with_mi_linked:
        runners.append(Runner("mimalloc-linked", os.path.join(out, "alloc_bench_mi")))
    runners += [
        Runner("mheap", plain, so, missing=mh_missing),
        Runner("mheap-linked", os.path.join(out, "alloc_bench_mh"),
               missing=None if os.path.exists(os.path.join(build, "libmheap.a"))
               else "build/libmheap.a missing (run `make lib`)"),
    ]
    return runners


def arena_runners(out, build):
    mh = os.path.join(out, "arena_bench_mh")
    mi = os.path.join(out, "arena_bench_mi")
    plain = os.path.join(out, "arena_bench")
    if not os.path.exists(os.path.join(build, "libmheap.a")):
        mh_missing = "build/libmheap.a missing (run `make lib`)"
    elif not os.path.exists(mh):
        mh_missing = ("arena_bench_mh did not build against libmheap.a "
                      "(see build/bench/arena_bench_mh.log)")
    else:
        mh_missing = None
    return [
        Runner("mheap arena", mh, prefix_args=["arena"], missing=mh_missing),
        Runner("mheap arena noscan", mh, prefix_args=["noscan"], missing=mh_missing),
        Runner("mheap malloc", mh, prefix_args=["malloc"], missing=mh_missing),
        Runner("mimalloc heap", mi, prefix_args=["heap"]),
        Runner("mimalloc malloc", mi, prefix_args=["malloc"]),
        Runner("glibc malloc", plain, prefix_args=["malloc"]),
        Runner("jemalloc malloc", plain, os.path.join(LIBDIR, "libjemalloc.so.2"),
               prefix_args=["malloc"]),
        Runner("tcmalloc malloc", plain, first_existing(
            os.path.join(LIBDIR, "libtcmalloc_minimal.so.4"),
            os.path.join(LIBDIR, "libtcmalloc.so.4")), prefix_args=["malloc"]),
    ]


# ----------------------------------------------------------------- cases

class Case:
    def __init__(self, cid, section, title, workload, params, arena=False,
                 threads=1, plot=None):
        self.id = cid
        self.section = section
        self.title = title
        self.workload = workload
        self.params = dict(params)
        self.arena = arena
        self.threads = threads
        self.plot = plot or []  # list of (plot, panel, x)
        if not arena:
            self.params["threads"] = threads

    def argv(self, runner):
        args = [runner.binary, self.workload] + runner.prefix_args
        args += ["%s=%s" % kv for kv in self.params.items()]
        return args


def build_cases(mode):
    quick = mode in ("quick", "smoke")
    cases = []
    S = "Small objects"

    def small(label, cid, lo, hi, order, threads, ops, plots=()):
        batch = 4096
        iters = max(1, ops // batch)
        cases.append(Case(
            "small-%s-%s-t%d" % (cid, order, threads), S,
            "%s, %s free order, %d thread%s" % (label, order.upper() if order == "lifo"
                                                else order, threads,
                                                "" if threads == 1 else "s"),
            "small", {"min": lo, "max": hi, "order": order, "batch": batch,
                      "iters": iters}, threads=threads, plot=list(plots)))

    if quick:
        small("64 B", "fixed64", 64, 64, "lifo", 1, 1 << 21,
              [("threads", "64 B LIFO", 1)])
        small("64 B", "fixed64", 64, 64, "lifo", 2, 1 << 21,
              [("threads", "64 B LIFO", 2)])
        for size, ops in ((64, 1 << 21), (1024, 1 << 20), (8192, 1 << 18)):
            small("%d B" % size, "fixed%d" % size, size, size, "random", 1, ops,
                  [("sizes", "random order, 1 thread", size)])
        small("8..1024 B", "r8-1024", 8, 1024, "random", 1, 1 << 20,
              [("threads", "8..1024 B random order", 1)])
        small("8..1024 B", "r8-1024", 8, 1024, "random", 2, 1 << 20,
              [("threads", "8..1024 B random order", 2)])
        small("8..32768 B", "r8-32768", 8, 32768, "random", 1, 1 << 17)
    else:
        sizes = ((16, 1 << 22), (64, 1 << 22), (256, 1 << 21), (1024, 1 << 20),
                 (8192, 1 << 18))
        for order in ("lifo", "random"):
            oname = "LIFO" if order == "lifo" else "random order"
            for size, ops in sizes:
                tl = (1, 2, 4) if (size == 64 and order == "lifo") else (1, 2)
                for threads in tl:
                    plots = []
                    if threads < 4:
                        plots.append(("sizes", "%s, %d thread%s" % (
                            oname, threads, "" if threads == 1 else "s"), size))
                    if size == 64 and order == "lifo":
                        plots.append(("threads", "64 B LIFO", threads))
                    small("%d B" % size, "fixed%d" % size, size, size, order,
                          threads, ops, plots)
            for lo, hi, ops in ((8, 1024, 1 << 20), (8, 32768, 1 << 17)):
                tl = (1, 2, 4) if order == "random" else (1, 2)
                for threads in tl:
                    plots = []
                    if hi == 1024 and order == "random":
                        plots = [("threads", "8..1024 B random order", threads)]
                    small("%d..%d B" % (lo, hi), "r%d-%d" % (lo, hi), lo, hi,
                          order, threads, ops, plots)

    # producer/consumer with cross-thread frees
    pc_threads = (2,) if quick else (2, 4)
    for threads in pc_threads:
        cases.append(Case(
            "prodcons-t%d" % threads, S,
            "producer/consumer, 8..1024 B, %d pair%s (%d threads), cross-thread free"
            % (threads // 2, "" if threads == 2 else "s", threads),
            "prodcons", {"min": 8, "max": 1024, "ring": 1024,
                         "ops": (1 << 19) if quick else (1 << 21)},
            threads=threads, plot=[("threads", "producer/consumer", threads)]))

    P = "Program-like"
    t_list = (1,) if quick else (1, 2)
    for threads in t_list:
        cases.append(Case(
            "tree-t%d" % threads, P,
            "binary tree build/tear-down, depth 16, 32 B nodes, %d thread%s"
            % (threads, "" if threads == 1 else "s"),
            "tree", {"depth": 16, "size": 32, "iters": 12 if quick else 30},
            threads=threads, plot=[("threads", "binary tree", threads)]))
    for threads in t_list:
        cases.append(Case(
            "hashmap-t%d" % threads, P,
            "hash map of strings (100k keys), %d thread%s"
            % (threads, "" if threads == 1 else "s"),
            "hashmap", {"keys": 100000, "iters": 1 if quick else 4},
            threads=threads, plot=[("threads", "hash map", threads)]))
    l_list = (2,) if quick else (1, 2, 4)
    for threads in l_list:
        cases.append(Case(
            "larson-t%d" % threads, P,
            "Larson-style server, 16k shared slots, 16..1024 B, %d thread%s"
            % (threads, "" if threads == 1 else "s"),
            "larson", {"slots": 16384, "min": 16, "max": 1024,
                       "ops": (1 << 19) if quick else (1 << 21)},
            threads=threads, plot=[("threads", "Larson", threads)]))
    cases.append(Case(
        "realloc-t1", P,
        "realloc growth: 4 buffers grown by 1..512 B steps to 1 MiB, 1 thread",
        "realloc", {"bufs": 4, "step": 512, "max": 1 << 20,
                    "iters": 4 if quick else 16}))

    # The program-like shapes of issue #24.
    cases.append(Case(
        "bigchurn-t1", P,
        "large-block churn: 20 live blocks of 5-25 MiB, each step replaces a "
        "random one with a new block written in full, 1 thread",
        "bigchurn", {"slots": 20, "min": 5 << 20, "max": 25 << 20,
                     "ops": 300 if quick else 2000}))
    for threads in (1, 2):
        cases.append(Case(
            "localchurn-t%d" % threads, P,
            "random-size local churn: 1,024 live blocks per thread, sizes "
            "inverse-square on 4 B..32 KiB, %d thread%s"
            % (threads, "" if threads == 1 else "s"),
            "localchurn", {"slots": 1024, "min": 4, "max": 32768,
                           "ops": (1 << 22) if quick else (1 << 23)},
            threads=threads, plot=[("threads", "random-size local churn", threads)]))
    cases.append(Case(
        "server-t2", P,
        "server churn (Larson's shape): per thread 1,000 blocks of 10-100 B "
        "replaced at random, arrays handed on between rounds, 2 threads",
        "server", {"slots": 1000, "min": 10, "max": 100,
                   "iters": 100 if quick else 200, "ops": 50000}, threads=2))
    cases.append(Case(
        "peakfree-t2", P,
        "a peak freed while another thread allocates: thread 0 builds and "
        "frees 256 MiB in 1 MiB blocks, thread 1 allocates 64-512 KiB blocks",
        "peakfree", {"mib": 256, "size": 1 << 20, "min": 64 << 10,
                     "max": 512 << 10, "ring": 16, "settle_ms": 150,
                     "ops": 250000 if quick else 1000000}, threads=2))

    M = "Memory"
    mib = 128 if quick else 512
    settle = 250 if quick else 1000
    cases.append(Case(
        "memory", M,
        "%d MiB of 16..32768 B objects (log-uniform), all written, freed "
        "(random half, then the rest)" % mib,
        "memory", {"mib": mib, "min": 16, "max": 32768, "settle_ms": settle},
        plot=[("rss", "memory", 0)]))

    A = "Arenas"

    def bulk(cid, label, lo, hi, iters, plots=()):
        cases.append(Case(
            cid, A,
            "1M objects of %s into one arena, then free the arena (malloc rows: "
            "malloc each, free each); timed after one untimed round" % label,
            "bulk", {"objects": 1000000, "iters": iters, "warmup": 1,
                     "min": lo, "max": hi},
            arena=True, plot=list(plots)))

    # Small objects, where the allocation itself is most of the cost: the
    # arena's inline fast path against mh_malloc+mh_free and a mimalloc
    # heap (issue 24: at most 0.2x and 0.5x their time).
    bulk("arena-bulk16", "16 B", 16, 16, 2 if quick else 4)
    bulk("arena-bulk", "16..256 B", 16, 256, 1 if quick else 2, [("arena", "bulk", 0)])
    nreq = 20000 if quick else 100000
    cases.append(Case(
        "arena-requests", A,
        "%dk short-lived request arenas of 4..64 KiB (objects 16..256 B)"
        % (nreq // 1000),
        "requests", {"requests": nreq, "req_min": 4096, "req_max": 65536,
                     "min": 16, "max": 256},
        arena=True, plot=[("arena", "requests", 0)]))
    return cases


# ------------------------------------------------------------------- run

def parse_line(text):
    for line in text.splitlines():
        if line.startswith("workload="):
            d = {}
            for tok in line.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    d[k] = v
            return d
    return None


NUM_KEYS = ("seconds", "mops", "ops", "peak_rss_kb", "rss_after_kb", "rss_base_kb",
            "rss_half_kb", "rss_settled_kb", "minflt", "majflt")


def run_one(case, runner, timeout):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if runner.preload:
        env["LD_PRELOAD"] = runner.preload
    env.update(runner.env)
    argv = case.argv(runner)
    t0 = time.monotonic()
    rec = {"case": case.id, "alloc": runner.name, "argv": argv,
           "preload": runner.preload}
    if case.workload in runner.skip:
        rec.update(rc=0, stdout="", stderr="", wall=0.0, status="unavailable",
                   reason=runner.skip[case.workload])
        return rec
    try:
        p = subprocess.run(argv, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, text=True)
        rec["rc"] = p.returncode
        rec["stdout"] = p.stdout.strip()
        rec["stderr"] = p.stderr.strip()[-400:]
    except subprocess.TimeoutExpired:
        rec["rc"] = "timeout"
        rec["stdout"] = ""
        rec["stderr"] = "timed out after %ds" % timeout
    rec["wall"] = time.monotonic() - t0
    d = parse_line(rec["stdout"]) if rec["rc"] == 0 else None
    rec["status"] = "failed"
    if d is not None:
        rec["line"] = d
        if d.get("status") == "unavailable":
            rec["status"] = "unavailable"
            rec["reason"] = d.get("reason", "")
        elif d.get("status") == "ok":
            try:
                for k in NUM_KEYS:
                    if k in d:
                        rec[k] = float(d[k])
                if (math.isfinite(rec["seconds"]) and rec["seconds"] > 0
                        and math.isfinite(rec["mops"]) and rec["mops"] > 0
                        and rec.get("peak_rss_kb", 0) > 0
                        and rec.get("rss_after_kb", 0) > 0):
                    rec["status"] = "ok"
            except (KeyError, ValueError):
                pass
    if rec["status"] == "failed" and "reason" not in rec:
        err = rec["stderr"].splitlines()[-1] if rec["stderr"] else ""
        rc = rec["rc"]
        if isinstance(rc, int) and rc < 0:
            try:
                rc = "killed by %s" % signal.Signals(-rc).name
            except ValueError:
                rc = "killed by signal %d" % -rc
        elif rc != "timeout":
            rc = "exit %s" % rc
        rec["reason"] = ("%s%s" % (rc, (": " + err) if err else "")
                         if rec["rc"] != 0 else "no result line")
    return rec


def run_matrix(cases, runners_for, runs, raw, timeout):
    """Run every case on every runner, `runs` interleaved rounds."""
    load_start = loadavg()
    records = []
    t_start = time.monotonic()
    with open(raw, "w") as rawf:
        for rnd in range(runs):
            for ci, c in enumerate(cases):
                rs = [r for r in runners_for(c) if not r.check()]
                if not rs:
                    continue
                k = (rnd + ci) % len(rs)
                line = []
                for rn in rs[k:] + rs[:k]:
                    rec = run_one(c, rn, timeout)
                    rec["round"] = rnd
                    records.append(rec)
                    rawf.write(json.dumps(rec) + "\n")
                    rawf.flush()
                    line.append("%s=%s" % (rn.name.replace(" ", "_"),
                                           fmt_mops(rec.get("mops")) if rec["status"] == "ok"
                                           else rec["status"].upper()))
                print("[%4.0fs] run %d/%d %-28s %s" % (
                    time.monotonic() - t_start, rnd + 1, runs, c.id, " ".join(line)),
                    flush=True)
    return records, time.monotonic() - t_start, load_start


# ----------------------------------------------------------------- stats

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


PEER_KEYS = ("seconds", "minflt", "peak_rss_kb")


def peer_ratios(c, rn, ok, by, runners_for):
    """{peer: {key: median of per-round ratios mheap / peer}} for time,
    minor faults and peak RSS, each peer measured in the same round."""
    out = {}
    for peer in runners_for(c):
        if peer.name.startswith("mheap"):
            continue
        theirs = {r["round"]: r for r in by.get((c.id, peer.name), [])
                  if r["status"] == "ok"}
        d = {}
        for k in PEER_KEYS:
            d[k] = med([r[k] / theirs[r["round"]][k] for r in ok
                        if r["round"] in theirs and r.get(k)
                        and theirs[r["round"]].get(k)])
        out[peer.name] = d
    return out


def summarize(cases, runners_for, records):
    """stats[case_id][alloc] = dict of medians, ratios, status."""
    by = {}
    for r in records:
        by.setdefault((r["case"], r["alloc"]), []).append(r)
    stats = {}
    for c in cases:
        refs = {"mimalloc": "mimalloc heap" if c.arena else "mimalloc",
                "glibc": "glibc malloc" if c.arena else "glibc"}
        if c.arena:
            refs["mheap_malloc"] = "mheap malloc"
        if not c.arena:
            refs["mheap"] = "mheap"
            refs["scudo"] = "scudo"
        cs = {}
        for rn in runners_for(c):
            recs = by.get((c.id, rn.name), [])
            ok = [r for r in recs if r["status"] == "ok"]
            st = {"runs": len(recs), "ok": len(ok), "missing": rn.check()}
            fails = [r for r in recs if r["status"] == "failed"]
            st["failed"] = fails[0]["reason"] if fails else None
            if recs and not ok:
                unav = [r for r in recs if r["status"] == "unavailable"]
                st["unavailable"] = unav[0]["reason"] if unav else None
            if ok:
                secs = [r["seconds"] for r in ok]
                st["seconds"] = med(secs)
                st["ops"] = med([r["ops"] for r in ok])
                st["mops"] = st["ops"] / st["seconds"] / 1e6
                # median absolute deviation, relative: robust to one outlier
                st["spread"] = med([abs(x - st["seconds"]) for x in secs]) / st["seconds"]
                for k in ("peak_rss_kb", "rss_after_kb", "rss_base_kb",
                          "rss_half_kb", "rss_settled_kb", "minflt"):
                    st[k] = med([r.get(k) for r in ok])
                st["fail_runs"] = len(recs) - len(ok)
                for rk, rname in refs.items():
                    ref = {r["round"]: r["seconds"]
                           for r in by.get((c.id, rname), []) if r["status"] == "ok"}
                    rat = [r["seconds"] / ref[r["round"]] for r in ok
                           if r["round"] in ref]
                    st["vs_" + rk] = med(rat)
                if rn.name == "mheap" and not c.arena:
                    st["vs_peers"] = peer_ratios(c, rn, ok, by, runners_for)
                # peak RSS against mheap's in the same round (the secure mode)
                ref = {r["round"]: r["peak_rss_kb"]
                       for r in by.get((c.id, "mheap"), []) if r["status"] == "ok"}
                rat = [r["peak_rss_kb"] / ref[r["round"]] for r in ok
                       if r["round"] in ref and not c.arena]
                st["rss_vs_mheap"] = med(rat) if rat else None
            cs[rn.name] = st
        stats[c.id] = cs
    return stats


# ---------------------------------------------------------------- render

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
             "allocators (round 1 of every allocator, then round 2, ...; the order "
             "rotates each round). The whole matrix took %.0f s." % (
                 meta["runs"], meta["elapsed"]))
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


def gp_quote(s):
    return '"' + s.replace('"', "'") + '"'


def render_plots(cases, runners_for, stats, datadir, outdir):
    """Write .dat files and one gnuplot script; return [(png, title)]."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("bench: gnuplot not found (apt-get install -y gnuplot-nox); no plots",
              file=sys.stderr)
        return []
    panels = {}  # plot -> panel -> {x: {alloc: value}}
    for c in cases:
        for plot, panel, x in c.plot:
            d = panels.setdefault(plot, {}).setdefault(panel, {}).setdefault(x, {})
            for rn in runners_for(c):
                st = stats[c.id][rn.name]
                if "seconds" in st:
                    d[rn.name] = st
    allocs = []
    for c in cases:
        if not c.arena:
            allocs = [r.name for r in runners_for(c)]
            break
    colours = {"glibc": "#808080", "jemalloc": "#009e73", "tcmalloc": "#56b4e9",
               "mimalloc": "#e69f00", "mimalloc-linked": "#f0c060",
               "scudo": "#cc79a7",
               "mheap": "#d00000", "mheap-linked": "#700000"}
    script = ['set terminal pngcairo size 1400,900 font "DejaVu Sans,10"']
    for i, a in enumerate(allocs):
        script.append('set linetype %d lc rgb "%s" lw %d pt 7 ps 1.2' % (
            i + 1, colours.get(a, "#000000"), 3 if "mheap" in a else 2))
    script += [
              'set datafile missing "NaN"', 'set key outside right top',
              'set grid', 'set style data linespoints',
              'set offsets graph 0.04, graph 0.04, 0, 0']
    made = []

    def line_panels(plot, xlabel, logx, title, fname):
        pp = [(p, v) for p, v in panels.get(plot, {}).items() if len(v) >= 2]
        if not pp:
            return
        png = os.path.join(outdir, fname)
        script.append("set output %s" % gp_quote(png))
        cols = 2 if len(pp) > 1 else 1
        rows = (len(pp) + cols - 1) // cols
        script.append("set multiplot layout %d,%d title %s" % (rows, cols, gp_quote(title)))
        script.append("set xlabel %s" % gp_quote(xlabel))
        script.append('set ylabel "Mops/s (all threads)"')
        script.append("set yrange [0:*]")
        script.append("set logscale x 2" if logx else "unset logscale x")
        for i, (panel, xs) in enumerate(pp):
            dat = os.path.join(datadir, "%s-%d.dat" % (plot, i))
            with open(dat, "w") as f:
                f.write("x " + " ".join('"%s"' % a for a in allocs) + "\n")
                for x in sorted(xs):
                    vals = [xs[x][a]["mops"] if a in xs[x] else float("nan") for a in allocs]
                    f.write("%g " % x + " ".join("%.5g" % v if v == v else "NaN"
                                                  for v in vals) + "\n")
            xt = " ".join(str(x) for x in sorted(xs))
            script.append("set xtics (%s)" % ", ".join('"%s" %s' % (x, x) for x in xt.split()))
            script.append("set title %s" % gp_quote(panel))
            script.append("plot for [i=2:%d] %s using 1:i title columnheader(i) lt (i-1)"
                          % (len(allocs) + 1, gp_quote(dat)))
        script.append("unset multiplot")
        script.append("unset logscale x")
        script.append("set xtics autofreq")
        made.append((fname, title))

    line_panels("threads", "threads", False,
                "Throughput against thread count (median of runs)", "threads.png")
    line_panels("sizes", "object size (bytes)", True,
                "Throughput against object size (median of runs)", "sizes.png")

    # RSS bars per allocator (memory workload)
    mem = panels.get("rss", {}).get("memory", {}).get(0, {})
    if mem:
        dat = os.path.join(datadir, "rss.dat")
        with open(dat, "w") as f:
            f.write('alloc "peak RSS" "RSS, half freed" "RSS after free" "RSS after settle"\n')
            for a in allocs:
                st = mem.get(a)
                if st is None:
                    f.write('"%s (n/a)" NaN NaN NaN NaN\n' % a)
                    continue
                f.write('"%s" %s\n' % (a, " ".join(
                    "%.1f" % (st[k] / 1024.0) if st.get(k) is not None else "NaN"
                    for k in ("peak_rss_kb", "rss_half_kb", "rss_after_kb",
                              "rss_settled_kb"))))
        png = os.path.join(outdir, "rss.png")
        c = [c for c in cases if c.workload == "memory"][0]
        script += ["set linetype %d lc rgb '%s'" % (i + 1, col) for i, col in
                   enumerate(("#5060d0", "#40a040", "#e0a000", "#d04040"))]
        script += [
            "set output %s" % gp_quote(png),
            "set terminal pngcairo size 1200,700",
            "set title %s" % gp_quote("RSS per allocator: " + c.title),
            "set offsets 0, 0, 0, 0",
            "set style data histograms", "set style histogram clustered gap 1",
            "set style fill solid 0.8 border -1", "set boxwidth 0.9",
            'set ylabel "MiB"', "unset xlabel", "set yrange [0:*]",
            "set xtics rotate by -20",
            "plot for [i=2:5] %s using i:xtic(1) title columnheader(i)" % gp_quote(dat),
            "set xtics norotate", "set style data linespoints",
        ]
        made.append(("rss.png", "RSS per allocator"))

    # arena bars: median time per variant, both workloads
    ar = panels.get("arena", {})
    if ar:
        dat = os.path.join(datadir, "arena.dat")
        variants = []
        for c in cases:
            if c.arena:
                variants = [r.name for r in runners_for(c)]
                break
        with open(dat, "w") as f:
            f.write('variant ' + " ".join('"%s"' % p for p in ar) + "\n")
            for v in variants:
                vals = []
                for p in ar:
                    st = ar[p].get(0, {}).get(v)
                    vals.append("%.3f" % (st["seconds"] * 1e3) if st else "NaN")
                label = v if any(x != "NaN" for x in vals) else v + " (n/a)"
                f.write('"%s" %s\n' % (label, " ".join(vals)))
        png = os.path.join(outdir, "arena.png")
        script += [
            "set output %s" % gp_quote(png),
            "set terminal pngcairo size 1200,700",
            'set title "Arenas vs malloc/free: median time (lower is better; missing = not available)"',
            "set style data histograms", "set style histogram clustered gap 1",
            "set style fill solid 0.8 border -1", "set boxwidth 0.9",
            'set ylabel "ms"', "set yrange [0:*]", "set xtics rotate by -20",
            "plot for [i=2:%d] %s using i:xtic(1) title columnheader(i)"
            % (len(ar) + 1, gp_quote(dat)),
        ]
        made.append(("arena.png", "Arenas vs malloc/free"))

    gp = os.path.join(datadir, "plots.gp")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    p = subprocess.run([gnuplot, gp], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if p.returncode != 0:
        print("bench: gnuplot failed:\n" + p.stderr, file=sys.stderr)
        return []
    return made


# ------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("quick", "full", "smoke"), default="quick")
    ap.add_argument("--top", default=os.path.abspath(os.path.join(
        os.path.dirname(__file__), "..")))
    ap.add_argument("--build", default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--only", default=None,
                    help="comma-separated substrings of case ids to run")
    ap.add_argument("--results", default=None, help="directory for latest.md and PNGs")
    ap.add_argument("--render-only", action="store_true",
                    help="re-render the report from BUILD/bench/MODE/raw.jsonl, run nothing")
    ap.add_argument("--allow-missing-mheap", action="store_true",
                    help="smoke: do not fail when libmheap is not built")
    args = ap.parse_args()

    top = os.path.abspath(args.top)
    build = os.path.abspath(args.build or os.path.join(top, "build"))
    out = os.path.join(build, "bench")
    runs = args.runs or {"quick": 5, "full": 7, "smoke": 1}[args.mode]
    datadir = os.path.join(out, args.mode)
    results = args.results or (datadir if args.mode == "smoke"
                               else os.path.join(top, "bench", "results"))
    os.makedirs(datadir, exist_ok=True)
    os.makedirs(results, exist_ok=True)
    timeout = {"quick": 60, "smoke": 60, "full": 180}[args.mode]

    mi_linked = args.mode == "full"
    # Preload a snapshot of libmheap.so taken now: the library may be rebuilt
    # while the matrix runs, and every run of one report must use one build.
    # (alloc_bench_mh and arena_bench_mh link libmheap.a statically.)
    so = os.path.join(build, "libmheap.so")
    snap = os.path.join(datadir, "libmheap.so")
    run_meta = os.path.join(datadir, "run-meta.json")
    if args.render_only:
        so = snap if os.path.exists(snap) else None
    elif os.path.exists(so):
        shutil.copy2(so, snap)
        so = snap
    else:
        so = None
    ar = alloc_runners(out, build, mi_linked, so)
    arr = arena_runners(out, build)
    # The program-like cases run mheap's secure mode too (MHEAP_SECURE=1,
    # issue #26), measured against mheap in the same round.
    ar_secure = ar + [Runner("mheap-secure", os.path.join(out, "alloc_bench"), so,
                             missing=None if so else "build/libmheap.so missing",
                             env={"MHEAP_SECURE": "1"})]

    def runners_for(c):
        if c.arena:
            return arr
        return ar_secure if c.section == "Program-like" else ar

    cases = build_cases(args.mode)
    if args.only:
        keys = args.only.split(",")
        cases = [c for c in cases if any(k in c.id for k in keys)]

    if so is None:
        print("bench: *** %s is missing: the mheap rows will say 'not available'. "
              "Build it with `make lib` in %s. ***" % (os.path.join(build, "libmheap.so"),
                                                       top), file=sys.stderr)
    for rn in ar + arr:
        why = rn.check()
        if why:
            print("bench: %-20s not available: %s" % (rn.name, why), file=sys.stderr)

    raw = os.path.join(datadir, "raw.jsonl")
    if args.render_only:
        with open(raw) as f:
            records = [json.loads(line) for line in f if line.strip()]
        with open(run_meta) as f:
            rm = json.load(f)
        runs, elapsed = rm["runs"], rm["elapsed"]
        load_start, load_end, date = rm["load_start"], rm["load_end"], rm["date"]
        mheap_desc = rm.get("mheap", "?")
    else:
        mheap_desc = describe_mheap(top, build, so)
        records, elapsed, load_start = run_matrix(cases, runners_for, runs, raw,
                                                  timeout)
        load_end = loadavg()
        date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        with open(run_meta, "w") as f:
            json.dump({"runs": runs, "elapsed": elapsed, "load_start": load_start,
                       "load_end": load_end, "date": date, "mheap": mheap_desc}, f)

    stats = summarize(cases, runners_for, records)
    with open(os.path.join(datadir, "summary.json"), "w") as f:
        json.dump(stats, f, indent=1)

    tc_so = ar[2].preload
    meta = {
        "mode": args.mode, "runs": runs, "elapsed": elapsed,
        "date": date,
        "uname": sh("uname -srm"), "cpu": cpu_model(), "ncpu": os.cpu_count() or 0,
        "glibc": platform.libc_ver()[1] or "?",
        "jemalloc": pkg_version("libjemalloc2"),
        "tcmalloc": pkg_version("libtcmalloc-minimal4" if "minimal" in tc_so
                                else "libgoogle-perftools4"),
        "tcmalloc_so": tc_so,
        "mimalloc": pkg_version("libmimalloc2.0"), "mheap": mheap_desc,
        "scudo": pkg_version("libclang-rt-14-dev"),
        "mi_linked": mi_linked, "load_start": load_start, "load_end": load_end,
    }
    plots = render_plots(cases, runners_for, stats, datadir, results)
    meta["plots"] = plots
    headline = [
        ("64 B LIFO, 1 thr", "small-fixed64-lifo-t1", "mops"),
        ("64 B LIFO, 2 thr", "small-fixed64-lifo-t2", "mops"),
        ("8..1024 B random, 1 thr", "small-r8-1024-random-t1", "mops"),
        ("8..1024 B random, 2 thr", "small-r8-1024-random-t2", "mops"),
        ("memory: peak RSS", "memory", "peak_rss_kb"),
        ("RSS after free", "memory", "rss_after_kb"),
        ("RSS after settle", "memory", "rss_settled_kb"),
    ]
    md = os.path.join(results, "latest.md")
    render_md(md, meta, cases, runners_for, stats, headline)
    print("bench: %d runs in %.0f s; report %s; raw %s" % (
        len(records), elapsed, md, raw))
    for p, _ in plots:
        print("bench: plot %s" % os.path.join(results, p))

    # Problems: failures always reported; smoke turns them into an exit code.
    problems = []
    missing = {}
    for c in cases:
        for rn in runners_for(c):
            st = stats[c.id][rn.name]
            if st.get("missing"):
                missing[rn.name] = st["missing"]
                continue
            if st.get("unavailable"):
                print("bench: note: %s / %s: not available (%s)" % (
                    c.id, rn.name, st["unavailable"]), file=sys.stderr)
                continue
            if st["ok"] < st["runs"] or st["runs"] == 0:
                problems.append("%s / %s: %d of %d runs produced no number%s" % (
                    c.id, rn.name, st["runs"] - st["ok"], st["runs"],
                    (" (" + st["failed"] + ")") if st.get("failed") else ""))
    for name, why in missing.items():
        if "mheap" in name and args.allow_missing_mheap:
            print("bench: note: %s not available: %s" % (name, why), file=sys.stderr)
        else:
            problems.append("%s: not available: %s" % (name, why))
    for p in problems:
        print("bench: PROBLEM: " + p, file=sys.stderr)
    if args.mode == "smoke":
        if problems:
            print("bench: smoke FAILED: %d problem(s)" % len(problems), file=sys.stderr)
            return 1
        print("bench: smoke passed: every benchmark ran and produced numbers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
