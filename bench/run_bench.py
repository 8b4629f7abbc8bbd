#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run the mheap benchmark matrix and render the results.

    run_bench.py --mode quick|full|smoke --top TOP --build BUILD [--runs N] [--seed S]

Every (workload, allocator) pair runs --runs times. Runs are interleaved:
round 1 runs every case on every allocator, then round 2, and so on; inside a
round a case's allocators run in a random order drawn anew for every round
from --seed (a fresh seed unless given; the report prints it, and the same
seed gives the same orders), so that no allocator always follows the same
run.
Each figure is the median over the rounds; ratios are the median of the
per-round ratios (time of the allocator / time of the reference measured in
the same round).

Raw lines go to BUILD/bench/MODE/raw.jsonl; the markdown report and the
gnuplot PNGs go to bench/results/ (quick, full) or BUILD/bench/smoke/ (smoke).
Standard library only.

The layout: bench_matrix.py (runners and cases), bench_rounds.py (the
interleaved runs and their medians), bench_report.py (the markdown),
bench_plots.py (gnuplot); this file the command line.
"""

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import sys

from bench_matrix import Runner, alloc_runners, arena_runners, build_cases
from bench_plots import render_plots
from bench_report import cpu_model, describe_mheap, loadavg, pkg_version, render_md, sh
from bench_rounds import run_matrix, summarize


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", choices=("quick", "full", "smoke"), default="quick")
    ap.add_argument("--top", default=os.path.abspath(os.path.join(
        os.path.dirname(__file__), "..")))
    ap.add_argument("--build", default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of the per-round run orders (default: a fresh one)")
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
        seed = rm.get("seed")
        load_start, load_end, date = rm["load_start"], rm["load_end"], rm["date"]
        mheap_desc = rm.get("mheap", "?")
    else:
        mheap_desc = describe_mheap(top, build, so)
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
        print("bench: run order seed %d (--seed %d / SEED=%d repeats the orders)" % (
            seed, seed, seed), flush=True)
        records, elapsed, load_start = run_matrix(cases, runners_for, runs, raw,
                                                  timeout, seed)
        load_end = loadavg()
        date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        with open(run_meta, "w") as f:
            json.dump({"runs": runs, "elapsed": elapsed, "load_start": load_start,
                       "load_end": load_end, "date": date, "mheap": mheap_desc,
                       "seed": seed}, f)

    stats = summarize(cases, runners_for, records)
    with open(os.path.join(datadir, "summary.json"), "w") as f:
        json.dump(stats, f, indent=1)

    tc_so = ar[2].preload
    meta = {
        "mode": args.mode, "runs": runs, "elapsed": elapsed, "seed": seed,
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
