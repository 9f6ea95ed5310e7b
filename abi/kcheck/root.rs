//! Kernel-style build check (see check.sh): includes the channel exactly
//! the way the kernel module does — one `#[path]` line, no cargo — and
//! instantiates every public entry point so the optimised object can be
//! searched for panic paths.
#![no_std]
#![allow(dead_code)]

// Same allowances as the kernel module's include (guest-kmod/ivc.rs).
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../src/chan/mod.rs"]
mod ivc_abi;

use ivc_abi::{AtomicMem, AttachOptions, Endpoint, Readiness};

type Ep = Endpoint<AtomicMem<'static>>;

fn code<T>(r: Result<T, ivc_abi::ChannelError>) -> isize {
    match r {
        Ok(_) => 0,
        Err(_) => -5,
    }
}

/// Attaches an endpoint over `len` bytes at `p` into `out`.
///
/// # Safety
/// `p` must point to `len` bytes valid for `'static`; `out` must be
/// writable storage for one endpoint.
#[no_mangle]
pub unsafe extern "C" fn kc_attach(p: *mut u8, len: usize, slot: u32, out: *mut Ep) -> isize {
    // SAFETY: forwarded contract.
    let Some(mem) = (unsafe { AtomicMem::new(p, len) }) else {
        return -22;
    };
    match Endpoint::attach_with(mem, slot, &AttachOptions::default()) {
        Ok(ep) => {
            // SAFETY: caller provides storage for one endpoint.
            unsafe { out.write(ep) };
            0
        }
        Err(_) => -5,
    }
}

/// Writes `len` bytes at `p`.
///
/// # Safety
/// `p`/`len` must describe a readable buffer.
#[no_mangle]
pub unsafe extern "C" fn kc_write(ep: &mut Ep, p: *const u8, len: usize) -> isize {
    // SAFETY: forwarded contract.
    let buf = unsafe { core::slice::from_raw_parts(p, len) };
    match ep.write(buf) {
        Ok(n) => n as isize,
        Err(_) => -5,
    }
}

/// Reads up to `len` bytes into `p`.
///
/// # Safety
/// `p`/`len` must describe a writable buffer.
#[no_mangle]
pub unsafe extern "C" fn kc_read(ep: &mut Ep, p: *mut u8, len: usize) -> isize {
    // SAFETY: forwarded contract.
    let buf = unsafe { core::slice::from_raw_parts_mut(p, len) };
    match ep.read(buf) {
        Ok(n) => n as isize,
        Err(_) => -5,
    }
}

/// Calls every other endpoint method once.
#[no_mangle]
pub extern "C" fn kc_misc(ep: &mut Ep, min: u32) -> isize {
    let mut r: isize = 0;
    r = r.wrapping_add(code(ep.readable_bytes()));
    r = r.wrapping_add(code(ep.writable_bytes()));
    r = r.wrapping_add(code(ep.peer_state()));
    r = r.wrapping_add(code(ep.peer_doorbell_id()));
    r = r.wrapping_add(code(ep.peer_heartbeat()));
    r = r.wrapping_add(code(ep.heartbeat()));
    r = r.wrapping_add(code(ep.reconnect()));
    r = r.wrapping_add(match ep.arm_read_wakeup(min) {
        Ok(Readiness::Ready) => 1,
        _ => 0,
    });
    r = r.wrapping_add(code(ep.arm_write_wakeup(min)));
    r = r.wrapping_add(code(ep.set_wants_read_wakeup(false)));
    r = r.wrapping_add(code(ep.set_wants_write_wakeup(false)));
    r = r.wrapping_add(ep.needs_doorbell_after_write() as isize);
    r = r.wrapping_add(ep.needs_doorbell_after_read() as isize);
    r = r.wrapping_add(ep.needs_doorbell() as isize);
    r
}

/// Closes the endpoint.
#[no_mangle]
pub extern "C" fn kc_close(ep: &mut Ep) {
    ep.close();
}

/// Formats, marks a slot absent, or attaches to any slot.
///
/// # Safety
/// `p` must point to `len` bytes valid for `'static`.
#[no_mangle]
pub unsafe extern "C" fn kc_format(p: *mut u8, len: usize, any: bool) -> isize {
    // SAFETY: forwarded contract.
    let Some(mem) = (unsafe { AtomicMem::new(p, len) }) else {
        return -22;
    };
    let _ = ivc_abi::mark_absent(&mem, 1);
    if any {
        code(Endpoint::attach_any(mem, &AttachOptions::default()).map(|mut e| e.close()))
    } else {
        code(ivc_abi::format(&mem, &ivc_abi::FormatOptions::default()))
    }
}
