// SPDX-License-Identifier: GPL-2.0

//! The port-I/O transport (`ivc-pio`, ivc-vmm's own device).
//!
//! The channel endpoint lives in the VMM; the guest sees a register front
//! end (`crate::ivc_abi::pio`). Two ways to move bytes:
//!
//! - **Descriptor mode** (when the device offers `CAP_DESC`, unless the
//!   `pio_string_io` parameter is set): each direction has a staging buffer
//!   in device-visible memory and a descriptor naming it; a `read` or
//!   `write` call writes the descriptor and does one `IN` from `RX_GO` or
//!   `TX_GO`, and the VMM copies the whole buffer (up to [`DESC_STAGING`])
//!   in that one VM exit. A kernel bounce buffer rather than the user's
//!   pages: one extra memcpy at memory speed per call against pinning
//!   (`pin_user_pages`) and a scatter-gather list per call, and the user's
//!   pages would be handed to the VMM only for the exit anyway.
//! - **String I/O**: ask how many bytes may move (`RX_AVAIL`/`TX_FREE`) and
//!   move them with string instructions (`rep insb`/`rep outsl`), which
//!   cost one VM exit per element or page: the seed's mechanism, kept as
//!   the baseline.
//!
//! There are no interrupts: waiters are served by the pipe's spinning and
//! the poller, as for polled shared memory.
//!
//! The register values come from the VMM, which is as untrusted as any other
//! device: counts are clamped to the caller's buffer, and a bad identity
//! refuses the device.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use kernel::{device::Device, pci, prelude::*, revocable::Revocable, sync::aref::ARef};

use crate::ffi::{self, DmaBuffer, IoRegion};
use crate::ivc_abi::pio::{
    Desc, CAP_DESC, CONTROL_CLEAR_ERROR, CONTROL_CLOSE, CONTROL_OPEN, CONTROL_RESUME, DESC_ERROR,
    DESC_ERR_PEER_GONE, MAGIC, REG_CAPS, REG_CONTROL, REG_DATA, REG_ID, REG_RX_AVAIL,
    REG_RX_DESC_HI, REG_RX_DESC_LO, REG_RX_GO, REG_STATUS, REG_TX_DESC_HI, REG_TX_DESC_LO,
    REG_TX_FREE, REG_TX_GO, REG_VERSION, STATUS_CONNECTED, STATUS_ERROR, STATUS_PEER_GONE,
    STATUS_RX_READY, STATUS_TX_SPACE, VERSION,
};
use crate::transport::{ReadOutcome, Staging, Status};

/// String I/O's staging buffer per direction.
const STRING_STAGING: usize = 64 * 1024;

/// Descriptor mode's staging buffer per direction: the most one `read` or
/// `write` call moves in one VM exit (a power of two, so the contiguous
/// allocation wastes nothing).
pub(crate) const DESC_STAGING: usize = 256 * 1024;

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
    /// Bytes move by descriptor (the staging buffers are [`Staging::Desc`]).
    desc_mode: bool,
    /// Descriptors the device refused (see [`REFUSALS_LOGGED`]).
    refusals: AtomicU32,
    /// The PCI device, for `dev_*` log lines.
    dev: ARef<Device>,
}

const R: fn(u16) -> usize = |r| r as usize;

/// One direction's descriptor-mode staging: the data buffer and a
/// descriptor (on a page of its own; `dma_alloc_coherent` hands out pages).
fn desc_staging(pdev: &pci::Device<kernel::device::Core<'_>>) -> Result<Staging> {
    Ok(Staging::Desc {
        desc: DmaBuffer::alloc(pdev, Desc::SIZE)?,
        data: DmaBuffer::alloc(pdev, DESC_STAGING)?,
    })
}

/// The device address of a staging's descriptor (0 for plain memory).
fn desc_address(s: &Staging) -> u64 {
    match s {
        Staging::Desc { desc, .. } => desc.dma_address(),
        Staging::Plain(_) => 0,
    }
}

/// Refused descriptors logged per device; later ones only fail with `EIO`
/// (a broken VMM must not flood the guest's log).
const REFUSALS_LOGGED: u32 = 10;

impl PioTransport {
    /// A transport over the device's I/O BAR, and its staging buffers
    /// (read side, write side); checks the identity registers. Uses
    /// descriptor mode when the device offers it, unless `string_io`.
    pub(crate) fn new(
        regs: IoRegion,
        pdev: &pci::Device<kernel::device::Core<'_>>,
        string_io: bool,
    ) -> Result<(Self, Staging, Staging)> {
        let dev: &Device = pdev.as_ref();
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
        let desc_mode = !string_io && regs.read32(R(REG_CAPS))? & CAP_DESC != 0;
        let (rx, tx) = if desc_mode {
            ffi::set_dma_mask_64(pdev)?;
            let rx = desc_staging(pdev)?;
            let tx = desc_staging(pdev)?;
            for (lo, hi, at) in [
                (REG_RX_DESC_LO, REG_RX_DESC_HI, desc_address(&rx)),
                (REG_TX_DESC_LO, REG_TX_DESC_HI, desc_address(&tx)),
            ] {
                regs.write32(R(lo), at as u32)?;
                regs.write32(R(hi), (at >> 32) as u32)?;
            }
            (rx, tx)
        } else {
            (
                Staging::plain(STRING_STAGING)?,
                Staging::plain(STRING_STAGING)?,
            )
        };
        let t = Self {
            regs: KBox::pin_init(Revocable::new(regs), GFP_KERNEL)?,
            ended: AtomicBool::new(false),
            desc_mode,
            refusals: AtomicU32::new(0),
            dev: dev.into(),
        };
        Ok((t, rx, tx))
    }

    /// Whether `read`/`write` use descriptor mode (else string I/O).
    pub(crate) fn descriptor_mode(&self) -> bool {
        self.desc_mode
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

    /// The device is being removed: leave the channel, make the device
    /// forget the descriptors (their memory lives on with open files, but
    /// the device must never write to it again), then revoke the registers,
    /// waiting for every user of them to finish.
    pub(crate) fn shutdown(&self) {
        let _ = self.with_regs(|r| {
            r.write32(R(REG_CONTROL), CONTROL_CLOSE)?;
            for reg in [
                REG_RX_DESC_LO,
                REG_RX_DESC_HI,
                REG_TX_DESC_LO,
                REG_TX_DESC_HI,
            ] {
                r.write32(R(reg), 0)?;
            }
            Ok(())
        });
        self.regs.revoke();
    }

    /// One descriptor `GO` over the first `len` bytes of `staging`'s data:
    /// the device's result (bytes moved, or `DESC_ERROR` and a code).
    fn go(&self, reg: u16, staging: &mut Staging, len: usize) -> Result<u32> {
        let Staging::Desc { desc, data } = staging else {
            return Err(EINVAL);
        };
        let len32 = u32::try_from(len).map_err(|_| EINVAL)?;
        let head = Desc::encode(data.dma_address(), len32);
        desc.bytes_mut()
            .get_mut(..Desc::SIZE)
            .ok_or(EINVAL)?
            .copy_from_slice(&head);
        desc.lend(|| data.lend(|| self.with_regs(|r| r.read32(R(reg)))))
    }

    /// What a `GO` that moved nothing means: `STATUS` tells empty or full
    /// (`Ok`), the end of the connection (`EPIPE`-or-EOF, marked ended), or a
    /// broken channel (`EIO`).
    fn after_nothing_moved(&self) -> Result<bool> {
        let st = self.with_regs(|r| r.read32(R(REG_STATUS)))?;
        if st & STATUS_ERROR != 0 {
            return Err(EIO);
        }
        let gone = st & STATUS_PEER_GONE != 0;
        if gone {
            self.ended.store(true, Ordering::Release);
        }
        Ok(gone)
    }

    /// A `GO` result that carries an error code: the end of the connection
    /// (`Ok`, marked ended) or `EIO` (a broken channel, or a device that
    /// refuses descriptors it accepted at probe).
    fn go_error(&self, v: u32) -> Result {
        if v & !DESC_ERROR == DESC_ERR_PEER_GONE {
            self.ended.store(true, Ordering::Release);
            return Ok(());
        }
        if self.refusals.fetch_add(1, Ordering::Relaxed) < REFUSALS_LOGGED {
            dev_warn!(
                self.dev,
                "ivc-pio: descriptor refused with {:#x} (the first {} are logged)\n",
                v,
                REFUSALS_LOGGED
            );
        }
        Err(EIO)
    }

    /// Descriptor-mode read: one exit when data is there.
    fn desc_read(&self, staging: &mut Staging, len: usize) -> Result<ReadOutcome> {
        let v = self.go(REG_RX_GO, staging, len)?;
        if v & DESC_ERROR != 0 {
            self.go_error(v)?;
            return Ok(ReadOutcome::Eof);
        }
        if v == 0 {
            return Ok(if self.after_nothing_moved()? {
                ReadOutcome::Eof
            } else {
                ReadOutcome::Empty
            });
        }
        // Never more than asked for, whatever the device says.
        Ok(ReadOutcome::Data((v as usize).min(len)))
    }

    /// Descriptor-mode write of `staging`'s first `len` bytes: one exit
    /// when there is room.
    fn desc_write(&self, staging: &mut Staging, len: usize) -> Result<usize> {
        let v = self.go(REG_TX_GO, staging, len)?;
        if v & DESC_ERROR != 0 {
            self.go_error(v)?;
            return Err(EPIPE);
        }
        if v == 0 {
            return if self.after_nothing_moved()? {
                Err(EPIPE)
            } else {
                Ok(0)
            };
        }
        Ok((v as usize).min(len))
    }

    /// Non-blocking read of up to `len` bytes into `staging`'s data.
    pub(crate) fn try_read(&self, staging: &mut Staging, len: usize) -> Result<ReadOutcome> {
        if self.desc_mode {
            return self.desc_read(staging, len);
        }
        let buf = staging.data_mut().get_mut(..len).ok_or(EINVAL)?;
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

    /// Non-blocking write of `staging`'s first `len` bytes.
    pub(crate) fn try_write(&self, staging: &mut Staging, len: usize) -> Result<usize> {
        if self.desc_mode {
            return self.desc_write(staging, len);
        }
        let buf = staging.data().get(..len).ok_or(EINVAL)?;
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
