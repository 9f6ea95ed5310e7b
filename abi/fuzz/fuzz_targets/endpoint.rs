//! Drives endpoints over arbitrary shared-memory contents.
//!
//! Input: byte 0 selects the setup (raw memory from the input vs. a valid
//! format with attached endpoints); the rest is a script that interleaves
//! endpoint calls with arbitrary writes to shared memory. Checked: no panic,
//! no out-of-bounds access (AtomicMem is bounds-checked; a bug would be an
//! `Err(OutOfBounds)` mapped to Corrupted or a panic in slicing), counts
//! never exceed the buffers, and a latched error stays latched.
#![no_main]

use std::sync::atomic::AtomicU32;

use ivc_abi::{
    AtomicMem, AttachOptions, ChannelError, Endpoint, FormatOptions, SharedMemory,
};
use libfuzzer_sys::fuzz_target;

const REGION: usize = 8192;

struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }
}

fn check_latched(ep: &Endpoint<AtomicMem<'_>>, before: Option<ChannelError>) {
    if let Some(e) = before {
        assert_eq!(ep.broken(), Some(e), "latched error changed");
    }
}

fuzz_target!(|data: &[u8]| {
    let words: Vec<AtomicU32> = (0..REGION / 4).map(|_| AtomicU32::new(0)).collect();
    let mem = AtomicMem::from_words(&words);
    let mut s = Script(data);
    let Some(mode) = s.byte() else { return };
    // 64 B (the smallest ring of layout version 2) to 2 KiB: two rings
    // after the 4 KiB control area still fit the region.
    let ring = 64u32 << ((mode >> 4 & 7) % 6);
    let fo = FormatOptions {
        ring_size: Some(ring),
        index_base: if mode & 8 != 0 { u32::MAX - 7 } else { 0 },
    };
    let o = AttachOptions {
        doorbell_id: Some(1),
        format: Some(fo),
    };
    if mode & 1 != 0 {
        // Arbitrary memory: the next bytes become the start of the region.
        let n = usize::from(s.byte().unwrap_or(0)) * 8;
        let mut raw = Vec::with_capacity(n);
        for _ in 0..n {
            raw.push(s.byte().unwrap_or(0));
        }
        let _ = mem.write_bytes(0, &raw);
    } else {
        let _ = ivc_abi::format(&mem, &fo);
    }
    let mut eps: [Option<Endpoint<AtomicMem<'_>>>; 2] = [None, None];
    for (slot, ep) in eps.iter_mut().enumerate() {
        if mode & (2 << slot) != 0 || mode & 1 == 0 {
            *ep = Endpoint::attach_with(mem, slot as u32, &o).ok();
        }
    }
    let mut buf = [0u8; 300];
    while let Some(op) = s.byte() {
        let which = usize::from(op >> 7);
        match op & 15 {
            0 | 1 => {
                // Scribble a control word (most damage) or anywhere.
                let Some(off) = s.u16() else { break };
                let Some(v) = s.u32() else { break };
                let off = if op & 1 == 0 { usize::from(off) % 0x200 } else { usize::from(off) };
                let _ = mem.store_u32_relaxed(off & !3, v);
            }
            2 => {
                // Scribble bytes (ring data or anything).
                let Some(off) = s.u16() else { break };
                let Some(b) = s.byte() else { break };
                let _ = mem.write_bytes(usize::from(off) % REGION, &[b; 3]);
            }
            3 | 4 => {
                let n = usize::from(s.byte().unwrap_or(0));
                if let Some(ep) = eps[which].as_mut() {
                    let before = ep.broken();
                    let r = if op & 15 == 3 { ep.write(&buf[..n]) } else { ep.read(&mut buf[..n]) };
                    if let Ok(k) = r {
                        assert!(k <= n);
                    }
                    if let Some(e) = before {
                        assert_eq!(r, Err(e));
                    }
                    check_latched(ep, before);
                }
            }
            5 => {
                if let Some(ep) = eps[which].as_mut() {
                    let before = ep.broken();
                    let m = u32::from(s.byte().unwrap_or(0));
                    let _ = ep.arm_read_wakeup(m);
                    let _ = ep.arm_write_wakeup(m);
                    check_latched(ep, before);
                }
            }
            6 => {
                if let Some(ep) = eps[which].as_mut() {
                    let before = ep.broken();
                    let _ = ep.peer_state();
                    let _ = ep.readable_bytes();
                    let _ = ep.writable_bytes();
                    let _ = ep.needs_doorbell();
                    let _ = ep.peer_doorbell_id();
                    let _ = ep.heartbeat();
                    check_latched(ep, before);
                }
            }
            7 => {
                if let Some(ep) = eps[which].as_mut() {
                    let _ = ep.set_wants_read_wakeup(false);
                    let _ = ep.set_wants_write_wakeup(false);
                    let _ = ep.reconnect();
                }
            }
            8 => {
                // Close, or crash (forget), then re-attach.
                if let Some(ep) = eps[which].take() {
                    if op & 16 != 0 {
                        std::mem::forget(ep);
                    }
                }
                eps[which] = Endpoint::attach_with(mem, which as u32, &o).ok();
            }
            9 => {
                let _ = ivc_abi::format(&mem, &fo);
            }
            10 => {
                let _ = ivc_abi::mark_absent(&mem, which as u32);
            }
            11 => {
                eps[which] = Endpoint::attach_any(mem, &o).ok();
            }
            _ => {
                // Fill the buffer with a pattern for the next writes.
                let b = s.byte().unwrap_or(0);
                buf.iter_mut().for_each(|x| *x = b);
            }
        }
    }
});
