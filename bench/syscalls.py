#!/usr/bin/env python3
"""Syscalls per short plain connection (or per MB of TLS bulk), counted with `strace -c -f`
on the proxy.

    python3 bench/syscalls.py [--target tcpmap|haproxy|nginx] [--seconds 3] [--conns 16]
                              [--workers N] [--tcpmap PATH] [--env K=V ...]
                              [--load short|bulk|bulk8|tls-bulk|tls-pull|tls-full|tls-resume] [--perf]

Starts the bench's nginx upstream (answers `ok`, no keep-alive) and one proxy with the
bench configs, warms it up, attaches `strace -c -f` to every process of the proxy's tree,
runs `wrk -H 'Connection: close' -c16 -t1 -d3s` at its plain HTTP port (one request per
TCP connection), detaches and prints each syscall's count divided by the number of
connections wrk completed. With `--load bulk` (or `bulk8`) the load is iperf3 with one (eight)
streams through the plain bulk port to an iperf3 server, counts per MB. With `--load tls-bulk` the load is `tlsload push` (one TLS
connection pushing 1 MiB writes through the proxy's TLS-terminating port to a plain sink)
and counts are per MB moved; `--load tls-pull` is the other direction (`tlsload pull`: one
TLS connection reading a huge response of the nginx upstream); `--load tls-full` and
`--load tls-resume` are `tlsload handshakes` (TLS 1.3 handshake + one GET per connection, without
and with session resumption; counts per handshake). Counts do not depend on machine load (timings do); strace
slows the proxy, so the rate printed is not a benchmark.

Owns: this one measurement. Must not: install anything; it stops everything it started.
"""

import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxies as px  # noqa: E402
import scenarios as sc  # noqa: E402


def parse_strace(path):
    """{syscall: (calls, errors)} from a `strace -c` summary."""
    out = {}
    with open(path) as f:
        for line in f:
            cols = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(cols) >= 5 and re.match(r"^[\d.]+$", cols[0]) and cols[-1] != "total":
                calls = int(cols[3])
                errors = int(cols[4]) if len(cols) == 6 else 0
                out[cols[-1]] = (calls, errors)
    return out


def start(args, v, out, wrap=()):
    """The nginx upstream, the plain sink and the proxy (argv prefixed with `wrap`), up."""
    specs = px.proxy_specs(v, args.workers)
    if args.target not in specs:
        raise SystemExit(f"{args.target}: not found")
    argv, env, setting = specs[args.target]
    env = dict(env)
    for kv in args.env:
        k, _, val = kv.partition("=")
        env[k] = val
    with open(os.path.join(out, "big.bin"), "wb") as f:
        f.truncate(64 << 30)  # the endless response of tls-pull (sparse)
    up = px.Proc(["nginx", "-p", out, "-e", "/dev/null", "-g", "daemon off;",
                  "-c", px.render("nginx-upstream.conf", f"{out}/nginx-upstream.conf", v)],
                 log=f"{out}/nginx-upstream.log")
    sink = px.Proc(sc.TOOLS + ["sink", "--port", str(v["up_sink"])], log=f"{out}/sink.log")
    started = [up, sink, px.Proc(["iperf3", "-s", "-p", str(v["up_iperf"])], log=f"{out}/iperf3.log")]
    try:
        if not px.wait_ports([v["up_http"], v["up_sink"], v["up_iperf"]]):
            raise SystemExit("upstream did not start")
        proc = px.Proc(list(wrap) + argv, env=env, log=f"{out}/{args.target}-strace.log")
        started.append(proc)
        if not px.wait_ports([v["px_http"]], timeout=60) or not px.probe(v["px_http"], timeout=60):
            raise SystemExit(f"{args.target} did not start; see {out}/{args.target}-strace.log")
    except BaseException:
        for p in reversed(started):
            p.stop()
        raise
    return started, setting


def heap_calls(path):
    """`calls to allocation functions` from heaptrack_print's summary of one recording."""
    r = subprocess.run(["heaptrack_print", "-f", path, "-s", "0", "-a", "0", "-p", "0", "-n", "0",
                        "-T", "0", "-l", "0"], capture_output=True, text=True, timeout=600)
    m = re.search(r"calls to allocation functions: (\d+)", r.stdout)
    if not m:
        raise SystemExit(f"heaptrack_print output not understood: {r.stdout[-300:]} {r.stderr[-300:]}")
    return int(m.group(1))


def callgrind_ir(path):
    """Total instructions (Ir) of one callgrind output file."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit(f"no summary in {path}")


def traced(args, tool):
    """Heap allocations (heaptrack) or user-space instructions (callgrind) per unit of load:
    two recordings of the proxy, one with the load and one with only start, probe and stop; the
    difference divided by the units."""
    out = os.path.join(px.HERE, "out")
    os.makedirs(out, exist_ok=True)
    counts = []
    units = unit = None
    for loaded in (False, True):
        v = px.free_ports(px.PORT_NAMES)
        v["out"] = out
        v.update(px.make_cert(out))
        data = f"{out}/{tool}-{args.target}-{int(loaded)}"
        for old in glob.glob(data + "*"):
            os.remove(old)
        wrap = (["heaptrack", "-o", data] if tool == "heaptrack" else
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={data}.%p"])
        started, setting = start(args, v, out, wrap=wrap)
        try:
            if loaded:
                load = load_argv(args, v)
                r = subprocess.run(load, capture_output=True, text=True, timeout=args.seconds + 60)
                units, unit = done(r.stdout, args.load)
            stop_traced(started[-1])
        finally:
            for p in reversed(started):
                p.stop()
        files = glob.glob(data + "*")
        if not files:
            raise SystemExit(f"{tool} wrote nothing at {data}*")
        counts.append(heap_calls(files[0]) if tool == "heaptrack" else sum(callgrind_ir(f) for f in files))
    what = "allocations" if tool == "heaptrack" else "instructions"
    print(f"{args.target} ({setting}): {what} {counts[1]} with load, {counts[0]} without; "
          f"{units:.0f} {unit}s: {(counts[1] - counts[0]) / units:.1f} {what} per {unit}")


def stop_traced(proc):
    """SIGTERM only the proxy under heaptrack (a signal to the whole group would also end
    heaptrack's own writer before it saved the recording), then wait for heaptrack to finish."""
    tree = proc.tree()
    for pid in tree[1:] or tree:  # valgrind runs the proxy in its own process
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if not comm.startswith(("heaptrack", "zstd", "gzip", "sh", "bash", "valgrind")):
            os.kill(pid, signal.SIGTERM)
    try:
        proc.p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass


def load_argv(args, v):
    """The load generator's command line for `--load` at this run's ports (no warm-up)."""
    if args.load in ("tls-full", "tls-resume"):
        resume = args.load == "tls-resume"
        port = v["px_tls_resume"] if resume else v["px_tls_http"]
        return [sc.TLSLOAD, "handshakes", "--port", str(port), "--threads", "1",
                "--resume", "on" if resume else "off", "--seconds", str(args.seconds)]
    if args.load in ("bulk", "bulk8"):
        return ["iperf3", "-c", "127.0.0.1", "-p", str(v["px_bulk"]), "-t", str(args.seconds), "-J",
                "-P", "8" if args.load == "bulk8" else "1"]
    if args.load == "tls-bulk":
        return [sc.TLSLOAD, "push", "--port", str(v["px_tls_sink"]), "--seconds", str(args.seconds)]
    if args.load == "tls-pull":
        return [sc.TLSLOAD, "pull", "--port", str(v["px_tls_http"]), "--seconds", str(args.seconds)]
    return ["wrk", "-H", "Connection: close", f"-c{args.conns}", "-t1", "--timeout", "5s",
            f"-d{args.seconds}s", f"http://127.0.0.1:{v['px_http']}/"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="tcpmap")
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16, help="wrk concurrent connections")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--env", action="append", default=[], help="K=V for the proxy (repeatable)")
    ap.add_argument("--load", choices=["short", "bulk", "bulk8", "tls-bulk", "tls-pull", "tls-full", "tls-resume"],
                    default="short",
                    help="short: wrk, one request per connection; bulk / bulk8: iperf3, 1 / 8 "
                         "streams through the plain bulk port; tls-bulk: tlsload push; "
                         "tls-pull: tlsload pull (GET /big over TLS); tls-full / tls-resume: "
                         "tlsload handshakes without / with session resumption")
    ap.add_argument("--perf", action="store_true",
                    help="instead of strace: `perf record` the proxy's processes and print the top symbols")
    ap.add_argument("--allocs", action="store_true",
                    help="instead of strace: run the proxy under heaptrack (use --workers 1) and print "
                         "heap allocations per unit of load, less those of a run without load")
    ap.add_argument("--callgrind", action="store_true",
                    help="instead of strace: run the proxy under valgrind's callgrind (use --workers 1) "
                         "and print user-space instructions per unit of load, less those of a run "
                         "without load (exact counts, whatever the machine's load; slow, so use "
                         "--seconds 10 or more)")
    args = ap.parse_args()
    if args.allocs or args.callgrind:
        traced(args, "callgrind" if args.callgrind else "heaptrack")
        return

    out = os.path.join(px.HERE, "out")
    os.makedirs(out, exist_ok=True)
    v = px.free_ports(px.PORT_NAMES)
    v["out"] = out
    v.update(px.make_cert(out))
    specs = px.proxy_specs(v, args.workers)
    if args.target not in specs:
        raise SystemExit(f"{args.target}: not found")
    argv, env, setting = specs[args.target]
    env = dict(env)
    for kv in args.env:
        k, _, val = kv.partition("=")
        env[k] = val
    with open(os.path.join(out, "big.bin"), "wb") as f:
        f.truncate(64 << 30)  # the endless response of tls-pull (sparse)
    up = px.Proc(["nginx", "-p", out, "-e", "/dev/null", "-g", "daemon off;",
                  "-c", px.render("nginx-upstream.conf", f"{out}/nginx-upstream.conf", v)],
                 log=f"{out}/nginx-upstream.log")
    sink = px.Proc(sc.TOOLS + ["sink", "--port", str(v["up_sink"])], log=f"{out}/sink.log")
    iperf = px.Proc(["iperf3", "-s", "-p", str(v["up_iperf"])], log=f"{out}/iperf3.log")
    proc = None
    try:
        if not px.wait_ports([v["up_http"], v["up_sink"], v["up_iperf"]]):
            raise SystemExit("upstream did not start")
        proc = px.Proc(argv, env=env, log=f"{out}/{args.target}-strace.log")
        if not px.wait_ports([v["px_http"]]) or not px.probe(v["px_http"]):
            raise SystemExit(f"{args.target} did not start; see {out}/{args.target}-strace.log")
        if args.load in ("tls-full", "tls-resume"):
            load = handshake_load(args, v)
        elif args.load in ("bulk", "bulk8"):
            load = load_argv(args, v)
        elif args.load in ("tls-bulk", "tls-pull"):
            if not os.path.exists(sc.TLSLOAD):
                raise SystemExit(f"{sc.TLSLOAD} missing: bench/run.sh builds it")
            if args.load == "tls-bulk":
                load = [sc.TLSLOAD, "push", "--port", str(v["px_tls_sink"])]
            else:
                load = [sc.TLSLOAD, "pull", "--port", str(v["px_tls_http"])]
            load += ["--seconds", str(args.seconds)]
        else:
            url = f"http://127.0.0.1:{v['px_http']}/"
            wrk = ["wrk", "-H", "Connection: close", f"-c{args.conns}", "-t1", "--timeout", "5s"]
            subprocess.run(wrk + ["-d1s", url], capture_output=True, timeout=30)  # warm-up
            load = wrk + [f"-d{args.seconds}s", url]
        time.sleep(0.5)
        if args.perf:
            profile(proc, load, args, out)
            return
        summary = f"{out}/strace-{args.target}.txt"
        strace = ["strace", "-c", "-f", "-o", summary]
        for pid in proc.tree():
            strace += ["-p", str(pid)]
        st = subprocess.Popen(strace, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached
        r = subprocess.run(load, capture_output=True, text=True, timeout=args.seconds + 30)
        time.sleep(0.5)
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        units, unit = done(r.stdout, args.load)
        calls = parse_strace(summary)
        total = sum(c for c, _ in calls.values())
        print(f"{args.target} ({setting}, env {env}): {units:.0f} {unit}s, "
              f"{total} syscalls, {total / units:.1f} per {unit}")
        print(f"| syscall | per {unit} | of which errors |")
        print(f"|---|---:|---:|")
        for name, (c, e) in sorted(calls.items(), key=lambda kv: -kv[1][0]):
            if c / units >= 0.05:
                print(f"| {name} | {c / units:.2f} | {e / units:.2f} |")
    finally:
        if proc is not None:
            proc.stop()
        sink.stop()
        iperf.stop()
        up.stop()


def handshake_load(args, v):
    """tlsload handshakes (full or resumed) at the proxy's TLS port for that row, after a warm-up
    (which also fills the resuming client's ticket store in the proxy's current key)."""
    if not os.path.exists(sc.TLSLOAD):
        raise SystemExit(f"{sc.TLSLOAD} missing: bench/run.sh builds it")
    resume = args.load == "tls-resume"
    port = v["px_tls_resume"] if resume else v["px_tls_http"]
    load = [sc.TLSLOAD, "handshakes", "--port", str(port), "--threads", "1",
            "--resume", "on" if resume else "off"]
    subprocess.run(load + ["--seconds", "1"], capture_output=True, timeout=60)
    return load + ["--seconds", str(args.seconds)]


def done(stdout, load):
    """(units of work the load generator completed, the unit's name) from its output."""
    if load in ("tls-full", "tls-resume"):
        try:
            res = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise SystemExit(f"tlsload output not understood: {stdout[-300:]}")
        print(f"handshakes: {res['handshakes']}, resumed: {res['resumed']}, errors: {res['errors']}")
        return res["handshakes"], "handshake"
    if load in ("bulk", "bulk8"):
        try:
            res = json.loads(stdout)
            return res["end"]["sum_received"]["bytes"] / 1e6, "MB"
        except (ValueError, KeyError):
            raise SystemExit(f"iperf3 output not understood: {stdout[-300:]}")
    if load in ("tls-bulk", "tls-pull"):
        try:
            res = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise SystemExit(f"tlsload output not understood: {stdout[-300:]}")
        return res["bytes"] / 1e6, "MB"
    m = re.search(r"(\d+) requests in", stdout)
    if not m:
        raise SystemExit(f"wrk output not understood: {stdout[-300:]}")
    return int(m.group(1)), "connection"


def profile(proc, load, args, out):
    """`perf record` every process of the proxy during one load run; print where CPU went."""
    data = f"{out}/perf-{args.target}.data"
    rec = ["perf", "record", "-F", "2999", "-g", "-o", data]
    for pid in proc.tree():
        rec += ["-p", str(pid)]
    pr = subprocess.Popen(rec, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    r = subprocess.run(load, capture_output=True, text=True, timeout=args.seconds + 30)
    pr.send_signal(signal.SIGINT)
    pr.wait(timeout=60)
    units, unit = done(r.stdout, args.load)
    print(f"{args.target}: {units:.0f} {unit}s in {args.seconds} s under perf")
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol",
                          "--stdio", "-g", "none", "--percent-limit", "0.7"],
                         capture_output=True, text=True, timeout=300)
    print("\n".join(l for l in rep.stdout.splitlines() if l and not l.startswith("#")))


if __name__ == "__main__":
    main()
