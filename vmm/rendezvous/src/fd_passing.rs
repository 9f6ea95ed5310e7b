//! Sending and receiving bytes with file descriptors attached (`SCM_RIGHTS`).
//!
//! std has no stable API for ancillary data, so this is the one place that
//! talks to `sendmsg`/`recvmsg` directly. Every descriptor that arrives is
//! wrapped in an [`OwnedFd`] before anything else happens, so an error path
//! can never leak one.
//!
//! We keep this rather than vmm-sys-util's `ScmSocket`, which the crate
//! already depends on, because `ScmSocket` would not be simpler here: its
//! `recv_with_fds` is `unsafe` and hands back raw descriptors (each needs an
//! `unsafe` wrap into `OwnedFd` again), passes no `recvmsg` flags (no
//! `MSG_DONTWAIT` for the client's polling reads, no `MSG_CMSG_CLOEXEC`, so
//! a descriptor could leak into a child spawned in between), and on
//! `MSG_CTRUNC` closes what arrived and returns `ENOBUFS`, where the client
//! reports the truncation as its own protocol error. Its send side alone
//! would fit, but one module for both directions keeps the cmsg code in one
//! place.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// Most descriptors one `recv_with_fds` call can take. The protocol sends at
/// most one per message; room for more lets us *see* a server that sends
/// several (and reject it) instead of having the kernel silently drop them.
pub const MAX_RECV_FDS: usize = 8;

const FD_SIZE: usize = mem::size_of::<libc::c_int>();

/// Bytes of control buffer needed for `n` descriptors (`n <= MAX_RECV_FDS`).
// reason: every caller passes at most MAX_RECV_FDS (8), so n * FD_SIZE is at
// most 32 and fits a c_uint.
#[allow(clippy::cast_possible_truncation)]
fn cmsg_space(n: usize) -> usize {
    debug_assert!(n <= MAX_RECV_FDS);
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument (it is only
    // `unsafe` in libc's signature).
    unsafe { libc::CMSG_SPACE((n * FD_SIZE) as libc::c_uint) as usize }
}

/// Length of a cmsghdr carrying `n` descriptors (`n <= MAX_RECV_FDS`).
// reason: as for cmsg_space, n * FD_SIZE is at most 32.
#[allow(clippy::cast_possible_truncation)]
fn cmsg_len(n: usize) -> usize {
    debug_assert!(n <= MAX_RECV_FDS);
    // SAFETY: as for cmsg_space, pure arithmetic.
    unsafe { libc::CMSG_LEN((n * FD_SIZE) as libc::c_uint) as usize }
}

/// A control buffer aligned for `cmsghdr` (u64 words), big enough for
/// MAX_RECV_FDS descriptors.
type ControlBuffer = [u64; 16];

/// Sends `data`, with `fds` attached (the protocol uses zero or one), as one
/// `sendmsg` call.
///
/// Uses `MSG_NOSIGNAL` so that writing to a client that has gone away gives
/// `EPIPE` instead of killing the process with SIGPIPE (a library must not
/// depend on the host program ignoring that signal). Returns the number of
/// bytes sent; the descriptors, if any, travel with the first byte.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.len() > MAX_RECV_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors",
        ));
    }
    let mut control: ControlBuffer = [0; 16];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let space = cmsg_space(fds.len());
        debug_assert!(space <= mem::size_of::<ControlBuffer>());
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `control`, which is aligned for
        // cmsghdr and at least msg_controllen bytes long, so CMSG_FIRSTHDR
        // returns a pointer to a whole cmsghdr inside it (checked non-null),
        // and CMSG_DATA points at room for fds.len() c_ints within `space`.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            if cmsg.is_null() {
                return Err(io::Error::other("control buffer too small"));
            }
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = cmsg_len(fds.len()) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
            for (i, fd) in fds.iter().enumerate() {
                ptr::write_unaligned(data.add(i), fd.as_raw_fd());
            }
        }
    }
    loop {
        // SAFETY: msg and everything it points to (iov -> data, control)
        // live until the call returns; the kernel only reads them.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        // Negative (-1) is the error case, handled below.
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// What one `recv_with_fds` call got.
#[derive(Debug, Default)]
pub struct Received {
    /// Bytes placed at the start of the buffer; 0 means end of stream.
    pub len: usize,
    /// Descriptors that came with them (close-on-exec, owned by us).
    pub fds: Vec<OwnedFd>,
    /// The kernel had to drop descriptors (`MSG_CTRUNC`): our buffer was too
    /// small or we are out of descriptors. The protocol state is then
    /// unknowable.
    pub control_truncated: bool,
}

/// Receives up to `buf.len()` bytes and any descriptors sent with them.
///
/// `flags` is passed to `recvmsg` (e.g. `MSG_DONTWAIT`); `MSG_CMSG_CLOEXEC`
/// is always added so that descriptors never leak into child processes.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<Received> {
    let mut control: ControlBuffer = [0; 16];
    let control_len = cmsg_space(MAX_RECV_FDS).min(mem::size_of::<ControlBuffer>());
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control_len as _;

    let n = loop {
        // SAFETY: msg points at iov (-> buf, writable for iov_len bytes) and
        // at `control` (writable for msg_controllen bytes), all of which
        // outlive the call.
        let n =
            unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
        // Negative (-1) is the error case, handled below.
        if let Ok(n) = usize::try_from(n) {
            break n;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };

    let mut received = Received {
        len: n,
        fds: Vec::new(),
        control_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    };
    let base = control.as_ptr() as usize;
    let end = base + (msg.msg_controllen as usize).min(control_len);
    // SAFETY: msg.msg_control/msg_controllen describe `control` as updated by
    // the kernel; CMSG_FIRSTHDR returns null or a header inside it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: cmsg is non-null and CMSG_FIRSTHDR/CMSG_NXTHDR only return
        // pointers to headers that lie within the control buffer.
        let header: libc::cmsghdr = unsafe { ptr::read_unaligned(cmsg) };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: cmsg points at a valid header (see above); CMSG_DATA
            // only computes an address.
            let data = unsafe { libc::CMSG_DATA(cmsg) } as usize;
            let payload = (header.cmsg_len as usize).saturating_sub(cmsg_len(0));
            // Never trust the length beyond the end of our own buffer.
            let count = (payload / FD_SIZE).min(end.saturating_sub(data) / FD_SIZE);
            for i in 0..count {
                // SAFETY: data + i * FD_SIZE + FD_SIZE <= end, i.e. inside
                // `control`, which is initialized memory.
                let raw: RawFd =
                    unsafe { ptr::read_unaligned((data as *const libc::c_int).add(i)) };
                if raw >= 0 {
                    // SAFETY: the kernel has just installed this descriptor in
                    // our table for us; nothing else refers to it, so taking
                    // ownership is sound and guarantees it gets closed.
                    received.fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        // SAFETY: msg describes the control buffer and cmsg is a header in
        // it; CMSG_NXTHDR returns the next header inside it or null.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid array of two c_ints for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0);
        // SAFETY: pipe2 succeeded, so both descriptors are fresh and ours.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    #[test]
    fn bytes_without_fd() {
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(send_with_fds(a.as_fd(), b"12345678", &[]).unwrap(), 8);
        let mut buf = [0; 8];
        let r = recv_with_fds(b.as_fd(), &mut buf, 0).unwrap();
        assert_eq!(r.len, 8);
        assert!(r.fds.is_empty());
        assert!(!r.control_truncated);
        assert_eq!(&buf, b"12345678");
    }

    #[test]
    fn fd_arrives_and_refers_to_the_same_file() {
        let (a, b) = UnixStream::pair().unwrap();
        let (rd, mut wr) = pipe();
        send_with_fds(a.as_fd(), &[7; 8], &[rd.as_fd()]).unwrap();
        drop(rd);
        let mut buf = [0; 8];
        let r = recv_with_fds(b.as_fd(), &mut buf, 0).unwrap();
        assert_eq!(r.len, 8);
        assert_eq!(r.fds.len(), 1);
        let flags = {
            // SAFETY: F_GETFD on a descriptor we own.
            unsafe { libc::fcntl(r.fds[0].as_raw_fd(), libc::F_GETFD) }
        };
        assert_eq!(
            flags & libc::FD_CLOEXEC,
            libc::FD_CLOEXEC,
            "received fds are close-on-exec"
        );
        wr.write_all(b"x").unwrap();
        let mut got = [0; 1];
        std::fs::File::from(r.fds.into_iter().next().unwrap())
            .read_exact(&mut got)
            .unwrap();
        assert_eq!(&got, b"x");
    }

    #[test]
    fn fds_stay_with_their_message() {
        // Reading 8 bytes at a time never merges two messages' descriptors.
        let (a, b) = UnixStream::pair().unwrap();
        let (rd, _wr) = pipe();
        send_with_fds(a.as_fd(), &[1; 8], &[]).unwrap();
        send_with_fds(a.as_fd(), &[2; 8], &[rd.as_fd()]).unwrap();
        send_with_fds(a.as_fd(), &[3; 8], &[]).unwrap();
        let mut buf = [0; 8];
        let counts: Vec<(u8, usize)> = (0..3)
            .map(|_| {
                let r = recv_with_fds(b.as_fd(), &mut buf, 0).unwrap();
                assert_eq!(r.len, 8);
                (buf[0], r.fds.len())
            })
            .collect();
        assert_eq!(counts, vec![(1, 0), (2, 1), (3, 0)]);
    }

    #[test]
    fn several_fds_in_one_message_all_arrive_owned() {
        let (a, b) = UnixStream::pair().unwrap();
        let (rd, wr) = pipe();
        send_with_fds(a.as_fd(), &[9; 8], &[rd.as_fd(), wr.as_fd(), rd.as_fd()]).unwrap();
        let mut buf = [0; 8];
        let r = recv_with_fds(b.as_fd(), &mut buf, 0).unwrap();
        assert_eq!(r.fds.len(), 3);
        assert!(!r.control_truncated);
    }

    #[test]
    fn end_of_stream_is_zero_length() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let mut buf = [0; 8];
        let r = recv_with_fds(b.as_fd(), &mut buf, 0).unwrap();
        assert_eq!(r.len, 0);
    }

    #[test]
    fn dontwait_on_empty_socket_would_block() {
        let (_a, b) = UnixStream::pair().unwrap();
        let mut buf = [0; 8];
        let err = recv_with_fds(b.as_fd(), &mut buf, libc::MSG_DONTWAIT).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn send_to_closed_peer_is_epipe_not_sigpipe() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let err = send_with_fds(a.as_fd(), &[0; 8], &[]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE));
    }
}
