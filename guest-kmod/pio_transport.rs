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

use kernel::prelude::*;

use crate::ffi::IoRegion;
use crate::ivc_channel::pio::{
    CONTROL_CLEAR_ERROR, CONTROL_CLOSE, CONTROL_OPEN, CONTROL_RESUME, MAGIC, REG_CONTROL, REG_DATA,
    REG_ID, REG_RX_AVAIL, REG_STATUS, REG_TX_FREE, REG_VERSION, STATUS_CONNECTED, STATUS_ERROR,
    STATUS_PEER_GONE, STATUS_RX_READY, STATUS_TX_SPACE, VERSION,
};
use crate::transport::{ReadOutcome, Status};

/// One ivc-pio channel.
pub(crate) struct PioTransport {
    regs: IoRegion,
    dead: AtomicBool,
    /// An end of file or `EPIPE` went to a user since the last
    /// `CONTROL_RESUME`: the device holds off a new peer until told.
    ended: AtomicBool,
}

const R: fn(u16) -> usize = |r| r as usize;

impl PioTransport {
    /// A transport over the device's I/O BAR; checks the identity registers.
    pub(crate) fn new(regs: IoRegion) -> Result<Self> {
        let id = regs.read32(R(REG_ID))?;
        let version = regs.read32(R(REG_VERSION))?;
        if id != MAGIC || version != VERSION {
            pr_err!(
                "ivc-pio: identity {:#x} version {} (expected {:#x} version {})\n",
                id,
                version,
                MAGIC,
                VERSION
            );
            return Err(ENODEV);
        }
        Ok(Self {
            regs,
            dead: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        })
    }

    fn live(&self) -> Result {
        if self.dead.load(Ordering::Acquire) {
            Err(ENODEV)
        } else {
            Ok(())
        }
    }

    /// First opener: join the channel.
    pub(crate) fn open(&self) -> Result {
        self.live()?;
        self.regs
            .write32(R(REG_CONTROL), CONTROL_CLEAR_ERROR | CONTROL_OPEN)
    }

    /// A user call begins: after an end was reported to a user, tell the
    /// device that a new peer may connect (one exit, only then).
    pub(crate) fn resume(&self) {
        if self.live().is_ok() && self.ended.swap(false, Ordering::AcqRel) {
            let _ = self.regs.write32(R(REG_CONTROL), CONTROL_RESUME);
        }
    }

    /// Last closer: leave the channel.
    pub(crate) fn release(&self) {
        let _ = self.regs.write32(R(REG_CONTROL), CONTROL_CLOSE);
    }

    /// The device is being removed.
    pub(crate) fn shutdown(&self) {
        if !self.dead.swap(true, Ordering::AcqRel) {
            let _ = self.regs.write32(R(REG_CONTROL), CONTROL_CLOSE);
        }
    }

    /// Non-blocking read.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> Result<ReadOutcome> {
        self.live()?;
        let st = self.regs.read32(R(REG_STATUS))?;
        if st & STATUS_ERROR != 0 {
            return Err(EIO);
        }
        let avail = self.regs.read32(R(REG_RX_AVAIL))? as usize;
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
        self.regs.read_rep8(R(REG_DATA), dst)?;
        Ok(ReadOutcome::Data(n))
    }

    /// Non-blocking write.
    pub(crate) fn try_write(&self, buf: &[u8]) -> Result<usize> {
        self.live()?;
        let st = self.regs.read32(R(REG_STATUS))?;
        if st & STATUS_ERROR != 0 {
            return Err(EIO);
        }
        if st & STATUS_PEER_GONE != 0 {
            self.ended.store(true, Ordering::Release);
            return Err(EPIPE);
        }
        let free = self.regs.read32(R(REG_TX_FREE))? as usize;
        let n = free.min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        // KVM batches `rep ins` (read-ahead) but exits once per element of
        // `rep outs`: move the bulk as dwords (4 bytes per exit), the tail as
        // bytes.
        let (bulk, tail) = buf.get(..n).ok_or(EINVAL)?.split_at(n - n % 4);
        if !bulk.is_empty() {
            self.regs.write_rep32(R(REG_DATA), bulk)?;
        }
        if !tail.is_empty() {
            self.regs.write_rep8(R(REG_DATA), tail)?;
        }
        Ok(n)
    }

    /// Readiness for `poll` and the poller.
    pub(crate) fn status(&self) -> Status {
        if self.live().is_err() {
            return Status {
                readable: true,
                writable: true,
                hangup: true,
                error: true,
            };
        }
        let Ok(st) = self.regs.read32(R(REG_STATUS)) else {
            return Status {
                readable: true,
                writable: true,
                hangup: false,
                error: true,
            };
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
