#!/usr/bin/env python3
"""Side-by-side layer-4 proxy benchmark on loopback (entry point: bench/run.sh).

Owns: the run plan (repetitions x targets x scenarios), the loopback upstreams'
lifetime, progress output, medians, and the printed side-by-side table.
Must not: change anything outside bench/out/ (the proxies' configs and logs go there).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxies as px  # noqa: E402
import report  # noqa: E402
import scenarios as sc  # noqa: E402

PLAIN_PORTS = ["px_bulk", "px_http", "px_idle", "px_tls_http", "px_tls_sink"]
# The scenarios a plain-only target (px.PLAIN_ONLY: the floor relay) runs.
PLAIN_SCENARIOS = {"bulk", "bulk8", "short", "idle"}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def start_upstreams(v):
    """iperf3 server, nginx HTTP(S) upstream, plain sink, TLS sink, idle holder."""
    out, tools = v["out"], sc.TOOLS
    # The TLS download's endless response: 64 GiB of holes (no disk used; reads give zeros).
    with open(os.path.join(out, "big.bin"), "wb") as f:
        f.truncate(64 << 30)
    cmds = [
        (["iperf3", "-s", "-p", str(v["up_iperf"])], "iperf3"),
        (["nginx", "-p", out, "-e", "/dev/null", "-g", "daemon off;",
          "-c", px.render("nginx-upstream.conf", f"{out}/nginx-upstream.conf", v)], "nginx-upstream"),
        (tools + ["sink", "--port", str(v["up_sink"])], "sink"),
        ([sc.TLSLOAD, "sink", "--port", str(v["up_tlssink"]), "--cert", v["cert"], "--key", v["key"]],
         "tlssink"),
        (tools + ["hold", "--port", str(v["up_hold"])], "hold"),
    ]
    procs = []
    try:
        for argv, name in cmds:
            procs.append(px.Proc(argv, log=f"{out}/{name}.log"))
    except OSError:
        # One could not start (e.g. tlsload not built): stop the ones that did.
        for p in procs:
            p.stop()
        raise
    ports = [v[k] for k in ("up_iperf", "up_http", "up_https", "up_sink", "up_tlssink", "up_hold",
                            "up_https_resume")]
    if not px.wait_ports(ports):
        for p in procs:
            p.stop()
        raise SystemExit("upstreams did not come up; see bench/out/*.log")
    return procs


def run_target(name, spec, v, args, results):
    """All scenarios for one target (direct or a proxy) in one repetition."""
    secs = args.seconds
    scen = args.scenarios
    row = {}
    if name == "direct":
        ports = {"bulk": v["up_iperf"], "http": v["up_http"], "tls_http": v["up_https"],
                 "tls_sink": v["up_tlssink"], "tls_resume": v["up_https_resume"]}
        proc = None
    else:
        argv, env, _ = spec
        plain = name in px.PLAIN_ONLY
        if plain:
            scen = scen & PLAIN_SCENARIOS
        proc = px.Proc(argv, env=env, log=f"{v['out']}/{name}.log")
        if (not px.wait_ports([v[k] for k in (PLAIN_PORTS[:3] if plain else PLAIN_PORTS)])
                or not px.probe(v["px_http"])
                or not (plain or px.probe(v["px_tls_http"], tls=True)) or not proc.alive()):
            proc.stop()
            log(f"  {name}: did not start (see bench/out/{name}.log); skipped")
            return
        ports = {"bulk": v["px_bulk"], "http": v["px_http"], "tls_http": v["px_tls_http"],
                 "tls_sink": v["px_tls_sink"], "tls_resume": v["px_tls_resume"]}
    steps = [("bulk", lambda: sc.bulk(ports["bulk"], proc, secs)),
             ("bulk8", lambda: sc.bulk(ports["bulk"], proc, secs, streams=8)),
             ("short", lambda: sc.short(ports["http"], proc, secs)),
             ("tls_hs", lambda: sc.tls_handshakes(ports["tls_http"], proc, secs, args.hs_threads)),
             ("tls_res", lambda: sc.tls_resumed(ports["tls_resume"], proc, secs, args.hs_threads)),
             ("tls_bulk", lambda: sc.tls_bulk(ports["tls_sink"], proc, secs)),
             ("tls_pull", lambda: sc.tls_pull(ports["tls_http"], proc, secs))]
    try:
        for key, fn in steps:
            if key not in scen:
                continue
            try:
                row.update(fn())
            except Exception as e:  # one failed scenario must not end the run
                log(f"  {name} {key}: FAILED: {e!r}"[:300])
            time.sleep(args.pause)
    finally:
        if proc is not None:
            proc.stop()
    if "idle" in scen and name != "direct":
        proc = px.Proc(spec[0], env=spec[1], log=f"{v['out']}/{name}.log")
        try:
            if px.wait_ports([v["px_idle"]]) and px.probe(v["px_http"]):
                row.update(sc.idle_memory(v["px_idle"], proc, args.idle_count))
        except Exception as e:
            log(f"  {name} idle: FAILED: {e!r}"[:300])
        finally:
            proc.stop()
    log(f"  {name}: " + ", ".join(f"{k}={report.fmt(val)}" for k, val in row.items()))
    results.setdefault(name, []).append(row)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1 repetition, 2 s per scenario, 3000 idle conns")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5; --quick: 1)")
    ap.add_argument("--seconds", type=int, default=None, help="seconds per load run (default 5; --quick: 2)")
    ap.add_argument("--idle-count", type=int, default=None, help="idle connections (default 9000)")
    ap.add_argument("--only", default="", help="comma list of targets (direct,tcpmap,tcpmap-lib,haproxy,nginx,envoy,traefik,"
                    "floor,floor-splice)")
    ap.add_argument("--scenarios", default="bulk,bulk8,short,tls_hs,tls_res,tls_bulk,tls_pull,idle")
    ap.add_argument("--hs-threads", type=int, default=2, help="handshake client threads")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between scenarios")
    ap.add_argument("--workers", type=int, default=None,
                    help="workers/threads per proxy (default: nproc); the setting each proxy got is printed")
    ap.add_argument("--json", default=None, help="write raw results here (default bench/out/results.json)")
    args = ap.parse_args()
    args.reps = args.reps or (1 if args.quick else 5)
    args.seconds = args.seconds or (2 if args.quick else 5)
    args.idle_count = args.idle_count or (3000 if args.quick else 9000)
    args.scenarios = set(args.scenarios.split(","))
    args.workers = args.workers or os.cpu_count() or 1

    out = os.path.join(px.HERE, "out")
    os.makedirs(out, exist_ok=True)
    v = px.free_ports(px.PORT_NAMES)
    v["out"] = out
    v.update(px.make_cert(out))
    specs = px.proxy_specs(v, args.workers)
    targets = ["direct"] + [n for n in ("tcpmap", "tcpmap-lib", "haproxy", "nginx", "envoy", "traefik",
                                              "floor", "floor-splice")
                             if n in specs]
    if args.only:
        wanted = args.only.split(",")
        targets = [t for t in targets if t in wanted]
    versions = {n: px.version(n, specs[n][0][0]) for n in targets if n != "direct"}
    for tool in ("iperf3", "wrk", "openssl"):
        versions[tool] = px.version(tool, tool)
    versions["python"] = sys.version.split()[0]
    if "tcpmap" not in specs:
        log("tcpmap: target/release/tcpmap not found (cargo build --release); column will be pending")
    per_rep = len(targets) * (len(args.scenarios & {"bulk", "bulk8", "short", "tls_hs", "tls_res", "tls_bulk", "tls_pull"})
                              * (args.seconds + args.pause + 1) + 8)
    log(f"targets: {', '.join(targets)}; {args.reps} rep(s) x {args.seconds} s; "
        f"about {per_rep * args.reps // 60 + 1} min")
    for n, ver in versions.items():
        log(f"  {n}: {ver}")
    settings = {n: specs[n][2] for n in targets if n != "direct"}
    log(f"workers per proxy: {args.workers} (" + ", ".join(f"{n}: {s}" for n, s in settings.items()) + ")")

    load0 = os.getloadavg()
    log(f"load average before start: {load0[0]:.2f} (other work on this machine skews throughput)")
    ups = start_upstreams(v)
    results = {}
    t0 = time.monotonic()
    try:
        for rep in range(args.reps):
            log(f"repetition {rep + 1}/{args.reps}")
            for name in targets:
                run_target(name, specs.get(name), v, args, results)
    finally:
        for p in ups:
            p.stop()
    meta = {"argv": sys.argv[1:], "loadavg_end": os.getloadavg(), "loadavg_start": load0, "reps": args.reps, "seconds": args.seconds,
            "idle_count": args.idle_count, "versions": versions,
            "workers": args.workers, "settings": settings,
            "elapsed_s": time.monotonic() - t0, "targets": targets}
    path = args.json or os.path.join(out, "results.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    medians = {n: report.medians(rows) for n, rows in results.items()}
    print()
    print(f"workers per proxy: {args.workers} (" + ", ".join(f"{n}: {s}" for n, s in settings.items()) + ")")
    print(report.table(medians, targets))
    print()
    print(report.goals(medians))
    log(f"done in {meta['elapsed_s']:.0f} s; raw results in {path}")


if __name__ == "__main__":
    main()
