//! `Device::IvshmemDoorbell` against real QEMU, with a minimal stand-in for
//! an ivshmem server (QEMU docs/specs/ivshmem-spec.rst): it serves one client
//! the protocol version, its id, the shared memory and one eventfd per vector.
//! The project's own rendezvous server has its own tests; this one only
//! proves the harness wires the device up the way QEMU expects.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ivc_guest_harness::{require_guest_env, Device, Guest, GuestSpec, ScratchDir};

const VECTORS: u32 = 2;
const SHM_SIZE: u64 = 1 << 20;

/// Sends one protocol message: a little-endian int64, with `fd` attached by
/// SCM_RIGHTS when given.
fn send_msg(sock: &UnixStream, value: i64, fd: Option<RawFd>) -> io::Result<()> {
    let mut data = value.to_le_bytes();
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is a valid "no name, no control" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        assert!(space <= std::mem::size_of_val(&control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `space` writable, aligned bytes, so
        // the first header and its data (one fd) lie inside the buffer.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: msg and everything it points to live until sendmsg returns.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) };
    if n == data.len() as isize {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes plain integers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Serves one client, then keeps the connection open until `done` fires
/// (QEMU treats a closed server socket as the server going away). Gives up
/// when `done` fires before a client came.
fn serve_one(listener: UnixListener, shm: File, done: mpsc::Receiver<()>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let sock = loop {
        match listener.accept() {
            Ok((sock, _)) => break sock,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if done.recv_timeout(Duration::from_millis(20)).is_ok() {
                    return Err(io::Error::other("no client connected"));
                }
            }
            Err(e) => return Err(e),
        }
    };
    sock.set_nonblocking(false)?;
    const PEER_ID: i64 = 0;
    send_msg(&sock, 0, None)?; // protocol version
    send_msg(&sock, PEER_ID, None)?; // the client's id
    send_msg(&sock, -1, Some(shm.as_raw_fd()))?; // the shared memory
    let mut vectors = Vec::new();
    for _ in 0..VECTORS {
        let efd = eventfd()?;
        send_msg(&sock, PEER_ID, Some(efd.as_raw_fd()))?; // own doorbells
        vectors.push(efd);
    }
    let _ = done.recv_timeout(Duration::from_secs(300));
    Ok(())
}

#[test]
fn ivshmem_doorbell_connects_to_the_server() {
    let Some(artifacts) = require_guest_env() else {
        return;
    };
    let scratch = ScratchDir::new().expect("scratch");
    let socket = scratch.join("ivshmem.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let shm = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(scratch.join("shm"))
        .expect("shm file");
    shm.set_len(SHM_SIZE).expect("size");
    let (done_tx, done_rx) = mpsc::channel();
    let server = thread::spawn(move || serve_one(listener, shm, done_rx));

    // BAR1 is the MSI-X table: present only on the doorbell variant.
    let probe = r#"for d in /sys/bus/pci/devices/*; do
        if [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ]; then
            set -- $(sed -n 2p $d/resource); bar1=$(( $2 - $1 + 1 ))
            set -- $(sed -n 3p $d/resource); bar2=$(( $2 - $1 + 1 ))
            echo "ivshmem-doorbell bar1=$bar1 bar2=$bar2"
            found=1
        fi
    done
    [ -n "$found" ]"#;
    let spec = GuestSpec::new("doorbell", probe)
        .device(Device::IvshmemDoorbell {
            socket,
            vectors: VECTORS,
        })
        .timeout(Duration::from_secs(90));
    let outcome = Guest::spawn(&artifacts, spec)
        .expect("spawn")
        .wait()
        .expect("wait");
    let _ = done_tx.send(());
    server.join().expect("server thread").expect("server");
    outcome.assert_success();
    let line = outcome
        .serial
        .lines()
        .find(|l| l.starts_with("ivshmem-doorbell"))
        .unwrap_or_else(|| panic!("no device\n{}", outcome.report()));
    assert!(line.ends_with(&format!("bar2={SHM_SIZE}")), "{line}");
    assert!(!line.contains("bar1=0 "), "no MSI-X BAR: {line}");
}
