# SPDX-License-Identifier: MIT
"""The plots (results/*.png): gnuplot data and script written to the data
directory from the summary, gnuplot run on them."""

import os
import shutil
import subprocess
import sys


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
