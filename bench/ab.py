#!/usr/bin/env python3
"""Alternated A/B runs of tcpmap builds or settings: medians of each metric per variant.

    python3 bench/ab.py --variant old=/path/to/tcpmap --variant new=target/release/tcpmap \\
        [--variant nosplice=target/release/tcpmap,TCPMAP_NO_SPLICE=1] [--variant floor] \\
        [--rounds 5] [--seconds 3] [--workers 2] [--scenarios tls_hs,tls_res]

Each round runs `bench/bench.py --only tcpmap --reps 1` once per variant, in turn, the order
rotated by one each round (so load from other work on the machine falls on every variant alike), with `BENCH_TCPMAP` set to the
variant's binary and its `K=V` settings in the proxy's environment (a variant named by
a bench target alone, e.g. `floor`, `floor-splice`, `haproxy` or `envoy`, runs that target as
bench.py finds it, in the same rounds; `NAME=target:TARGET,K=V` the same with settings, e.g.
`--variant floor1m=target:floor-splice,BENCH_FLOOR_ARGS=--pipe=1048576`); then it prints, per metric,
each variant's median over the rounds (n in brackets) and its ratio to the first variant.
CPU per operation is the row to read on a shared machine; rates move with other load.

Owns: the alternation and the summary. Must not: run anything but bench/bench.py.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report  # noqa: E402


def parse_variant(text):
    """(name, tcpmap binary or `target:NAME` for another bench target, extra environment)."""
    if "=" not in text:
        return text, f"target:{text}", {}
    name, _, rest = text.partition("=")
    parts = rest.split(",")
    env = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    binary = parts[0] if parts[0].startswith("target:") else os.path.abspath(parts[0])
    return name, binary, env


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", required=True, help="name=binary[,K=V...], a target name, or name=target:TARGET[,K=V...]")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scenarios", default="tls_hs,tls_res")
    ap.add_argument("--idle-count", type=int, default=3000)
    args = ap.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    out = os.path.join(HERE, "out")
    os.makedirs(out, exist_ok=True)
    rows = {name: [] for name, _, _ in variants}
    for rnd in range(args.rounds):
        # The order rotates each round, so no variant always runs first (or right after another).
        shift = rnd % len(variants)
        for name, binary, extra in variants[shift:] + variants[:shift]:
            path = os.path.join(out, f"ab-{name}-{rnd}.json")
            other = binary.startswith("target:")
            target = binary.removeprefix("target:") if other else "tcpmap"
            env = dict(os.environ, **extra, **({} if other else {"BENCH_TCPMAP": binary}))
            cmd = [sys.executable, os.path.join(HERE, "bench.py"), "--only", target, "--reps", "1",
                   "--seconds", str(args.seconds), "--scenarios", args.scenarios, "--pause", "0.5",
                   "--workers", str(args.workers), "--idle-count", str(args.idle_count), "--json", path]
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
            try:
                with open(path) as f:
                    got = json.load(f)["results"].get(target, [])
            except (OSError, ValueError):
                got = []
            rows[name] += got
            print(f"[{time.strftime('%H:%M:%S')}] round {rnd + 1} {name}: "
                  + (", ".join(f"{k}={report.fmt(v)}" for k, v in got[0].items()) if got
                     else f"no result: {r.stdout[-200:]} {r.stderr[-200:]}"), flush=True)
    names = [n for n, _, _ in variants]
    print(f"\nworkers {args.workers}, {args.rounds} alternated rounds, medians (n):\n")
    print("| metric | " + " | ".join(names) + " | " + " | ".join(f"{n} ÷ {names[0]}" for n in names[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(names) - 1))
    for key, label, _, _ in report.METRICS:
        vals = {n: [r[key] for r in rows[n] if isinstance(r.get(key), (int, float))] for n in names}
        if not any(vals.values()):
            continue
        med = {n: statistics.median(v) if v else None for n, v in vals.items()}
        cells = [f"{report.fmt(med[n])} ({len(vals[n])})" for n in names]
        base = med[names[0]]
        ratios = [f"{med[n] / base:.2f}" if base and med[n] is not None else "–" for n in names[1:]]
        print(f"| {label} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
