"""Medians, the side-by-side table and the goal check (pure functions over result dicts).

Owns: metric names/units, median aggregation, the markdown table, tcpmap-vs-peers goals.
Must not: run anything. `python3 bench/report.py bench/out/results.json` re-prints a saved run.
"""

import json
import statistics
import sys

# key, label, higher is better, ratio vs direct shown
METRICS = [
    ("bulk_gbps", "bulk, 1 stream (Gbit/s)", True, True),
    ("bulk_cpu_s_per_gb", "proxy CPU per GB, plain (s/GB)", False, False),
    ("bulk8_gbps", "bulk, 8 streams (Gbit/s)", True, True),
    ("bulk8_cpu_s_per_gb", "proxy CPU per GB, 8 streams (s/GB)", False, False),
    ("short_cps", "short connections/s", True, True),
    ("short_cpu_us_per_conn", "proxy CPU per short connection (µs)", False, False),
    ("tls_hs_per_s", "TLS full handshakes/s (+1 GET)", True, True),
    ("tls_hs_cpu_us", "proxy CPU per full handshake (µs)", False, False),
    ("tls_res_per_s", "TLS resumed handshakes/s (+1 GET)", True, True),
    ("tls_res_cpu_us", "proxy CPU per resumed handshake (µs)", False, False),
    ("tls_res_rate", "handshakes that resumed (%)", True, False),
    ("tls_bulk_gbps", "TLS bulk, 1 connection (Gbit/s)", True, True),
    ("tls_bulk_cpu_s_per_gb", "proxy CPU per GB, TLS (s/GB)", False, False),
    ("tls_pull_gbps", "TLS download, 1 connection (Gbit/s)", True, True),
    ("tls_pull_cpu_s_per_gb", "proxy CPU per GB, TLS download (s/GB)", False, False),
    ("idle_kb_per_conn", "PSS per idle connection (KiB)", False, False),
    ("base_pss_mb", "PSS at start (MiB)", False, False),
]
PEERS = ("haproxy", "nginx", "envoy", "traefik")


def fmt(x):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return str(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if abs(x) < 1 else f"{x:.2f}"


def medians(rows):
    """Per-metric median over repetitions (None values dropped)."""
    keys = {k for r in rows for k in r}
    out = {}
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals and all(isinstance(v, (int, float)) for v in vals):
            out[k] = statistics.median(vals)
        elif vals:
            out[k] = vals[0]
    return out


def table(med, targets):
    """Markdown table: one row per metric, one column per target; rates also as ×direct."""
    cols = list(targets)
    if "tcpmap" not in cols:
        cols.insert(1, "tcpmap")
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    direct = med.get("direct", {})
    for key, label, _, ratio in METRICS:
        cells = []
        for t in cols:
            if t not in med:
                cells.append("pending" if t == "tcpmap" else "–")
                continue
            val = med[t].get(key)
            cell = fmt(val)
            if ratio and val is not None and direct.get(key) and t != "direct":
                cell += f" ({val / direct[key]:.2f}×)"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# A peer's resumed-handshake numbers count only when its clients did resume (else they are full
# handshakes under another name).
RESUMED_MIN_RATE = 90.0


def _counts(med, peer, key):
    if key.startswith("tls_res_") and key != "tls_res_rate":
        return (med[peer].get("tls_res_rate") or 0.0) >= RESUMED_MIN_RATE
    return True


def _best(med, key, higher):
    vals = [(med[p][key], p) for p in PEERS
            if p in med and med[p].get(key) is not None and _counts(med, p, key)]
    if not vals:
        return None, None
    return max(vals) if higher else min(vals)


def _resumed_goals(rel, t):
    """Issue 23's resumed-handshake goals (peers counted only when ≥ RESUMED_MIN_RATE % resumed)."""
    rel("tls_res_per_s", True, 1.0, "TLS resumed handshakes/s ≥ best peer (that resumed)")
    rel("tls_res_cpu_us", False, 0.8, "CPU per resumed TLS handshake ≤ 0.8× best peer (that resumed)")
    rate = t.get("tls_res_rate")
    return [] if rate is None or rate >= RESUMED_MIN_RATE else [
        f"- tcpmap resumed only {rate:.0f} % of its handshakes (< {RESUMED_MIN_RATE:.0f} %)"]


def goals(med):
    """The issue's goals for tcpmap, each marked met / NOT met / pending."""
    t = med.get("tcpmap", {})
    lines = ["Goals (tcpmap vs best peer):"]

    def rel(key, higher, factor, text):
        best, who = _best(med, key, higher)
        mine = t.get(key)
        if mine is None or best is None:
            lines.append(f"- {text}: pending")
            return
        ratio = mine / best
        ok = ratio >= factor if higher else ratio <= factor
        lines.append(f"- {text}: tcpmap {fmt(mine)} vs {who} {fmt(best)} = {ratio:.2f}× → "
                     f"{'met' if ok else 'NOT met'}")

    def absolute(key, limit, text):
        mine = t.get(key)
        if mine is None:
            lines.append(f"- {text}: pending")
            return
        lines.append(f"- {text}: tcpmap {fmt(mine)} → {'met' if mine <= limit else 'NOT met'}")

    # Issue 12's goals (all proxies with the same worker count), short connections as issue 23
    # restated them (it had 1.2× and 0.8×).
    rel("bulk_gbps", True, 1.15, "bulk ≥ 1.15× best peer")
    rel("bulk_cpu_s_per_gb", False, 0.8, "CPU per GB ≤ 0.8× best peer")
    rel("short_cps", True, 1.05, "short connections/s ≥ 1.05× best peer")
    rel("short_cpu_us_per_conn", False, 0.9, "CPU per short connection ≤ 0.9× best peer")
    rel("tls_hs_per_s", True, 1.0, "TLS handshakes/s ≥ best peer")
    rel("tls_hs_cpu_us", False, 0.8, "CPU per full TLS handshake ≤ 0.8× best peer")
    rel("tls_bulk_gbps", True, 1.0, "TLS bulk ≥ best peer")
    lines += _resumed_goals(rel, t)
    absolute("idle_kb_per_conn", 2.5, "≤ 2.5 KiB per idle plaintext connection")
    rel("bulk8_gbps", True, 1.0, "bulk, 8 streams ≥ best peer")
    lines += _floor_lines(med)
    return "\n".join(lines)


# The plain rows a floor target (bench/floor, the smallest epoll relay) runs.
FLOOR_KEYS = ("bulk_gbps", "bulk_cpu_s_per_gb", "bulk8_gbps", "bulk8_cpu_s_per_gb", "short_cps",
              "short_cpu_us_per_conn")


def _floor_lines(med):
    """tcpmap and the best peer against the physical-limit relay, where it ran."""
    lines = []
    for floor in ("floor", "floor-splice"):
        f = med.get(floor)
        if not f:
            continue
        for key, label, higher, _ in METRICS:
            if key not in FLOOR_KEYS or not f.get(key):
                continue
            best, who = _best(med, key, higher)
            cells = [f"tcpmap {fmt(med.get('tcpmap', {}).get(key))}"]
            if best is not None:
                cells.append(f"{who} {fmt(best)}")
            ratios = [f"{n} {v / f[key]:.2f}×" for n, v in
                      (("tcpmap", med.get("tcpmap", {}).get(key)), (who, best)) if v is not None]
            lines.append(f"- {label}, against {floor} {fmt(f[key])}: " + ", ".join(cells)
                         + (f" ({', '.join(ratios)} of the floor)" if ratios else ""))
    return ["", "Against the physical-limit relay:"] + lines if lines else []


if __name__ == "__main__":
    data = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "bench/out/results.json"))
    med = {n: medians(rows) for n, rows in data["results"].items()}
    meta = data["meta"]
    if "workers" in meta:
        print(f"workers per proxy: {meta['workers']} ("
              + ", ".join(f"{n}: {v}" for n, v in meta.get("settings", {}).items()) + ")")
    print(table(med, meta["targets"]))
    print()
    print(goals(med))
