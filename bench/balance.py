#!/usr/bin/env python3
"""Shared accept queue vs SO_REUSEPORT per worker, for `tcpmap run --workers N` (the
measurement behind docs/architecture.md, "Balance"). Usage, after `cargo build --release`:

    python3 bench/balance.py [--workers 2] [--reps 5] [--seconds 5]

Runs the `short` (wrk, one request per connection) and `tls_hs` (full TLS 1.3 handshakes)
scenarios of bench.py against tcpmap twice per repetition — one shared listening socket per
port, then `TCPMAP_REUSEPORT=1` (one SO_REUSEPORT socket per worker) — alternating, and prints
the medians. Uses bench.py's upstreams and load generators; writes only under bench/out/.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import proxies as px  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", default="2")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--hs-threads", type=int, default=2)
    args = ap.parse_args()
    args.scenarios = {"short", "tls_hs"}
    args.pause = 1.0
    out = os.path.join(px.HERE, "out")
    os.makedirs(out, exist_ok=True)
    v = px.free_ports(px.PORT_NAMES)
    v["out"] = out
    v.update(px.make_cert(out))
    specs = px.proxy_specs(v, int(args.workers))
    if "tcpmap" not in specs:
        raise SystemExit("target/release/tcpmap not found (cargo build --release)")
    argv, env, setting = specs["tcpmap"]
    variants = {
        "shared": (argv, dict(env), setting),
        "reuseport": (argv, dict(env, TCPMAP_REUSEPORT="1"), setting + ", SO_REUSEPORT"),
    }
    bench.log(f"load average before start: {os.getloadavg()[0]:.2f}")
    ups = bench.start_upstreams(v)
    results = {}
    try:
        for rep in range(args.reps):
            bench.log(f"repetition {rep + 1}/{args.reps}")
            order = list(variants) if rep % 2 == 0 else list(reversed(variants))
            for name in order:
                bench.run_target(name, variants[name], v, args, results)
    finally:
        for p in ups:
            p.stop()
    print()
    keys = ["short_cps", "short_cpu_us_per_conn", "tls_hs_per_s", "tls_hs_cpu_us"]
    print("| variant | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, rows in results.items():
        med = [statistics.median([r[k] for r in rows if k in r]) if any(k in r for r in rows) else float("nan")
               for k in keys]
        print(f"| {name} | " + " | ".join(f"{m:.0f}" for m in med) + " |")
    bench.log(f"load average at the end: {os.getloadavg()[0]:.2f}; {args.reps} repetitions x {args.seconds} s")


if __name__ == "__main__":
    main()
