//! floor: the smallest layer-4 relay this machine can run, as the physical-limit row of
//! bench/run.sh. Per thread: one epoll, one `SO_REUSEPORT` listener per mapping; accept until
//! EAGAIN, open and connect the upstream socket (non-blocking, `TCP_NODELAY`), register both
//! sockets edge-triggered, copy each direction when its source is readable or its
//! destination writable (read/write through a 64 KiB buffer, or splice through a 256 KiB
//! pipe), pass the first EOF on with `shutdown(SHUT_WR)` and close both sockets at the second
//! (or when one fails). A read shorter than the buffer drained the socket: no read for EAGAIN
//! after it, and with `EPOLLRDHUP` in the event it was the last (no read for the EOF).
//! Nothing else: no config, no timeouts, no logs, no TLS.
//!
//!     floor --map LISTEN=UPSTREAM [--map ...] [--threads N] [--splice] [--buf BYTES] [--pipe BYTES]
//!
//! Ports on 127.0.0.1. Runs until killed.

use std::io::Error;
use std::mem::{size_of, zeroed};
use std::ptr::null_mut;

use libc::{c_int, c_void, epoll_event};

/// A listener's token: its index among the mappings, above every connection token.
const LISTENER: u64 = 1 << 62;
const EAGAIN: i32 = libc::EAGAIN;

struct Opts {
    maps: Vec<(u16, u16)>,
    threads: usize,
    splice: bool,
    buf: usize,
    pipe: usize,
}

/// How a direction is copied.
#[derive(Clone, Copy)]
struct Mode {
    splice: bool,
    /// read/write buffer size.
    buf: usize,
    /// splice: pipe size (F_SETPIPE_SZ).
    pipe: usize,
}

/// One direction of a connection: bytes from `fds[src]` to `fds[1 - src]`.
#[derive(Default)]
struct Dir {
    /// read/write: the buffer (allocated on first use) and its unwritten part.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// splice: the pipe (created on first use) and how many bytes it holds.
    pipe: Option<[c_int; 2]>,
    in_pipe: usize,
    /// The source gave EOF.
    eof: bool,
    /// EOF passed on (shutdown of the destination's write side).
    done: bool,
}

struct Conn {
    /// [client, upstream]
    fds: [c_int; 2],
    /// [client → upstream, upstream → client]
    dirs: [Dir; 2],
    /// An event reported the peer's FIN on [client, upstream] (kept: a later event for the
    /// other socket may be the one that drains this one).
    hup: [bool; 2],
}

enum Step {
    Open,
    Close,
}

fn main() {
    let opts = parse();
    let mode = Mode {
        splice: opts.splice,
        buf: opts.buf,
        pipe: opts.pipe,
    };
    let mut threads = Vec::new();
    for _ in 1..opts.threads {
        let maps = opts.maps.clone();
        threads.push(std::thread::spawn(move || run(&maps, mode)));
    }
    run(&opts.maps, mode);
}

fn parse() -> Opts {
    let mut o = Opts {
        maps: Vec::new(),
        threads: 1,
        splice: false,
        buf: 64 * 1024,
        pipe: 256 * 1024,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        // `--opt value` or `--opt=value`.
        let (a, mut inline) = match arg.split_once('=') {
            Some((a, v)) if a.starts_with("--") => (a.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut val = || {
            inline
                .take()
                .or_else(|| args.next())
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--map" => {
                let v = val();
                let (l, u) = v
                    .split_once('=')
                    .unwrap_or_else(|| usage("--map LISTEN=UPSTREAM"));
                o.maps.push((port(l), port(u)));
            }
            "--threads" => o.threads = val().parse().unwrap_or_else(|_| usage("--threads N")),
            "--buf" => o.buf = val().parse().unwrap_or_else(|_| usage("--buf BYTES")),
            "--pipe" => o.pipe = val().parse().unwrap_or_else(|_| usage("--pipe BYTES")),
            "--splice" => o.splice = true,
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    if o.maps.is_empty() || o.threads == 0 || o.buf == 0 {
        usage("at least one --map, --threads >= 1, --buf >= 1");
    }
    o
}

fn port(s: &str) -> u16 {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a port: {s}")))
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "floor: {msg}\nusage: floor --map LISTEN=UPSTREAM [--map ...] [--threads N] [--splice] [--buf BYTES] [--pipe BYTES]"
    );
    std::process::exit(2)
}

fn check(r: c_int, what: &str) -> c_int {
    if r < 0 {
        eprintln!("floor: {what}: {}", Error::last_os_error());
        std::process::exit(1);
    }
    r
}

fn errno() -> i32 {
    Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn loopback(port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut a: libc::sockaddr_in = unsafe { zeroed() };
    a.sin_family = libc::AF_INET as libc::sa_family_t;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    a
}

fn set_int(fd: c_int, level: c_int, opt: c_int, v: c_int) {
    // SAFETY: a valid pointer to a c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const c_int).cast(),
            size_of::<c_int>() as u32,
        )
    };
    check(r, "setsockopt");
}

fn listener(port: u16) -> c_int {
    // SAFETY: plain syscalls on a descriptor this function owns.
    unsafe {
        let fd = check(
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            ),
            "socket",
        );
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
        set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1);
        // Accepted sockets inherit it.
        set_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        let a = loopback(port);
        check(
            libc::bind(
                fd,
                (&a as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            ),
            "bind",
        );
        check(libc::listen(fd, 4096), "listen");
        fd
    }
}

fn ctl(ep: c_int, op: c_int, fd: c_int, events: u32, token: u64) {
    let mut ev = epoll_event { events, u64: token };
    // SAFETY: a valid epoll_event.
    check(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }, "epoll_ctl");
}

/// One thread's loop: its own epoll and listeners.
fn run(maps: &[(u16, u16)], mode: Mode) {
    // SAFETY: plain syscall.
    let ep = check(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    );
    let mut ups = Vec::new();
    for (i, &(l, u)) in maps.iter().enumerate() {
        let fd = listener(l);
        ctl(
            ep,
            libc::EPOLL_CTL_ADD,
            fd,
            libc::EPOLLIN as u32,
            LISTENER | i as u64,
        );
        ups.push((fd, loopback(u)));
    }
    let mut conns: Vec<Option<Box<Conn>>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    // SAFETY: epoll_event is plain old data.
    let mut events: Vec<epoll_event> = vec![unsafe { zeroed() }; 256];
    loop {
        // SAFETY: the buffer holds events.len() entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as c_int, -1) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            check(n, "epoll_wait");
        }
        for ev in &events[..n as usize] {
            let (token, flags) = (ev.u64, ev.events);
            if token & LISTENER != 0 {
                let (lfd, up) = ups[(token & !LISTENER) as usize];
                accept_all(ep, lfd, &up, &mut conns, &mut free);
                continue;
            }
            let (slot, side) = ((token >> 1) as usize, (token & 1) as usize);
            let Some(conn) = conns.get_mut(slot).and_then(|c| c.as_mut()) else {
                continue;
            };
            let hup = flags & (libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP) as u32 != 0;
            let readable = hup || flags & libc::EPOLLIN as u32 != 0;
            let writable = flags & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            conn.hup[side] |= hup;
            let mut step = Step::Open;
            // Readable side `side`: move its direction; writable: the direction into it, if it
            // waits to write (else its source's own edges drive it).
            if readable {
                step = pump(conn, side, mode);
            }
            if matches!(step, Step::Open) && writable && conn.dirs[1 - side].pending() {
                step = pump(conn, 1 - side, mode);
            }
            if matches!(step, Step::Close) {
                if let Some(c) = conns[slot].take() {
                    close_conn(c);
                }
                free.push(slot);
            }
        }
    }
}

fn accept_all(
    ep: c_int,
    lfd: c_int,
    up: &libc::sockaddr_in,
    conns: &mut Vec<Option<Box<Conn>>>,
    free: &mut Vec<usize>,
) {
    loop {
        // SAFETY: plain syscalls on descriptors this loop owns.
        let cfd = unsafe {
            libc::accept4(
                lfd,
                null_mut(),
                null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if cfd < 0 {
            return; // EAGAIN (or a client gone before accept: next event)
        }
        let ufd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if ufd < 0 {
            unsafe { libc::close(cfd) };
            continue;
        }
        set_int(ufd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        let r = unsafe {
            libc::connect(
                ufd,
                (up as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if r < 0 && errno() != libc::EINPROGRESS {
            unsafe {
                libc::close(ufd);
                libc::close(cfd);
            }
            continue;
        }
        let slot = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        conns[slot] = Some(Box::new(Conn {
            fds: [cfd, ufd],
            dirs: Default::default(),
            hup: [false; 2],
        }));
        let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        ctl(ep, libc::EPOLL_CTL_ADD, cfd, ev, (slot as u64) << 1);
        ctl(ep, libc::EPOLL_CTL_ADD, ufd, ev, ((slot as u64) << 1) | 1);
    }
}

thread_local! {
    /// read/write buffers of closed connections, for the next ones (no malloc or brk per
    /// connection).
    static POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn close_conn(c: Box<Conn>) {
    let mut c = c;
    for d in &mut c.dirs {
        let buf = std::mem::take(&mut d.buf);
        if !buf.is_empty() {
            POOL.with(|p| p.borrow_mut().push(buf));
        }
    }
    // SAFETY: descriptors owned by this connection, closed once.
    unsafe {
        for fd in c.fds {
            libc::close(fd);
        }
        for d in &c.dirs {
            if let Some([r, w]) = d.pipe {
                libc::close(r);
                libc::close(w);
            }
        }
    }
}

impl Dir {
    /// Bytes read and not yet written.
    fn pending(&self) -> bool {
        self.end > self.start || self.in_pipe > 0
    }
}

/// Moves direction `src` (from `fds[src]` to `fds[1 - src]`) until its source or its
/// destination would block (after the source's peer closed, a short read was its last data);
/// passes an EOF on once everything before it was written: `shutdown` for the first
/// direction to end, `Close` for the second.
fn pump(c: &mut Conn, src: usize, mode: Mode) -> Step {
    let (from, to, hup) = (c.fds[src], c.fds[1 - src], c.hup[src]);
    let other_done = c.dirs[1 - src].done;
    let d = &mut c.dirs[src];
    if d.done {
        return Step::Open;
    }
    let moved = if mode.splice {
        splice_dir(d, from, to, mode.pipe)
    } else {
        copy_dir(d, from, to, mode.buf, hup)
    };
    if let Err(e) = moved {
        if e != EAGAIN {
            return Step::Close;
        }
    }
    if d.eof && !d.pending() {
        if other_done {
            return Step::Close; // the close sends the FIN
        }
        // SAFETY: a socket this connection owns.
        unsafe { libc::shutdown(to, libc::SHUT_WR) };
        d.done = true;
    }
    Step::Open
}

/// read/write: write what is buffered, read more, until EAGAIN, EOF or a short read (the
/// socket drained: its next data is a new edge; with `hup` there is none, it was the EOF).
/// Err(errno).
fn copy_dir(d: &mut Dir, from: c_int, to: c_int, size: usize, hup: bool) -> Result<(), i32> {
    if d.buf.is_empty() {
        d.buf = POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| vec![0; size]);
    }
    let mut drained = false;
    loop {
        while d.start < d.end {
            // SAFETY: the range is inside the buffer.
            let n = unsafe {
                libc::write(
                    to,
                    d.buf[d.start..].as_ptr().cast::<c_void>(),
                    d.end - d.start,
                )
            };
            if n < 0 {
                return Err(errno());
            }
            d.start += n as usize;
        }
        d.start = 0;
        d.end = 0;
        if drained && hup {
            d.eof = true;
        }
        if d.eof || drained {
            return Ok(());
        }
        // SAFETY: the buffer holds d.buf.len() bytes.
        let n = unsafe { libc::read(from, d.buf.as_mut_ptr().cast::<c_void>(), d.buf.len()) };
        match n {
            0 => d.eof = true,
            n if n < 0 => return Err(errno()),
            n => {
                d.end = n as usize;
                drained = d.end < d.buf.len();
            }
        }
    }
}

/// splice: source → pipe → destination, until EAGAIN or EOF (a short splice does not say the
/// socket drained: a full pipe also cuts it short). Err(errno).
fn splice_dir(d: &mut Dir, from: c_int, to: c_int, pipe: usize) -> Result<(), i32> {
    let [r, w] = match d.pipe {
        Some(p) => p,
        None => {
            let mut p = [0; 2];
            // SAFETY: room for two descriptors.
            if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
                return Err(errno());
            }
            // SAFETY: a pipe this connection owns; a refused size keeps the default.
            unsafe { libc::fcntl(p[1], libc::F_SETPIPE_SZ, pipe as c_int) };
            d.pipe = Some(p);
            p
        }
    };
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    loop {
        while d.in_pipe > 0 {
            // SAFETY: descriptors this connection owns.
            let n = unsafe { libc::splice(r, null_mut(), to, null_mut(), d.in_pipe, flags) };
            if n < 0 {
                return Err(errno());
            }
            d.in_pipe -= n as usize;
        }
        if d.eof {
            return Ok(());
        }
        // SAFETY: as above.
        let n = unsafe { libc::splice(from, null_mut(), w, null_mut(), 1 << 20, flags) };
        match n {
            0 => d.eof = true,
            n if n < 0 => return Err(errno()),
            n => d.in_pipe = n as usize,
        }
    }
}
