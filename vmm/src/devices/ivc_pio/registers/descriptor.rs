//! Descriptor mode of `ivc-pio` (map: `ivc_abi::pio`, version 3): the
//! guest keeps one 16-byte descriptor per direction in its RAM (buffer
//! address and length), tells the device where once, and moves a whole
//! buffer with one 32-bit `IN` from `TX_GO` or `RX_GO`, whose value is the
//! outcome, instead of one VM exit per 4 bytes of string I/O.
//!
//! The descriptor and the buffer it names are the guest's: untrusted, and
//! changeable by another vCPU at any time. The descriptor is copied out of
//! guest RAM once per `GO` and only the copy is used; the buffer must lie
//! entirely in guest RAM (vm-memory's bounds check: not outside it, not
//! over MMIO, not wrapping) and be at most `DESC_MAX_LEN` long, else the
//! command moves nothing and returns an error code. Bytes go through a
//! bounce buffer between guest RAM and the channel ring (guest RAM can
//! change under the copy, so it is never seen as a Rust slice).

use ivc_abi::pio::{
    Desc, CAP_DESC, DESC_ERROR, DESC_ERR_CHANNEL, DESC_ERR_NO_DESC, DESC_ERR_PEER_GONE,
    DESC_ERR_RANGE, DESC_ERR_TOO_LONG, DESC_MAX_LEN, REG_CAPS, REG_RX_DESC_HI, REG_RX_DESC_LO,
    REG_RX_GO, REG_TX_DESC_HI, REG_TX_DESC_LO, REG_TX_GO,
};
use ivc_abi::{ChannelError, Endpoint, SharedMemory};
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

/// Which way a `GO` moves bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Guest buffer -> transmit stream (`TX_GO`).
    Tx,
    /// Receive stream -> guest buffer (`RX_GO`).
    Rx,
}

/// The descriptor address registers.
#[derive(Default)]
pub struct Descriptors {
    tx: u64,
    rx: u64,
    bounce: Vec<u8>,
}

fn error(code: u32) -> u32 {
    DESC_ERROR | code
}

fn set_lo(r: &mut u64, v: u32) {
    *r = (*r & !0xffff_ffff) | u64::from(v);
}

fn set_hi(r: &mut u64, v: u32) {
    *r = (*r & 0xffff_ffff) | (u64::from(v) << 32);
}

impl Descriptors {
    /// The `GO` register `reg` stands for, if it is one.
    pub fn go(reg: u16) -> Option<Direction> {
        match reg {
            REG_TX_GO => Some(Direction::Tx),
            REG_RX_GO => Some(Direction::Rx),
            _ => None,
        }
    }

    /// A 32-bit read of `CAPS` or an address register; `None` if `reg` is
    /// neither (the `GO` registers are [`Descriptors::run`]'s).
    pub fn read(&self, reg: u16, with_ram: bool) -> Option<u32> {
        Some(match reg {
            REG_CAPS => {
                if with_ram {
                    CAP_DESC
                } else {
                    0
                }
            }
            REG_TX_DESC_LO => (self.tx & 0xffff_ffff) as u32,
            REG_TX_DESC_HI => (self.tx >> 32) as u32,
            REG_RX_DESC_LO => (self.rx & 0xffff_ffff) as u32,
            REG_RX_DESC_HI => (self.rx >> 32) as u32,
            _ => return None,
        })
    }

    /// A 32-bit write of an address register; `false` if `reg` is not one.
    pub fn write(&mut self, reg: u16, v: u32) -> bool {
        match reg {
            REG_TX_DESC_LO => set_lo(&mut self.tx, v),
            REG_TX_DESC_HI => set_hi(&mut self.tx, v),
            REG_RX_DESC_LO => set_lo(&mut self.rx, v),
            REG_RX_DESC_HI => set_hi(&mut self.rx, v),
            _ => return false,
        }
        true
    }

    /// Runs the descriptor of `dir` against `ep` and `ram` and returns the
    /// `GO` value: bytes moved or an error code. `Err` carries a channel
    /// error that broke the endpoint (the caller latches `STATUS_ERROR`),
    /// `PeerGone` included so that the caller can set its
    /// end-of-connection state; the `GO` value is then in the `Err`'s pair.
    /// `rx_ended`: the end of the connection is the caller's to report, so
    /// a valid receive descriptor moves nothing and the endpoint is left
    /// alone.
    pub fn run<M: SharedMemory>(
        &mut self,
        dir: Direction,
        ep: Option<&mut Endpoint<M>>,
        ram: Option<&dyn GuestRam>,
        rx_ended: bool,
    ) -> Result<u32, (u32, ChannelError)> {
        match self.execute(dir, ep, ram, rx_ended) {
            Ok(n) => Ok(n),
            Err(Fail::Code(c)) => Ok(error(c)),
            Err(Fail::Channel(e @ ChannelError::PeerGone)) => Err((error(DESC_ERR_PEER_GONE), e)),
            Err(Fail::Channel(e)) => Err((error(DESC_ERR_CHANNEL), e)),
        }
    }

    fn execute<M: SharedMemory>(
        &mut self,
        dir: Direction,
        ep: Option<&mut Endpoint<M>>,
        ram: Option<&dyn GuestRam>,
        rx_ended: bool,
    ) -> Result<u32, Fail> {
        let desc_at = match dir {
            Direction::Tx => self.tx,
            Direction::Rx => self.rx,
        };
        let Some(ram) = ram.filter(|_| desc_at != 0) else {
            return Err(Fail::Code(DESC_ERR_NO_DESC));
        };
        // One copy of the descriptor: another vCPU may rewrite it meanwhile.
        let mut raw = [0u8; Desc::SIZE];
        if !ram.read(desc_at, &mut raw) {
            return Err(Fail::Code(DESC_ERR_RANGE));
        }
        let (addr, len) = Desc::decode(&raw);
        if len > DESC_MAX_LEN {
            return Err(Fail::Code(DESC_ERR_TOO_LONG));
        }
        let len = len as usize;
        if addr.checked_add(len as u64).is_none() || !ram.contains(addr, len) {
            return Err(Fail::Code(DESC_ERR_RANGE));
        }
        let Some(ep) = ep else {
            return Err(Fail::Code(DESC_ERR_CHANNEL));
        };
        if rx_ended && dir == Direction::Rx {
            return Ok(0);
        }
        if self.bounce.len() < BOUNCE {
            self.bounce.resize(BOUNCE, 0);
        }
        let mut done = 0usize;
        while done < len {
            let want = (len - done).min(BOUNCE);
            let gpa = addr + done as u64;
            let buf = &mut self.bounce[..want];
            let n = match dir {
                Direction::Tx => {
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
                }
                Direction::Rx => {
                    // After some data, stop where the data does: reading on
                    // would take the end of the connection from the
                    // endpoint, which the next `GO` must report by itself.
                    if done > 0 && ep.readable_bytes().map_err(Fail::Channel)? == 0 {
                        break;
                    }
                    let k = ep.read(buf).map_err(Fail::Channel)?;
                    if k == 0 {
                        break;
                    }
                    if !ram.write(gpa, &buf[..k]) {
                        return Err(Fail::Code(DESC_ERR_RANGE));
                    }
                    k
                }
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

    /// Shared with the test, which writes descriptors into it.
    impl GuestRam for std::sync::Arc<FakeRam> {
        fn contains(&self, gpa: u64, len: usize) -> bool {
            (**self).contains(gpa, len)
        }
        fn read(&self, gpa: u64, dst: &mut [u8]) -> bool {
            (**self).read(gpa, dst)
        }
        fn write(&self, gpa: u64, src: &[u8]) -> bool {
            (**self).write(gpa, src)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_ram::FakeRam;
    use super::*;
    use core::sync::atomic::AtomicU32;
    use ivc_abi::AtomicMem;

    fn pair(mem: AtomicMem<'_>) -> (Endpoint<AtomicMem<'_>>, Endpoint<AtomicMem<'_>>) {
        let o = ivc_abi::AttachOptions::default();
        let mut a = Endpoint::attach_any(mem, &o).unwrap();
        let mut b = Endpoint::attach_any(mem, &o).unwrap();
        for _ in 0..4 {
            let _ = a.peer_state();
            let _ = b.peer_state();
        }
        (a, b)
    }

    /// Points `dir`'s descriptor register at `at` and writes there a
    /// descriptor for `len` bytes at `addr`.
    fn set(d: &mut Descriptors, ram: &FakeRam, dir: Direction, at: u64, addr: u64, len: u32) {
        let (lo, hi) = match dir {
            Direction::Tx => (REG_TX_DESC_LO, REG_TX_DESC_HI),
            Direction::Rx => (REG_RX_DESC_LO, REG_RX_DESC_HI),
        };
        assert!(d.write(lo, (at & 0xffff_ffff) as u32));
        assert!(d.write(hi, (at >> 32) as u32));
        assert!(ram.write(at, &Desc::encode(addr, len)));
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
        let (mut da, mut db) = (Descriptors::default(), Descriptors::default());
        let tx = Direction::Tx;
        set(&mut da, &ram_a, tx, 0x10_0000, 0x12_0000, len32(msg.len()));
        let n = da.run(tx, Some(&mut a), Some(&ram_a), false).unwrap();
        // The ring takes what fits (about half the region); the rest waits.
        assert!(n > 0 && (n as usize) < msg.len(), "{n}");
        let mut got = Vec::new();
        let mut sent = n as usize;
        set(
            &mut db,
            &ram_b,
            Direction::Rx,
            0x10_0010,
            0x18_0000,
            64 << 10,
        );
        while got.len() < msg.len() {
            let k = db
                .run(Direction::Rx, Some(&mut b), Some(&ram_b), false)
                .unwrap() as usize;
            let mut chunk = vec![0; k];
            assert!(ram_b.read(0x18_0000, &mut chunk));
            got.extend_from_slice(&chunk);
            if sent < msg.len() {
                let rest = len32(msg.len() - sent);
                set(
                    &mut da,
                    &ram_a,
                    tx,
                    0x10_0000,
                    0x12_0000 + sent as u64,
                    rest,
                );
                sent += da.run(tx, Some(&mut a), Some(&ram_a), false).unwrap() as usize;
            }
        }
        assert_eq!(got, msg);
    }

    #[test]
    fn hostile_descriptors_move_nothing_and_say_why() {
        let w: Vec<AtomicU32> = (0..(64 << 10) / 4).map(|_| AtomicU32::new(0)).collect();
        let (mut a, _b) = pair(AtomicMem::from_words(&w));
        let ram = FakeRam::new(0x1000, 0x10_000);
        let mut d = Descriptors::default();
        // No descriptor address yet.
        assert_eq!(
            d.run(Direction::Tx, Some(&mut a), Some(&ram), false),
            Ok(DESC_ERROR | DESC_ERR_NO_DESC)
        );
        let cases: [(u64, u64, u32, Direction, u32); 6] = [
            // the descriptor itself outside RAM, straddling its end
            (0x9000_0000, 0x1000, 16, Direction::Tx, DESC_ERR_RANGE),
            (
                0x1000 + 0x10_000 - 8,
                0x1000,
                16,
                Direction::Rx,
                DESC_ERR_RANGE,
            ),
            // buffers below RAM, past its end, wrapping the address space
            (0x1000, 0x0, 16, Direction::Tx, DESC_ERR_RANGE),
            (
                0x1000,
                0x1000 + 0x10_000 - 8,
                16,
                Direction::Rx,
                DESC_ERR_RANGE,
            ),
            (0x1000, u64::MAX - 4, 16, Direction::Tx, DESC_ERR_RANGE),
            (
                0x1000,
                0x2000,
                DESC_MAX_LEN + 1,
                Direction::Tx,
                DESC_ERR_TOO_LONG,
            ),
        ];
        for (at, addr, len, dir, code) in cases {
            let (lo, hi) = match dir {
                Direction::Tx => (REG_TX_DESC_LO, REG_TX_DESC_HI),
                Direction::Rx => (REG_RX_DESC_LO, REG_RX_DESC_HI),
            };
            assert!(d.write(lo, (at & 0xffff_ffff) as u32));
            assert!(d.write(hi, (at >> 32) as u32));
            // Where the descriptor is in RAM, it says what the case says.
            let _ = ram.write(at, &Desc::encode(addr, len));
            assert_eq!(
                d.run(dir, Some(&mut a), Some(&ram), false),
                Ok(DESC_ERROR | code),
                "descriptor at {at:#x}: {addr:#x}+{len} {dir:?}"
            );
            assert_eq!(
                a.writable_bytes().unwrap(),
                a.tx_capacity(),
                "nothing moved"
            );
        }
        // No endpoint (not opened): a channel error code, no panic.
        set(&mut d, &ram, Direction::Tx, 0x1000, 0x2000, 16);
        assert_eq!(
            d.run::<AtomicMem<'_>>(Direction::Tx, None, Some(&ram), false),
            Ok(DESC_ERROR | DESC_ERR_CHANNEL)
        );
        // No guest RAM given: no descriptor mode.
        assert_eq!(
            d.run(Direction::Tx, Some(&mut a), None, false),
            Ok(DESC_ERROR | DESC_ERR_NO_DESC)
        );
        assert_eq!(d.read(REG_CAPS, false), Some(0));
        assert_eq!(d.read(REG_CAPS, true), Some(CAP_DESC));
    }

    /// The registers read back what was written, each direction its own.
    #[test]
    fn address_registers_are_per_direction() {
        let mut d = Descriptors::default();
        assert!(d.write(REG_TX_DESC_LO, 0x1234_5670));
        assert!(d.write(REG_TX_DESC_HI, 0x1));
        assert!(d.write(REG_RX_DESC_LO, 0xabc0));
        assert!(!d.write(REG_TX_GO, 1), "GO is not writable");
        assert_eq!(d.read(REG_TX_DESC_LO, true), Some(0x1234_5670));
        assert_eq!(d.read(REG_TX_DESC_HI, true), Some(0x1));
        assert_eq!(d.read(REG_RX_DESC_LO, true), Some(0xabc0));
        assert_eq!(d.read(REG_RX_DESC_HI, true), Some(0));
        assert_eq!(Descriptors::go(REG_TX_GO), Some(Direction::Tx));
        assert_eq!(Descriptors::go(REG_RX_GO), Some(Direction::Rx));
        assert_eq!(Descriptors::go(REG_CAPS), None);
    }
}
