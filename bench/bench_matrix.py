# SPDX-License-Identifier: MIT
"""The benchmark matrix: the allocators (runners: a driver binary, an optional
LD_PRELOAD, what it needs to run) and the cases (a workload with its
arguments, the report section and plots it belongs to), per mode."""

import os

LIBDIR = "/usr/lib/x86_64-linux-gnu"
# Scudo, LLVM's hardened allocator, from Debian's libclang-rt-14-dev.
SCUDO_SO = "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.scudo_standalone-x86_64.so"


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
