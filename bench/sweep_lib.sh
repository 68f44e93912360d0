# Sourced by bench/sweep_10m.sh and bench/pg_sweep.sh.

# quantiles: integers on stdin (sorted) -> "p50 p99 max count" (-1 when none)
quantiles() {
  python3 -c '
import sys
v = [int(x) for x in sys.stdin if x.strip()]
q = lambda p: v[min(len(v) - 1, int(p * len(v)))] if v else -1
print(q(0.5), q(0.99), v[-1] if v else -1, len(v))'
}

# sweep_medians FILE: one line per repetition, "sweep_ms raw_ms peak_rss_kb
# lateness_p99_during lateness_p99_before" -> the medians
sweep_medians() {
  python3 - "$1" <<'PY'
import sys, statistics as st
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
m = lambda i: st.median(r[i] for r in rows)
ratio = st.median(r[0] / r[1] for r in rows)
print(f"median of {len(rows)}: sweep {m(0):.0f} ms vs raw DELETE {m(1):.0f} ms (median of the ratios {ratio:.2f}x); "
      f"daemon peak RSS {m(2) / 1024:.1f} MB; lateness p99 during the sweep {m(3):.0f} ms (before: {m(4):.0f} ms)")
PY
}
