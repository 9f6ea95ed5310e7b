// SPDX-License-Identifier: GPL-2.0

//! The port-I/O transport (`ivc-pio`, ivc-vmm's own device).
//!
//! The channel endpoint lives in the VMM; the guest sees a register front
//! end (`crate::ivc_channel::pio`): it asks how many bytes it may move
//! (`RX_AVAIL`/`TX_FREE`) and moves them with one string instruction
//! (`rep insb`/`rep outsb`), which costs one VM exit per page. There are no
//! interrupts: waiters are served by the pipe's spinning and the poller, as
//! for polled shared memory.
//!
//! The register values come from the VMM, which is as untrusted as any other
//! device: counts are clamped to the caller's buffer, and a bad identity
//! refuses the device.

use core::sync::atomic::{AtomicBool, Ordering};

use kernel::{device::Device, prelude::*, revocable::Revocable, sync::aref::ARef};

use crate::ffi::IoRegion;
use crate::ivc_channel::pio::{
    CONTROL_CLEAR_ERROR, CONTROL_CLOSE, CONTROL_OPEN, CONTROL_RESUME, MAGIC, REG_CONTROL, REG_DATA,
    REG_ID, REG_RX_AVAIL, REG_STATUS, REG_TX_FREE, REG_VERSION, STATUS_CONNECTED, STATUS_ERROR,
    STATUS_PEER_GONE, STATUS_RX_READY, STATUS_TX_SPACE, VERSION,
};
use crate::transport::{ReadOutcome, Status};

/// Bytes moved per string instruction, each under its own access to the
/// registers: the access is an RCU read-side section, which must stay short
/// (outward string I/O costs one VM exit per 4 bytes).
const CHUNK: usize = 1024;

/// One ivc-pio channel.
///
/// The I/O BAR is revoked at removal (`shutdown`): every access goes
/// through the [`Revocable`], so a file kept open across an unbind gets
/// `ENODEV` and its last close does not write to a port that a new binding
/// may own by then.
pub(crate) struct PioTransport {
    regs: Pin<KBox<Revocable<IoRegion>>>,
    /// An end of file or `EPIPE` went to a user since the last
    /// `CONTROL_RESUME`: the device holds off a new peer until told.
    ended: AtomicBool,
    /// The PCI device, for `dev_*` log lines.
    dev: ARef<Device>,
}

const R: fn(u16) -> usize = |r| r as usize;

impl PioTransport {
    /// A transport over the device's I/O BAR; checks the identity registers.
    pub(crate) fn new(regs: IoRegion, dev: ARef<Device>) -> Result<Self> {
        let id = regs.read32(R(REG_ID))?;
        let version = regs.read32(R(REG_VERSION))?;
        if id != MAGIC || version != VERSION {
            dev_err!(
                dev,
                "ivc-pio: identity {:#x} version {} (expected {:#x} version {})\n",
                id,
                version,
                MAGIC,
                VERSION
            );
            return Err(ENODEV);
        }
        Ok(Self {
            regs: KBox::pin_init(Revocable::new(regs), GFP_KERNEL)?,
            ended: AtomicBool::new(false),
            dev,
        })
    }

    /// The PCI device.
    pub(crate) fn device(&self) -> &Device {
        &self.dev
    }

    /// Runs `f` on the registers while the device is bound; `ENODEV` after.
    fn with_regs<T>(&self, f: impl FnOnce(&IoRegion) -> Result<T>) -> Result<T> {
        self.regs.try_access_with(f).unwrap_or(Err(ENODEV))
    }

    /// First opener: join the channel.
    pub(crate) fn open(&self) -> Result {
        self.with_regs(|r| r.write32(R(REG_CONTROL), CONTROL_CLEAR_ERROR | CONTROL_OPEN))
    }

    /// A user call begins: after an end was reported to a user, tell the
    /// device that a new peer may connect (one exit, only then).
    pub(crate) fn resume(&self) {
        if self.ended.swap(false, Ordering::AcqRel) {
            let _ = self.with_regs(|r| r.write32(R(REG_CONTROL), CONTROL_RESUME));
        }
    }

    /// Last closer: leave the channel (nothing once the device is gone).
    pub(crate) fn release(&self) {
        let _ = self.with_regs(|r| r.write32(R(REG_CONTROL), CONTROL_CLOSE));
    }

    /// The device is being removed: leave the channel, then revoke the
    /// registers, waiting for every user of them to finish.
    pub(crate) fn shutdown(&self) {
        let _ = self.with_regs(|r| r.write32(R(REG_CONTROL), CONTROL_CLOSE));
        self.regs.revoke();
    }

    /// Non-blocking read.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> Result<ReadOutcome> {
        let (st, avail) = self.with_regs(|r| {
            let st = r.read32(R(REG_STATUS))?;
            let avail = r.read32(R(REG_RX_AVAIL))? as usize;
            Ok((st, avail))
        })?;
        if st & STATUS_ERROR != 0 {
            return Err(EIO);
        }
        if avail == 0 {
            return Ok(if st & STATUS_PEER_GONE != 0 {
                self.ended.store(true, Ordering::Release);
                ReadOutcome::Eof
            } else {
                ReadOutcome::Empty
            });
        }
        let n = avail.min(buf.len());
        let dst = buf.get_mut(..n).ok_or(EINVAL)?;
        let mut got = 0;
        for chunk in dst.chunks_mut(CHUNK) {
            // Revoked in the middle: what already came is delivered.
            match self.with_regs(|r| r.read_rep8(R(REG_DATA), chunk)) {
                Ok(()) => got += chunk.len(),
                Err(e) if got == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(ReadOutcome::Data(got))
    }

    /// Non-blocking write.
    pub(crate) fn try_write(&self, buf: &[u8]) -> Result<usize> {
        let (st, free) = self.with_regs(|r| {
            let st = r.read32(R(REG_STATUS))?;
            if st & (STATUS_ERROR | STATUS_PEER_GONE) != 0 {
                return Ok((st, 0));
            }
            Ok((st, r.read32(R(REG_TX_FREE))? as usize))
        })?;
        if st & STATUS_ERROR != 0 {
            return Err(EIO);
        }
        if st & STATUS_PEER_GONE != 0 {
            self.ended.store(true, Ordering::Release);
            return Err(EPIPE);
        }
        let n = free.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        // KVM batches `rep ins` (read-ahead) but exits once per element of
        // `rep outs`: move the bulk as dwords (4 bytes per exit), the tail as
        // bytes.
        let (bulk, tail) = buf.get(..n).ok_or(EINVAL)?.split_at(n - n % 4);
        let mut sent = 0;
        let chunks = Iterator::chain(bulk.chunks(CHUNK), Some(tail).filter(|t| !t.is_empty()));
        for chunk in chunks {
            let r = self.with_regs(|r| {
                if chunk.len() % 4 == 0 {
                    r.write_rep32(R(REG_DATA), chunk)
                } else {
                    r.write_rep8(R(REG_DATA), chunk)
                }
            });
            match r {
                Ok(()) => sent += chunk.len(),
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// Readiness for `poll` and the poller.
    pub(crate) fn status(&self) -> Status {
        let st = match self.regs.try_access_with(|r| r.read32(R(REG_STATUS))) {
            // Removed.
            None => {
                return Status {
                    readable: true,
                    writable: true,
                    hangup: true,
                    error: true,
                }
            }
            Some(Ok(st)) => st,
            Some(Err(_)) => {
                return Status {
                    readable: true,
                    writable: true,
                    hangup: false,
                    error: true,
                }
            }
        };
        let gone = st & STATUS_PEER_GONE != 0;
        let error = st & STATUS_ERROR != 0;
        Status {
            readable: st & STATUS_RX_READY != 0 || gone || error,
            writable: (st & STATUS_CONNECTED != 0 && st & STATUS_TX_SPACE != 0) || gone || error,
            hangup: gone,
            error,
        }
    }
}
