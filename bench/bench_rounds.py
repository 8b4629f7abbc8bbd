# SPDX-License-Identifier: MIT
"""Running the matrix: every case on every runner, round after round (the
runners of a case in a seeded random order drawn anew for every round),
each run's key=value line parsed into a record in raw.jsonl; then the
medians and per-round ratios of each (case, runner)."""

import json
import math
import os
import random
import signal
import statistics
import subprocess
import time

from bench_report import fmt_mops, loadavg


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


def round_order(seed, rnd, case_id, runners):
    """The order of a case's runners in round `rnd`: a random permutation
    drawn from (seed, round, case id) alone, so the same seed gives the same
    orders whatever else runs (--only).

    Why random and not a rotation: a process's first milliseconds depend on
    the physical pages it gets, hot from the process that ran just before or
    fresh (docs/arenas-log.md, "The 16 B bulk arena on the Intel host"). A
    rotation keeps the cyclic order, so every row has the same predecessor
    in every round (the arena row always after tcmalloc's, noscan always
    after the arena's and on its freed huge pages). A fresh permutation per
    round gives every row each of the case's other rows as predecessor with
    the same chance, so none is favoured on average; the runners of a case
    stay together so that a per-round ratio compares runs a few seconds
    apart."""
    order = list(runners)
    random.Random("%d/%d/%s" % (seed, rnd, case_id)).shuffle(order)
    return order


def run_matrix(cases, runners_for, runs, raw, timeout, seed):
    """Run every case on every runner, `runs` interleaved rounds. Each record
    keeps its place in the round (`pos`) and the run before it (`prev`, "case
    / runner", None for the first run of the matrix)."""
    load_start = loadavg()
    records = []
    t_start = time.monotonic()
    prev = None
    with open(raw, "w") as rawf:
        for rnd in range(runs):
            for c in cases:
                rs = [r for r in runners_for(c) if not r.check()]
                if not rs:
                    continue
                line = []
                for pos, rn in enumerate(round_order(seed, rnd, c.id, rs)):
                    rec = run_one(c, rn, timeout)
                    rec["round"] = rnd
                    rec["pos"] = pos
                    rec["prev"] = prev
                    if rec["status"] != "unavailable":
                        prev = "%s / %s" % (c.id, rn.name)
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
