//! Descriptor mode of `ivc-pio` (map: `ivc_channel::pio`, version 3): the
//! guest names a buffer in its RAM with three register writes and moves the
//! whole buffer with one `OUT` to `DESC_CMD`, instead of one VM exit per 4
//! bytes of string I/O.
//!
//! The address and length are the guest's: untrusted. The buffer must lie
//! entirely in guest RAM (vm-memory's bounds check: not outside it, not over
//! MMIO, not wrapping) and be at most `DESC_MAX_LEN` long, else the command
//! moves nothing and reports an error code. Bytes go through a bounce buffer
//! between guest RAM and the channel ring.

use ivc_channel::pio::{
    CAP_DESC, DESC_CMD_RX, DESC_CMD_TX, DESC_ERROR, DESC_ERR_CHANNEL, DESC_ERR_COMMAND,
    DESC_ERR_PEER_GONE, DESC_ERR_RANGE, DESC_ERR_TOO_LONG, DESC_MAX_LEN, REG_CAPS,
    REG_DESC_ADDR_HI, REG_DESC_ADDR_LO, REG_DESC_LEN, REG_DESC_RESULT,
};
use ivc_channel::{ChannelError, Endpoint, SharedMemory};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Guest RAM as descriptor mode needs it: bounds-checked copies.
pub trait GuestRam: Send {
    /// Whether `[gpa, gpa + len)` is all RAM.
    fn contains(&self, gpa: u64, len: usize) -> bool;
    /// Copies guest RAM at `gpa` into `dst`; `false` if out of RAM.
    fn read(&self, gpa: u64, dst: &mut [u8]) -> bool;
    /// Copies `src` into guest RAM at `gpa`; `false` if out of RAM.
    fn write(&self, gpa: u64, src: &[u8]) -> bool;
}

impl GuestRam for GuestMemoryMmap {
    fn contains(&self, gpa: u64, len: usize) -> bool {
        // `check_range` refuses ranges that cross a hole or wrap.
        len == 0 || GuestMemoryBackend::check_range(self, GuestAddress(gpa), len)
    }
    fn read(&self, gpa: u64, dst: &mut [u8]) -> bool {
        self.read_slice(dst, GuestAddress(gpa)).is_ok()
    }
    fn write(&self, gpa: u64, src: &[u8]) -> bool {
        self.write_slice(src, GuestAddress(gpa)).is_ok()
    }
}

/// Bytes moved per step through the bounce buffer.
const BOUNCE: usize = 64 * 1024;

/// The descriptor registers and the last result.
#[derive(Default)]
pub struct Descriptor {
    addr: u64,
    len: u32,
    result: u32,
    bounce: Vec<u8>,
}

fn error(code: u32) -> u32 {
    DESC_ERROR | code
}

impl Descriptor {
    /// A 32-bit read of a descriptor register; `None` if `reg` is not one.
    pub fn read(&self, reg: u16, with_ram: bool) -> Option<u32> {
        Some(match reg {
            REG_CAPS => {
                if with_ram {
                    CAP_DESC
                } else {
                    0
                }
            }
            REG_DESC_ADDR_LO => (self.addr & 0xffff_ffff) as u32,
            REG_DESC_ADDR_HI => (self.addr >> 32) as u32,
            REG_DESC_LEN => self.len,
            REG_DESC_RESULT => self.result,
            _ => return None,
        })
    }

    /// A 32-bit write of an address or length register; `false` if `reg`
    /// is not one.
    pub fn write(&mut self, reg: u16, v: u32) -> bool {
        match reg {
            REG_DESC_ADDR_LO => self.addr = (self.addr & !0xffff_ffff) | u64::from(v),
            REG_DESC_ADDR_HI => self.addr = (self.addr & 0xffff_ffff) | (u64::from(v) << 32),
            REG_DESC_LEN => self.len = v,
            _ => return false,
        }
        true
    }

    /// Runs command `cmd` against `ep` and `ram`; the result is in
    /// `DESC_RESULT` (and returned). `Err` carries a channel error that
    /// broke the endpoint (the caller latches `STATUS_ERROR`), `PeerGone`
    /// included so that the caller can set its end-of-connection state.
    pub fn run<M: SharedMemory>(
        &mut self,
        cmd: u32,
        ep: Option<&mut Endpoint<M>>,
        ram: Option<&dyn GuestRam>,
    ) -> Result<u32, ChannelError> {
        let outcome = self.execute(cmd, ep, ram);
        self.result = match outcome {
            Ok(n) => n,
            Err(Fail::Code(c)) => error(c),
            Err(Fail::Channel(ChannelError::PeerGone)) => error(DESC_ERR_PEER_GONE),
            Err(Fail::Channel(_)) => error(DESC_ERR_CHANNEL),
        };
        match outcome {
            Err(Fail::Channel(e)) => Err(e),
            _ => Ok(self.result),
        }
    }

    fn execute<M: SharedMemory>(
        &mut self,
        cmd: u32,
        ep: Option<&mut Endpoint<M>>,
        ram: Option<&dyn GuestRam>,
    ) -> Result<u32, Fail> {
        let Some(ram) = ram else {
            return Err(Fail::Code(DESC_ERR_COMMAND));
        };
        if cmd != DESC_CMD_TX && cmd != DESC_CMD_RX {
            return Err(Fail::Code(DESC_ERR_COMMAND));
        }
        if self.len > DESC_MAX_LEN {
            return Err(Fail::Code(DESC_ERR_TOO_LONG));
        }
        let len = self.len as usize;
        if self.addr.checked_add(u64::from(self.len)).is_none() || !ram.contains(self.addr, len) {
            return Err(Fail::Code(DESC_ERR_RANGE));
        }
        let Some(ep) = ep else {
            return Err(Fail::Code(DESC_ERR_CHANNEL));
        };
        if self.bounce.len() < BOUNCE {
            self.bounce.resize(BOUNCE, 0);
        }
        let mut done = 0usize;
        while done < len {
            let want = (len - done).min(BOUNCE);
            let gpa = self.addr + done as u64;
            let buf = &mut self.bounce[..want];
            let n = if cmd == DESC_CMD_TX {
                // Only what fits now, so nothing read from RAM is lost.
                let room = ep.writable_bytes().map_err(Fail::Channel)?;
                let k = want.min(room);
                if k == 0 {
                    break;
                }
                if !ram.read(gpa, &mut buf[..k]) {
                    return Err(Fail::Code(DESC_ERR_RANGE));
                }
                ep.write(&buf[..k]).map_err(Fail::Channel)?
            } else {
                let k = match ep.read(buf) {
                    Ok(k) => k,
                    // Everything was read: report what moved; STATUS says the rest.
                    Err(ChannelError::PeerGone) if done > 0 => break,
                    Err(e) => return Err(Fail::Channel(e)),
                };
                if k == 0 {
                    break;
                }
                if !ram.write(gpa, &buf[..k]) {
                    return Err(Fail::Code(DESC_ERR_RANGE));
                }
                k
            };
            done += n;
            if n < want {
                break;
            }
        }
        // `done <= len <= DESC_MAX_LEN`, which fits.
        Ok(u32::try_from(done).unwrap_or(DESC_MAX_LEN))
    }
}

enum Fail {
    Code(u32),
    Channel(ChannelError),
}

#[cfg(test)]
pub(crate) mod test_ram {
    //! Guest RAM for tests of descriptor mode.
    use super::GuestRam;
    use std::sync::Mutex;

    /// Guest RAM: `size` bytes at `base`, nothing elsewhere.
    pub(crate) struct FakeRam {
        base: u64,
        bytes: Mutex<Vec<u8>>,
    }

    impl FakeRam {
        pub(crate) fn new(base: u64, size: usize) -> Self {
            FakeRam {
                base,
                bytes: Mutex::new(vec![0; size]),
            }
        }
        fn range(&self, gpa: u64, len: usize) -> Option<std::ops::Range<usize>> {
            let off = usize::try_from(gpa.checked_sub(self.base)?).ok()?;
            let end = off.checked_add(len)?;
            (end <= self.bytes.lock().unwrap().len()).then_some(off..end)
        }
    }

    impl GuestRam for FakeRam {
        fn contains(&self, gpa: u64, len: usize) -> bool {
            self.range(gpa, len).is_some()
        }
        fn read(&self, gpa: u64, dst: &mut [u8]) -> bool {
            let Some(r) = self.range(gpa, dst.len()) else {
                return false;
            };
            dst.copy_from_slice(&self.bytes.lock().unwrap()[r]);
            true
        }
        fn write(&self, gpa: u64, src: &[u8]) -> bool {
            let Some(r) = self.range(gpa, src.len()) else {
                return false;
            };
            self.bytes.lock().unwrap()[r].copy_from_slice(src);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_ram::FakeRam;
    use super::*;
    use core::sync::atomic::AtomicU32;
    use ivc_channel::AtomicMem;

    fn pair(mem: AtomicMem<'_>) -> (Endpoint<AtomicMem<'_>>, Endpoint<AtomicMem<'_>>) {
        let o = ivc_channel::AttachOptions::default();
        let mut a = Endpoint::attach_any(mem, &o).unwrap();
        let mut b = Endpoint::attach_any(mem, &o).unwrap();
        for _ in 0..4 {
            let _ = a.peer_state();
            let _ = b.peer_state();
        }
        (a, b)
    }

    fn set(d: &mut Descriptor, addr: u64, len: u32) {
        assert!(d.write(REG_DESC_ADDR_LO, (addr & 0xffff_ffff) as u32));
        assert!(d.write(REG_DESC_ADDR_HI, (addr >> 32) as u32));
        assert!(d.write(REG_DESC_LEN, len));
    }

    #[test]
    fn one_command_moves_a_whole_buffer_each_way() {
        let w: Vec<AtomicU32> = (0..(1 << 20) / 4).map(|_| AtomicU32::new(0)).collect();
        let (mut a, mut b) = pair(AtomicMem::from_words(&w));
        let ram_a = FakeRam::new(0x10_0000, 1 << 20);
        let ram_b = FakeRam::new(0x10_0000, 1 << 20);
        let msg: Vec<u8> = (0..800_000u32)
            .map(|i| ((i * 7 + i / 251) & 0xff) as u8)
            .collect();
        let len32 = |n: usize| u32::try_from(n).unwrap();
        assert!(ram_a.write(0x12_0000, &msg));
        let (mut da, mut db) = (Descriptor::default(), Descriptor::default());
        set(&mut da, 0x12_0000, len32(msg.len()));
        let n = da.run(DESC_CMD_TX, Some(&mut a), Some(&ram_a)).unwrap();
        // The ring takes what fits (about half the region); the rest waits.
        assert!(n > 0 && (n as usize) < msg.len(), "{n}");
        let mut got = Vec::new();
        let mut sent = n as usize;
        while got.len() < msg.len() {
            set(&mut db, 0x18_0000, 64 << 10);
            let k = db.run(DESC_CMD_RX, Some(&mut b), Some(&ram_b)).unwrap() as usize;
            let mut chunk = vec![0; k];
            assert!(ram_b.read(0x18_0000, &mut chunk));
            got.extend_from_slice(&chunk);
            if sent < msg.len() {
                set(&mut da, 0x12_0000 + sent as u64, len32(msg.len() - sent));
                sent += da.run(DESC_CMD_TX, Some(&mut a), Some(&ram_a)).unwrap() as usize;
            }
        }
        assert_eq!(got, msg);
        assert_eq!(db.read(REG_DESC_RESULT, true), Some(db.result));
    }

    #[test]
    fn hostile_descriptors_move_nothing_and_say_why() {
        let w: Vec<AtomicU32> = (0..(64 << 10) / 4).map(|_| AtomicU32::new(0)).collect();
        let (mut a, _b) = pair(AtomicMem::from_words(&w));
        let ram = FakeRam::new(0x1000, 0x10_000);
        let mut d = Descriptor::default();
        let cases: [(u64, u32, u32, u32); 6] = [
            // below RAM, past its end, wrapping the address space
            (0x0, 16, DESC_CMD_TX, DESC_ERR_RANGE),
            (0x1000 + 0x10_000 - 8, 16, DESC_CMD_RX, DESC_ERR_RANGE),
            (u64::MAX - 4, 16, DESC_CMD_TX, DESC_ERR_RANGE),
            (0x1000, DESC_MAX_LEN + 1, DESC_CMD_TX, DESC_ERR_TOO_LONG),
            (0x1000, 16, 0, DESC_ERR_COMMAND),
            (0x1000, 16, 7, DESC_ERR_COMMAND),
        ];
        for (addr, len, cmd, code) in cases {
            set(&mut d, addr, len);
            assert_eq!(
                d.run(cmd, Some(&mut a), Some(&ram)),
                Ok(DESC_ERROR | code),
                "{addr:#x}+{len} cmd {cmd}"
            );
            assert_eq!(
                a.writable_bytes().unwrap(),
                a.tx_ring_size() as usize,
                "nothing moved"
            );
        }
        // No endpoint (not opened): a channel error code, no panic.
        set(&mut d, 0x1000, 16);
        assert_eq!(
            d.run::<AtomicMem<'_>>(DESC_CMD_TX, None, Some(&ram)),
            Ok(DESC_ERROR | DESC_ERR_CHANNEL)
        );
        // No guest RAM given: no descriptor mode.
        assert_eq!(d.read(REG_CAPS, false), Some(0));
        assert_eq!(d.read(REG_CAPS, true), Some(CAP_DESC));
    }
}
