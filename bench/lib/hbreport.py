#!/usr/bin/env python3
"""bench/startup's table and chart data, from hellobench.py's runs.

    hbreport.py TSV RATE RTT REPS COMMIT OUT.md OUT.dat

Per image and mode the median of the runs: seconds to ready, MiB sent by
the registry proxy, and for anole the data bytes fetched and the distinct
bytes the kernel read of them. A run that never got ready fails the report.
"""
import statistics
import sys

tsv, rate, rtt, reps, commit, out_md, out_dat = sys.argv[1:8]
rows = {}
order = []
with open(tsv) as f:
    next(f)
    for line in f:
        image, mode, _rep, ms, nbytes, _req, fetched, read = line.rstrip("\n").split("\t")
        if image not in order:
            order.append(image)
        if ms == "-":
            sys.exit("hbreport: %s (%s) did not get ready in a run" % (image, mode))
        rows.setdefault((image, mode), []).append(
            (float(ms) / 1000, int(nbytes), None if fetched == "-" else int(fetched),
             None if read == "-" else int(read)))


def med(image, mode, k):
    v = [r[k] for r in rows.get((image, mode), []) if r[k] is not None]
    return statistics.median(v) if v else None


MiB = 1048576.0
lines = [
    "Commit %s; %s runs each (median); loopback shaped to %s with tc tbf, %s ms added per "
    "request; cold cache each run. Time: until ready. MiB: what the registry sent "
    "(manifests, configs, metadata, data). fetched/read: data bytes fetched over the "
    "distinct bytes of the data blobs the kernel read." % (commit, reps, rate, rtt),
    "",
    "| image | (a) pull+unpack+run | (b) anole run | (c) anole run, recorded prefetch "
    "| (d) ctr-pull + ctr run, anole snapshotter "
    "| b/a | c/b | d/b | d/a | (b) fetched/read MiB | (c) fetched/read MiB |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
dat = ["# image a_s b_s c_s d_s"]
worst_ba = worst_cb = worst_fr = worst_db = worst_da = 0.0


def ratio(x, y, fmt):
    return (None, "-") if not x or not y else (x / y, fmt % (x / y))


for im in order:
    a, b, c, d = (med(im, m, 0) for m in "abcd")
    ab, bb, cb, db = (med(im, m, 1) for m in "abcd")
    cells = [im]
    for t, n in ((a, ab), (b, bb), (c, cb), (d, db)):
        cells.append("-" if t is None else "%.2f s, %.1f MiB" % (t, n / MiB))
    ba, text = ratio(b, a, "%.3f")
    cells.append(text)
    cbr, text = ratio(c, b, "%.2f")
    cells.append(text)
    dbr, text = ratio(d, b, "%.2f")
    cells.append(text)
    dar, text = ratio(d, a, "%.3f")
    cells.append(text)
    worst_db = max(worst_db, dbr or 0)
    worst_da = max(worst_da, dar or 0)
    for m in "bc":
        fe, rd = med(im, m, 2), med(im, m, 3)
        if fe is None or not rd:
            cells.append("-")
        else:
            cells.append("%.1f / %.1f = %.2fx" % (fe / MiB, rd / MiB, fe / rd))
            worst_fr = max(worst_fr, fe / rd)
    worst_ba = max(worst_ba, ba or 0)
    worst_cb = max(worst_cb, cbr or 0)
    lines.append("| " + " | ".join(cells) + " |")
    dat.append("%s %s %s %s %s" % (im, *("%.3f" % x if x is not None else "NaN"
                                         for x in (a, b, c, d))))
lines += ["", "Worst b/a %.3f (goal <= 0.2); worst c/b %.2f (goal <= 1); worst fetched/read "
          "%.2fx (goal <= 1.5)." % (worst_ba, worst_cb, worst_fr)]
if worst_db:
    lines[-1] += " Worst d/b %.2f (goal <= 1.5); worst d/a %.3f (goal <= 0.25)." % (
        worst_db, worst_da)
with open(out_md, "w") as f:
    f.write("\n".join(lines) + "\n")
with open(out_dat, "w") as f:
    f.write("\n".join(dat) + "\n")
