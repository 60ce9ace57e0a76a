//! The reactor on real loopback sockets, driven by its own thread (the library's mode).
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use futures_lite::future::block_on;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::rt::Async;

fn pair() -> (Async<TcpStream>, Async<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = block_on(Async::<TcpStream>::connect(l.local_addr().unwrap())).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, Async::new(b).unwrap())
}

#[test]
fn small_reads_of_a_big_write_drain_it_all() {
    // Edge-triggered: one edge for many bytes. Reading 7 bytes at a time must still see
    // every byte (a read that did not end in EAGAIN must not wait for another edge).
    let (a, b) = pair();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        block_on(async {
            let mut a = &a;
            a.write_all(&sent).await.unwrap();
            a.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
        })
    });
    let got = block_on(async {
        let mut got = Vec::new();
        let mut buf = [0u8; 7];
        let mut b = &b;
        loop {
            let n = b.read(&mut buf).await.unwrap();
            if n == 0 {
                break got;
            }
            got.extend_from_slice(&buf[..n]);
        }
    });
    writer.join().unwrap();
    assert_eq!(got, data);
}

#[test]
fn after_eagain_readiness_waits_for_new_bytes_and_sees_them() {
    let (a, b) = pair();
    block_on(async {
        let mut buf = [0u8; 16];
        let tick = b.read_tick();
        let e = b.get_ref().peek(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        b.read_drained(tick);
        let waker = futures_lite::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let mut cx = Context::from_waker(&waker);
        assert!(
            b.poll_readable(&mut cx).is_pending(),
            "ready with nothing new"
        );
        (&a).write_all(b"hello").await.unwrap();
        let start = Instant::now();
        b.readable().await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!((&b).read(&mut buf).await.unwrap(), 5);
    });
}

#[test]
fn reused_slots_do_not_take_a_closed_sockets_events() {
    // Open and close many sockets so slots are reused under new generations; each new
    // socket still gets its own readiness (the old keys' events, if any, are dropped).
    for _ in 0..2000 {
        let (a, b) = pair();
        drop(a);
        let mut buf = [0u8; 4];
        // The peer's close is an edge for `b`: EOF arrives.
        assert_eq!(block_on((&b).read(&mut buf)).unwrap(), 0);
    }
    let (a, b) = pair();
    block_on(async {
        (&a).write_all(b"ok").await.unwrap();
        let mut buf = [0u8; 2];
        (&b).read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
    });
    let slab = lock(&get().unwrap().slab);
    assert!(slab.slots.len() < 1000, "slots leak: {}", slab.slots.len());
}

#[test]
fn a_refused_connect_is_an_error_not_a_hang() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = block_on(Async::<TcpStream>::connect(port));
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Count(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Count {
    fn woken(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

#[test]
fn two_tasks_reading_one_socket_are_both_woken() {
    // `impl AsyncRead for &Async` lets two tasks read one socket. Both find it drained and
    // wait for its next read edge; the edge must wake both: each retries its read, one gets
    // the byte, the other its EAGAIN and waits again, and the next byte goes to that one.
    let (a, b) = pair();
    let (first, second) = (Arc::new(Count::default()), Arc::new(Count::default()));
    let (first_waker, second_waker) = (Waker::from(first.clone()), Waker::from(second.clone()));
    let mut cx1 = Context::from_waker(&first_waker);
    let mut cx2 = Context::from_waker(&second_waker);
    let (mut buf1, mut buf2) = ([0u8; 8], [0u8; 8]);
    let (mut r1, mut r2) = (&b, &b);
    let mut one = Box::pin(r1.read(&mut buf1));
    let mut two = Box::pin(r2.read(&mut buf2));
    assert!(one.as_mut().poll(&mut cx1).is_pending());
    assert!(two.as_mut().poll(&mut cx2).is_pending());
    let woken = |count: &Count| {
        let start = Instant::now();
        while !count.woken() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        count.woken()
    };
    block_on((&a).write_all(b"x")).unwrap();
    assert!(woken(&second), "the second reader was not woken");
    assert!(woken(&first), "the first reader was forgotten");
    assert!(matches!(one.as_mut().poll(&mut cx1), Poll::Ready(Ok(1))));
    assert!(
        two.as_mut().poll(&mut cx2).is_pending(),
        "nothing is left for it"
    );
    second.0.store(0, Ordering::SeqCst);
    block_on((&a).write_all(b"y")).unwrap();
    assert!(woken(&second), "the second reader was not woken again");
    assert!(matches!(two.as_mut().poll(&mut cx2), Poll::Ready(Ok(1))));
    drop((one, two));
    assert_eq!((buf1[0], buf2[0]), (b'x', b'y'));
}

#[test]
fn a_source_stays_small() {
    // Every socket holds one `Source` on the heap, an idle connection two: 104 bytes keep the
    // `Arc` (two counts more) in a 128-byte malloc chunk, as before the per-direction edge
    // counters (64-bit ticks made it 144, an inline waiter list 176).
    let size = std::mem::size_of::<Source>();
    assert!(size <= 104, "Source is {size} bytes");
}
