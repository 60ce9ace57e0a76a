#!/usr/bin/env python3
"""Issue 24's flood goal: what rate-limiting a connect-and-close flood costs tcpmap.

One release tcpmap (`--workers N --dont-log-null`) with two TLS-terminating listeners for
`bench.test` in front of an nginx upstream answering `ok`:
- `flood`: `connection_rate_limit: {rate: 1, burst: 1, per: client_ip}`; a flood of
  connect-and-close connections from 1,000 source addresses (127.1.0.1 ... 127.1.3.232) by
  `--procs` generator processes, as fast as they go;
- `good`: no limit; another client (`bench/tlsload handshakes`, full TLS 1.3 handshakes
  from 127.0.0.1) measures the handshake rate.

Each round runs four phases of `--seconds` each, in this order: handshakes alone, flood
alone, both at once, and a control: handshakes beside `--procs` processes that only spin
(the generator's CPU use without a connection: what the flood's generator alone takes from
the handshakes on a small machine). Printed per phase: tcpmap's CPU (utime+stime of the Supervisor and its
workers, from /proc), connections refused (`tcpmap_connections_rate_limited_total`), the
flood's connects/s, the handshakes/s; then medians over the rounds of CPU per refused
connection (flood alone), and the handshake rate with the flood vs without.

Loopback only, ports from the kernel, bounded: every phase by its duration, the whole run
by `--timeout` (SIGALRM), and everything started is stopped at the end.

    cargo build --release                  # target/release/tcpmap
    (cd bench/tlsload && cargo build --release --target-dir ../../target)
    python3 bench/flood.py --rounds 3 --seconds 5 --workers 2
"""

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import proxies as px  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SOURCES = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(1000)]
IP_BIND_ADDRESS_NO_PORT = 24


def tree(pid):
    """pid and every descendant, through every thread's children list."""
    out, frontier = [pid], [pid]
    while frontier:
        nxt = []
        for p in frontier:
            try:
                for t in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{t}/children") as f:
                        nxt += [int(x) for x in f.read().split()]
            except OSError:
                pass
        out += nxt
        frontier = nxt
    return out


def cpu(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def rss_kb(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def refused(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("tcpmap_connections_rate_limited_total{"))


def flood_proc(port, sources, seconds, out):
    """Connect-and-close from each of `sources` in turn until `seconds` pass."""
    deadline = time.monotonic() + seconds
    n = fails = 0
    while time.monotonic() < deadline:
        for src in sources:
            s = socket.socket()
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((src, 0))
                s.settimeout(1)
                s.connect(("127.0.0.1", port))
                n += 1
            except OSError:
                fails += 1
            finally:
                s.close()
    out.put((n, fails))


def hog_proc(port, sources, seconds, out):
    """The control: spins for `seconds` without a connection (the generator's CPU use alone)."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        for _ in sources:
            n += 1
    out.put((0, 0))


def flood(port, seconds, procs, target=flood_proc):
    """Starts the generator processes; returns a function that waits and sums their counts."""
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=target,
                                  args=(port, SOURCES[i::procs], seconds, q))
          for i in range(procs)]
    for p in ps:
        p.start()

    def join():
        got = [q.get(timeout=seconds + 30) for _ in ps]
        for p in ps:
            p.join(timeout=10)
        return sum(g[0] for g in got), sum(g[1] for g in got)
    return join


def handshakes(tlsload, port, seconds, threads):
    r = subprocess.run([tlsload, "handshakes", "--port", str(port), "--seconds", str(seconds),
                        "--threads", str(threads)], capture_output=True, text=True,
                       timeout=seconds + 30, check=True)
    return json.loads(r.stdout)


CONFIG = """---
apiVersion: getambassador.io/v2
kind: TLSContext
name: bench-tls
hosts: [bench.test]
secret: bench
---
apiVersion: getambassador.io/v2
kind: TCPMapping
name: flood
address: 127.0.0.1
port: {flood}
host: bench.test
service: 127.0.0.1:{up}
connection_rate_limit: {{rate: 1, burst: 1, per: client_ip}}
---
apiVersion: getambassador.io/v2
kind: TCPMapping
name: good
address: 127.0.0.1
port: {good}
host: bench.test
service: 127.0.0.1:{up}
"""


def phase(name, d, a, hs_threads, with_hs, with_flood, hog=False):
    c0, r0, t0 = cpu(d["pid"]), refused(d["admin"]), time.monotonic()
    join = flood(d["flood"], a.seconds, a.procs) if with_flood else None
    if hog:
        join = flood(d["flood"], a.seconds, a.procs, hog_proc)
    prof = None
    if with_flood and not with_hs and (a.perf or a.strace):
        # Profile tcpmap (every process of its tree) during the flood-alone phase.
        pids = ",".join(str(p) for p in tree(d["pid"]))
        argv = (["perf", "record", "-g", "-o", a.perf, "-p", pids] if a.perf
                else ["strace", "-c", "-f", "-o", a.strace] + sum((["-p", p] for p in pids.split(",")), []))
        prof = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hs = handshakes(d["tlsload"], d["good"], a.seconds, hs_threads) if with_hs else None
    if join is None:
        # Handshakes alone ran for `seconds`; nothing else to wait for.
        connects, fails = 0, 0
    else:
        connects, fails = join()
    if prof is not None:
        prof.send_signal(signal.SIGINT)
        prof.wait(timeout=30)
    secs = time.monotonic() - t0
    c1, r1 = cpu(d["pid"]), refused(d["admin"])
    row = {"phase": name, "cpu_s": round(c1 - c0, 2), "refused": int(r1 - r0),
           "connects_per_s": round(connects / secs), "connect_fails": fails,
           "handshakes_per_s": round(hs["per_s"], 1) if hs else None,
           "handshakes": hs["handshakes"] if hs else 0,
           "handshake_errors": hs["errors"] if hs else None,
           "rss_kib": rss_kb(d["pid"])}
    if row["refused"]:
        row["cpu_us_per_refused"] = round((c1 - c0) / row["refused"] * 1e6, 2)
    print(json.dumps(row), flush=True)
    return row


HAPROXY = """global
    nbthread {threads}
    maxconn 8000
defaults
    mode tcp
    timeout connect 3s
    timeout client 30s
    timeout server 30s
frontend flood
    bind 127.0.0.1:{port}
    tcp-request connection reject
"""


def haproxy_floor(a, out):
    """The same flood against HAProxy rejecting every connection at accept
    (`tcp-request connection reject`): its CPU per connection, a peer's floor here."""
    port = px.free_ports(["p"])["p"]
    cfg = os.path.join(out, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(HAPROXY.format(threads=a.workers, port=port))
    hp = px.Proc(["haproxy", "-db", "-f", cfg])
    try:
        time.sleep(0.5)
        for _ in range(a.rounds):
            c0, t0 = cpu(hp.pid), time.monotonic()
            connects, fails = flood(port, a.seconds, a.procs)()
            secs, c1 = time.monotonic() - t0, cpu(hp.pid)
            print(json.dumps({"phase": "haproxy_reject", "cpu_s": round(c1 - c0, 2),
                              "connects": connects, "connects_per_s": round(connects / secs),
                              "connect_fails": fails,
                              "cpu_us_per_connection": round((c1 - c0) / max(connects, 1) * 1e6, 2)}),
                  flush=True)
    finally:
        hp.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", default="2")
    ap.add_argument("--procs", type=int, default=2, help="flood generator processes")
    ap.add_argument("--hs-threads", type=int, default=1, help="tlsload threads")
    ap.add_argument("--perf", help="perf record -g tcpmap into this file during the flood")
    ap.add_argument("--strace", help="strace -c -f tcpmap into this file during the flood")
    ap.add_argument("--haproxy", action="store_true",
                    help="only measure HAProxy rejecting the same flood at accept")
    ap.add_argument("--timeout", type=int, default=600, help="stop everything after this")
    ap.add_argument("--tcpmap", default=os.path.join(ROOT, "target/release/tcpmap"))
    ap.add_argument("--tlsload", default=os.path.join(ROOT, "target/release/tlsload"))
    a = ap.parse_args()
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("flood.py: --timeout reached"))
    signal.alarm(a.timeout)
    out = tempfile.mkdtemp(prefix="tcpmap-flood-")
    if a.haproxy:
        try:
            haproxy_floor(a, out)
        finally:
            subprocess.run(["rm", "-rf", out], check=False)
        return
    v = px.free_ports(["up_http", "up_https", "flood", "good", "admin"])
    v.update(px.make_cert(out))
    v["out"] = out
    procs = []
    try:
        procs.append(px.Proc(["nginx", "-p", out, "-e", "/dev/null", "-g", "daemon off;", "-c",
                              px.render("nginx-upstream.conf", f"{out}/nginx-upstream.conf", v)]))
        cfg = os.path.join(out, "tcpmap.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(flood=v["flood"], good=v["good"], up=v["up_http"]))
        tm = px.Proc([a.tcpmap, "run", "--config", cfg, "--secrets-dir", v["secrets"],
                      "--workers", a.workers, "--dont-log-null",
                      "--admin", f"127.0.0.1:{v['admin']}"],
                     env={"RUST_LOG": "warn"}, log=os.path.join(out, "tcpmap.log"))
        procs.append(tm)
        for _ in range(100):
            try:
                refused(v["admin"])
                handshakes(a.tlsload, v["good"], 0.2, 1)
                break
            except (OSError, subprocess.CalledProcessError, ValueError):
                time.sleep(0.1)
        d = {"pid": tm.pid, "admin": v["admin"], "flood": v["flood"], "good": v["good"],
             "tlsload": a.tlsload}
        print(json.dumps({"nproc": os.cpu_count(), "loadavg": os.getloadavg(),
                          "workers": a.workers, "procs": a.procs, "seconds": a.seconds,
                          "rss_kib_start": rss_kb(tm.pid)}), flush=True)
        rows = []
        for _ in range(a.rounds):
            rows.append(phase("handshakes", d, a, a.hs_threads, True, False))
            rows.append(phase("flood", d, a, a.hs_threads, False, True))
            rows.append(phase("both", d, a, a.hs_threads, True, True))
            rows.append(phase("hog", d, a, a.hs_threads, True, False, hog=True))

        # With both at once, the handshakes' share of the CPU is taken out at the rate the
        # same round's handshakes-alone phase cost.
        for i in range(0, len(rows), 4):
            hs, both = rows[i], rows[i + 2]
            per_hs = hs["cpu_s"] / hs["handshakes"] if hs["handshakes"] else 0
            rest = both["cpu_s"] - both["handshakes"] * per_hs
            both["cpu_us_per_refused_less_handshakes"] = (
                round(rest / both["refused"] * 1e6, 2) if both["refused"] else None)

        def med(name, key):
            return statistics.median(r[key] for r in rows if r["phase"] == name)
        alone, both = med("handshakes", "handshakes_per_s"), med("both", "handshakes_per_s")
        print(json.dumps({
            "median_cpu_us_per_refused_flood_alone": med("flood", "cpu_us_per_refused"),
            "median_cpu_us_per_refused_beside_handshakes":
                med("both", "cpu_us_per_refused_less_handshakes"),
            "median_flood_connects_per_s": med("flood", "connects_per_s"),
            "median_refused_per_s": round(med("flood", "refused") / a.seconds),
            "median_handshakes_per_s_alone": alone,
            "median_handshakes_per_s_under_flood": both,
            "under_flood_vs_alone": round(both / alone, 3) if alone else None,
            "median_handshakes_per_s_beside_cpu_hog": med("hog", "handshakes_per_s"),
            "rss_kib_end": rss_kb(tm.pid),
            "loadavg_end": os.getloadavg(),
        }), flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
        subprocess.run(["rm", "-rf", out], check=False)


if __name__ == "__main__":
    main()
