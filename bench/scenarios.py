"""One measurement each: drive a load generator at a port and read the proxy's CPU/PSS around it.

Owns: the command line of each load generator (iperf3, wrk, bench/tools.py),
parsing its output, and turning (work done, proxy CPU seconds) into metrics.
Must not: start proxies or upstreams (bench/proxies.py), or aggregate repetitions (bench/bench.py).
Every function is bounded by a subprocess timeout and returns a dict (empty values on failure).
"""

import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = [sys.executable, os.path.join(HERE, "tools.py")]
TLSLOAD = os.path.join(os.path.dirname(HERE), "target", "release", "tlsload")


def _cpu(proc):
    return proc.cpu() if proc is not None else None


def _per(cpu0, proc, denom, scale):
    if proc is None or not denom:
        return None
    return (proc.cpu() - cpu0) / denom * scale


def bulk(port, proc, secs, streams=1):
    """iperf3, `streams` parallel streams (1: `bulk_*`, else `bulk8_*`), `secs` seconds: Gbit/s
    and proxy CPU seconds per GB."""
    for attempt in range(3):
        c0 = _cpu(proc)
        r = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(secs), "-J",
                            "-P", str(streams), "--connect-timeout", "3000"],
                           capture_output=True, text=True, timeout=secs + 30)
        res = json.loads(r.stdout)
        if "error" not in res:
            break
        time.sleep(1.0 + attempt)  # iperf3's server serves one test at a time: let it settle
    else:
        raise RuntimeError(f"iperf3: {res.get('error')}")
    end = res["end"]["sum_received"]
    moved = end["bytes"]
    key = "bulk" if streams == 1 else "bulk8"
    return {f"{key}_gbps": end["bits_per_second"] / 1e9,
            f"{key}_cpu_s_per_gb": _per(c0, proc, moved / 1e9, 1)}


def short(port, proc, secs):
    """wrk, 64 connections, one request per connection: conn/s and proxy CPU µs per connection."""
    c0 = _cpu(proc)
    r = subprocess.run(["wrk", "-H", "Connection: close", "-c64", "-t1", f"-d{secs}s", "--timeout", "5s",
                        f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=secs + 30)
    out = r.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not rps:
        raise RuntimeError(f"wrk output not understood: {out[-300:]} {r.stderr[-300:]}")
    reqs = int(m.group(1))
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = (sum(int(x) for x in errs.groups()) if errs else 0) + (int(non2xx.group(1)) if non2xx else 0)
    return {"short_cps": float(rps.group(1)),
            "short_cpu_us_per_conn": _per(c0, proc, reqs, 1e6),
            "short_errors": bad}


def tls_handshakes(port, proc, secs, threads=2):
    """bench/tlsload handshakes: full TLS 1.3 handshakes (no resumption) + one tiny GET each."""
    c0 = _cpu(proc)
    r = subprocess.run([TLSLOAD, "handshakes", "--port", str(port), "--seconds", str(secs),
                        "--threads", str(threads)], capture_output=True, text=True, timeout=secs + 60)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {"tls_hs_per_s": res["per_s"],
            "tls_hs_cpu_us": _per(c0, proc, res["handshakes"], 1e6),
            "tls_hs_errors": res["errors"]}


def tls_resumed(port, proc, secs, threads=2):
    """bench/tlsload handshakes --resume on: a client that keeps its session tickets and offers
    one on every new connection (a browser, curl, Java, Go); handshakes/s, proxy CPU µs per
    handshake, and the share of handshakes that did resume (the proxy decides, by issuing
    tickets and accepting them)."""
    c0 = _cpu(proc)
    r = subprocess.run([TLSLOAD, "handshakes", "--port", str(port), "--seconds", str(secs),
                        "--threads", str(threads), "--resume", "on"],
                       capture_output=True, text=True, timeout=secs + 60)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    done = res["handshakes"]
    return {"tls_res_per_s": res["per_s"],
            "tls_res_cpu_us": _per(c0, proc, done, 1e6),
            "tls_res_rate": 100.0 * res["resumed"] / done if done else None,
            "tls_res_errors": res["errors"]}


def tls_bulk(port, proc, secs):
    """bench/tlsload push: one TLS connection pushing 1 MiB writes for `secs` seconds."""
    c0 = _cpu(proc)
    r = subprocess.run([TLSLOAD, "push", "--port", str(port), "--seconds", str(secs)],
                       capture_output=True, text=True, timeout=secs + 60)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {"tls_bulk_gbps": res["gbps"],
            "tls_bulk_cpu_s_per_gb": _per(c0, proc, res["bytes"] / 1e9, 1),
            "tls_cipher": res["cipher"]}


def tls_pull(port, proc, secs):
    """bench/tlsload pull: one TLS connection reading a huge HTTP response for `secs` seconds
    (the proxy encrypts what the plain upstream sends)."""
    c0 = _cpu(proc)
    r = subprocess.run([TLSLOAD, "pull", "--port", str(port), "--seconds", str(secs)],
                       capture_output=True, text=True, timeout=secs + 60)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return {"tls_pull_gbps": res["gbps"],
            "tls_pull_cpu_s_per_gb": _per(c0, proc, res["bytes"] / 1e9, 1)}


def _open_idle(port, count, timeout):
    p = subprocess.Popen(TOOLS + ["idle", "--port", str(port), "--count", str(count),
                                  "--timeout", str(timeout)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    ready = int(line[1]) if len(line) >= 2 and line[0] == "ready" else 0
    return p, ready


def _close_idle(p):
    try:
        p.stdin.close()
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def idle_memory(port, proc, count, timeout=60):
    """Open `count` idle connections (each carried `hi`/`ok` once): proxy PSS growth per connection."""
    warm, _ = _open_idle(port, 50, timeout)
    _close_idle(warm)
    time.sleep(0.5)
    before = proc.pss_kb()
    p, ready = _open_idle(port, count, timeout)
    try:
        time.sleep(1.0)
        after = proc.pss_kb()
    finally:
        _close_idle(p)
    return {"idle_kb_per_conn": (after - before) / ready if ready else None,
            "idle_ready": ready, "base_pss_mb": before / 1024}
