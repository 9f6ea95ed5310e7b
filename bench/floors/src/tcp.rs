//! TCP over loopback between two processes (127.0.0.1 only): what a user
//! would pick instead of an ivc channel, measured the same way as the
//! channels: ping-pong round trips of one message size through an echoing
//! peer, and one-way transfers in fixed-size `write` calls ending with a
//! one-byte acknowledgement.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::fork::{spawn_pinned, Child, CpuPair, Pinned};
use crate::model::{ns, Latency, Throughput};

/// The largest message or packet.
pub const MAX_SIZE: usize = 1 << 20;

/// A connected pair: the parent's end and the child's end.
fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

/// Raw `read`, retried on EINTR; async-signal-safe.
fn raw_read(fd: libc::c_int, buf: &mut [u8]) -> isize {
    loop {
        // SAFETY: reads into a valid, writable buffer of the given length.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: reads the calling thread's errno.
        if r >= 0 || unsafe { *libc::__errno_location() } != libc::EINTR {
            return r;
        }
    }
}

/// Raw write of all of `buf`; async-signal-safe.
fn raw_write_all(fd: libc::c_int, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: writes from a valid buffer of the given length.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r <= 0 {
            // SAFETY: reads the calling thread's errno.
            if r < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                continue;
            }
            return false;
        }
        buf = &buf[r as usize..];
    }
    true
}

/// Forks the child end: `echo` sends every byte back; otherwise it counts
/// bytes until end of file and answers with one byte.
fn spawn_peer(cpu: usize, end: TcpStream, buf: &mut [u8], echo: bool) -> io::Result<Child> {
    let fd = end.as_raw_fd();
    // SAFETY: the child only does read/write system calls on a socket and a
    // buffer the parent allocated.
    let child = unsafe {
        spawn_pinned(cpu, || loop {
            let n = raw_read(fd, buf);
            if n < 0 {
                return 1;
            }
            if n == 0 {
                if !echo && !raw_write_all(fd, &[1]) {
                    return 2;
                }
                return 0;
            }
            if echo && !raw_write_all(fd, &buf[..n as usize]) {
                return 2;
            }
        })
    }?;
    // The parent's copy of the child's end: closing it leaves the socket to
    // the child.
    drop(end);
    Ok(child)
}

/// Round-trip latency for each message size, about `budget` per size.
pub fn latency(
    cpus: CpuPair,
    sizes: &[usize],
    budget: Duration,
    min_samples: usize,
) -> io::Result<Vec<Latency>> {
    let (mut near, far) = pair()?;
    let mut peer_buf = vec![0u8; MAX_SIZE];
    let child = spawn_peer(cpus.b, far, &mut peer_buf, true)?;
    let _pinned = Pinned::to(cpus.a)?;
    near.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = Vec::new();
    let mut back = vec![0u8; MAX_SIZE];
    for &size in sizes {
        let size = size.clamp(1, MAX_SIZE);
        let msg: Vec<u8> = (0..size).map(|i| (i * 7 + 1) as u8).collect();
        let mut samples = Vec::new();
        let start = Instant::now();
        for i in 0.. {
            if i >= 5 + min_samples && start.elapsed() >= budget {
                break;
            }
            let t0 = Instant::now();
            near.write_all(&msg)?;
            near.read_exact(&mut back[..size])?;
            if i >= 5 {
                samples.push(ns(t0.elapsed()));
            }
            if back[..size] != msg[..] {
                return Err(io::Error::other("TCP echo returned different bytes"));
            }
        }
        if let Some(l) = Latency::from_samples(size as u64, 1, &mut samples) {
            out.push(l);
        }
    }
    near.shutdown(Shutdown::Write)?;
    child.wait(Duration::from_secs(10))?;
    Ok(out)
}

/// One-way throughput for each packet size: up to `total` bytes or about
/// `budget`, whichever comes first, then end of file and the peer's
/// acknowledgement.
pub fn throughput(
    cpus: CpuPair,
    packets: &[usize],
    total: u64,
    budget: Duration,
) -> io::Result<Vec<Throughput>> {
    let mut out = Vec::new();
    let mut peer_buf = vec![0u8; MAX_SIZE];
    let data = vec![0xa5u8; MAX_SIZE];
    for &packet in packets {
        let packet = packet.clamp(1, MAX_SIZE);
        let (mut near, far) = pair()?;
        let child = spawn_peer(cpus.b, far, &mut peer_buf, false)?;
        let _pinned = Pinned::to(cpus.a)?;
        near.set_read_timeout(Some(Duration::from_secs(10)))?;
        let start = Instant::now();
        let mut sent = 0u64;
        let mut calls = 0u32;
        while sent < total {
            let n = packet.min((total - sent) as usize);
            near.write_all(&data[..n])?;
            sent += n as u64;
            calls = calls.wrapping_add(1);
            // Checking the clock every call would cost more than a 1-byte
            // write's share of the work.
            if calls % 256 == 0 && start.elapsed() >= budget {
                break;
            }
        }
        near.shutdown(Shutdown::Write)?;
        let mut ack = [0u8; 1];
        near.read_exact(&mut ack)?;
        let elapsed = start.elapsed();
        child.wait(Duration::from_secs(10))?;
        out.push(Throughput::new(packet as u64, sent, elapsed));
    }
    Ok(out)
}
