// SPDX-License-Identifier: GPL-2.0

//! The only place in ivc.ko with `unsafe` code.
//!
//! The Rust abstractions of Linux 7.3 lack a few things this driver needs; the
//! glue for them lives here, each piece behind a safe wrapper:
//!
//! - [`MiscDevice`]: a misc character device with our own file operations,
//!   because `kernel::miscdevice` has no `poll` hook;
//! - [`SharedMapping`]: a cacheable (`memremap(MEMREMAP_WB)`) mapping of the
//!   shared-memory BAR (the `pci::Bar` abstraction maps uncached, which would
//!   make every ring access a bus transaction) and its implementation of the
//!   channel's memory-access trait;
//! - [`UserBuf`]: the user buffer of a `read(2)`/`write(2)`, copied to and
//!   from kernel buffers or straight to and from a [`SharedMapping`] (the
//!   `uaccess` abstraction only copies into Rust slices, which shared memory
//!   must never become);
//! - [`IoRegion`]: `pci_iomap` of a BAR accessed with `ioread32`/`iowrite32`
//!   and the string forms, which works for I/O BARs (the ivc-pio data port,
//!   the doorbell extension) as well as MMIO registers;
//! - [`DmaBuffer`]: device-visible memory (`dma_alloc_coherent`) for
//!   ivc-pio's descriptor mode, whose slices are handed out only while the
//!   device cannot be touching it (the abstraction's accessors are
//!   `unsafe` for exactly that reason);
//! - [`IrqVectors`] and [`IrqHandlerRegistration`]: MSI-X/INTx vectors and a
//!   handler whose state outlives nothing it points to (the abstraction ties
//!   handler and vectors by a borrow, which cannot be stored in one device
//!   structure).
//!
//! Everything else in the driver is safe code built on these wrappers.

use core::marker::PhantomData;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use kernel::{
    bindings,
    error::to_result,
    fs::File,
    pci,
    prelude::*,
    sync::poll::PollTable,
    sync::Arc,
    types::{ForeignOwnable, Opaque},
    uaccess::{UserPtr, UserSlice},
};

use crate::ivc_abi::{OutOfBounds, SharedMemory};

// ---------------------------------------------------------------------------
// Character device
// ---------------------------------------------------------------------------

/// What a character device does; implemented in safe code by the channel.
pub(crate) trait FileOps: Send + Sync + 'static {
    /// A process opened the device (`this` is what later calls get).
    fn open(this: &Arc<Self>) -> Result;
    /// The last reference to an open file went away.
    fn release(&self);
    /// `read(2)`: fill `out` from the channel.
    fn read(&self, out: &UserBuf, nonblock: bool) -> Result<usize>;
    /// `write(2)`: drain `input` into the channel.
    fn write(&self, input: &UserBuf, nonblock: bool) -> Result<usize>;
    /// `poll(2)`: register `table` with the wait queues and return the mask.
    fn poll(&self, file: &File, table: &PollTable<'_>) -> u32;
}

/// A registered misc device (`/dev/<name>`) whose files are served by `T`.
///
/// `misc` must stay the first field: `open` finds the registration from the
/// `struct miscdevice` pointer that `misc_open` leaves in `private_data`.
#[repr(C)]
#[pin_data(PinnedDrop)]
pub(crate) struct MiscDevice<T: FileOps> {
    #[pin]
    misc: Opaque<bindings::miscdevice>,
    ops: Arc<T>,
}

// SAFETY: `misc_register`/`misc_deregister` may be called from any thread and
// `ops` is `Send + Sync`.
unsafe impl<T: FileOps> Send for MiscDevice<T> {}
// SAFETY: no `&self` method mutates anything.
unsafe impl<T: FileOps> Sync for MiscDevice<T> {}

impl<T: FileOps> MiscDevice<T> {
    /// Registers `/dev/<name>` as a child of `parent` (so sysfs links the
    /// node to its PCI device); files opened on it hold a reference to `ops`.
    /// The registration must be dropped before `parent` is unbound.
    pub(crate) fn register<Ctx: kernel::device::DeviceContext>(
        name: &'static CStr,
        parent: &pci::Device<Ctx>,
        ops: Arc<T>,
    ) -> impl PinInit<Self, Error> {
        // SAFETY: `raw_pci` points to a live `struct pci_dev`; taking the
        // address of its embedded `struct device` reads nothing.
        let parent = unsafe { &raw mut (*raw_pci(parent)).dev };
        try_pin_init!(Self {
            // Initialised before `misc`: once registered, `open` may run at
            // once and reads `ops`.
            ops,
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                let mut raw: bindings::miscdevice = pin_init::zeroed();
                raw.minor = bindings::MISC_DYNAMIC_MINOR as i32;
                raw.name = name.as_char_ptr();
                raw.fops = &FileVTable::<T>::FOPS;
                raw.mode = 0o600;
                raw.parent = parent;
                // SAFETY: `slot` is valid for writes and pinned for the life of
                // `Self`, whose drop deregisters before the memory goes away.
                unsafe { slot.write(raw) };
                // SAFETY: `slot` holds an initialised `miscdevice` whose name
                // and fops are 'static.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
        })
    }
}

#[pinned_drop]
impl<T: FileOps> PinnedDrop for MiscDevice<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: registered in `register` (pin-init only yields a value if
        // `misc_register` succeeded); deregistered exactly once, here. Files
        // still open keep their own `Arc<T>`, not a pointer to `self`.
        unsafe { bindings::misc_deregister(self.misc.get()) };
    }
}

struct FileVTable<T: FileOps>(PhantomData<T>);

impl<T: FileOps> FileVTable<T> {
    const FOPS: bindings::file_operations = bindings::file_operations {
        owner: <crate::LocalModule as kernel::ModuleMetadata>::THIS_MODULE.as_ptr(),
        open: Some(Self::open),
        release: Some(Self::release),
        read: Some(Self::read),
        write: Some(Self::write),
        poll: Some(Self::poll),
        llseek: Some(bindings::noop_llseek),
        ..pin_init::zeroed()
    };

    /// # Safety
    /// Called by the VFS through `misc_open` with a file being opened on a
    /// device registered by [`MiscDevice::register`].
    unsafe extern "C" fn open(inode: *mut bindings::inode, file: *mut bindings::file) -> i32 {
        // SAFETY: `misc_open` stored the `struct miscdevice` pointer in
        // `private_data`; it is the first field of a `#[repr(C)] MiscDevice<T>`,
        // and `misc_open` holds the misc lock, so it cannot be deregistered
        // (and freed) during this call.
        let dev = unsafe { &*(*file).private_data.cast::<MiscDevice<T>>() };
        if let Err(e) = T::open(&dev.ops) {
            return e.to_errno();
        }
        // SAFETY: `inode` and `file` are the ones being opened. A stream has
        // no file position, as for pipes and sockets.
        let ret = unsafe { bindings::stream_open(inode, file) };
        if ret != 0 {
            dev.ops.release();
            return ret;
        }
        // SAFETY: the open call owns `private_data`; `release` takes the
        // reference back with `from_foreign`.
        unsafe { (*file).private_data = dev.ops.clone().into_foreign() };
        0
    }

    /// # Safety
    /// Called once by the VFS for a file opened by `open` above.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> i32 {
        // SAFETY: `private_data` holds the reference `open` stored; release
        // runs once, so taking it back is sound.
        let ops = unsafe { Arc::<T>::from_foreign((*file).private_data) };
        ops.release();
        0
    }

    /// Runs `f` with the channel of a file opened by `open` above.
    ///
    /// # Safety
    /// `(*file).private_data` must hold the `Arc<T>` that `open` stored.
    unsafe fn with_ops<R>(file: *mut bindings::file, f: impl FnOnce(&T) -> R) -> R {
        // SAFETY: per the contract; the reference lives until `release`, which
        // cannot run while a file operation is in progress.
        let ops = unsafe { <Arc<T> as ForeignOwnable>::borrow((*file).private_data) };
        f(&ops)
    }

    /// # Safety
    /// A file opened by `open`, `buf` a user pointer of `len` bytes.
    unsafe extern "C" fn read(
        file: *mut bindings::file,
        buf: *mut kernel::ffi::c_char,
        len: usize,
        _pos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: `file` is valid for the call.
        let nonblock = unsafe { (*file).f_flags } & bindings::O_NONBLOCK != 0;
        let out = UserBuf::new(UserPtr::from_ptr(buf.cast()), len);
        // SAFETY: `file` was opened by `open`.
        match unsafe { Self::with_ops(file, |ops| ops.read(&out, nonblock)) } {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    /// A file opened by `open`, `buf` a user pointer of `len` bytes.
    unsafe extern "C" fn write(
        file: *mut bindings::file,
        buf: *const kernel::ffi::c_char,
        len: usize,
        _pos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: `file` is valid for the call.
        let nonblock = unsafe { (*file).f_flags } & bindings::O_NONBLOCK != 0;
        let input = UserBuf::new(UserPtr::from_ptr(buf.cast_mut().cast()), len);
        // SAFETY: `file` was opened by `open`.
        match unsafe { Self::with_ops(file, |ops| ops.write(&input, nonblock)) } {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    /// A file opened by `open`; `table` null or a valid poll table.
    unsafe extern "C" fn poll(
        file: *mut bindings::file,
        table: *mut bindings::poll_table_struct,
    ) -> bindings::__poll_t {
        // SAFETY: `table` is null or valid for the duration of this call.
        let table = unsafe { PollTable::from_raw(table) };
        // SAFETY: the file is valid for this call and poll does not use
        // `fdget_pos`.
        let f = unsafe { File::from_raw_file(file) };
        // SAFETY: `file` was opened by `open`.
        unsafe { Self::with_ops(file, |ops| ops.poll(f, &table)) }
    }
}

// ---------------------------------------------------------------------------
// User buffers
// ---------------------------------------------------------------------------

/// The user buffer of one `read(2)` or `write(2)`: an address in the
/// caller's address space and a length. Nothing is assumed about the
/// address; every copy checks its range against the length, and the user
/// access helpers turn a bad address into `EFAULT`.
pub(crate) struct UserBuf {
    ptr: UserPtr,
    len: usize,
}

impl UserBuf {
    fn new(ptr: UserPtr, len: usize) -> Self {
        Self { ptr, len }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The user address of bytes `off..off + n`, which must lie inside.
    fn at(&self, off: usize, n: usize) -> Result<UserPtr> {
        match off.checked_add(n) {
            Some(end) if end <= self.len => Ok(self.ptr.wrapping_byte_add(off)),
            _ => Err(EFAULT),
        }
    }

    /// Copies bytes `off..off + dst.len()` of the buffer into `dst`.
    pub(crate) fn read_at(&self, off: usize, dst: &mut [u8]) -> Result {
        let p = self.at(off, dst.len())?;
        UserSlice::new(p, dst.len()).reader().read_slice(dst)
    }

    /// Copies `src` into bytes `off..off + src.len()` of the buffer.
    pub(crate) fn write_at(&self, off: usize, src: &[u8]) -> Result {
        let p = self.at(off, src.len())?;
        UserSlice::new(p, src.len()).writer().write_slice(src)
    }
}

// ---------------------------------------------------------------------------
// Shared memory
// ---------------------------------------------------------------------------

/// The C `struct pci_dev` behind a Rust PCI device.
fn raw_pci<Ctx: kernel::device::DeviceContext>(pdev: &pci::Device<Ctx>) -> *mut bindings::pci_dev {
    // `pci::Device` is `#[repr(transparent)]` over `Opaque<bindings::pci_dev>`
    // (its accessor for the pointer is private), so its address is the
    // address of the C structure; `Opaque` makes mutation through it sound.
    core::ptr::from_ref(pdev).cast_mut().cast()
}

/// A write-back cacheable kernel mapping of a PCI BAR holding shared memory.
///
/// The memory is shared with another VM (and the host) and is therefore never
/// exposed as a Rust reference: every access goes through volatile/atomic
/// operations with bounds checks, via the [`SharedMemory`] trait.
pub(crate) struct SharedMapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory usable from any CPU; all accesses are
// atomic or volatile.
unsafe impl Send for SharedMapping {}
// SAFETY: as above.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Maps BAR `bar` of `pdev` write-back cacheable. The caller keeps the
    /// device bound (and the BAR region requested) while the mapping exists.
    pub(crate) fn map_bar(pdev: &pci::Device<kernel::device::Bound>, bar: u32) -> Result<Self> {
        let start = pdev.resource_start(bar)?;
        let len = usize::try_from(pdev.resource_len(bar)?)?;
        if len == 0 {
            return Err(ENODEV);
        }
        // SAFETY: `[start, start+len)` is the BAR's bus address range, claimed
        // by the caller; `memremap` validates it and returns null on failure.
        let p = unsafe {
            bindings::memremap(start, len, bindings::MEMREMAP_WB as kernel::ffi::c_ulong)
        };
        let base = NonNull::new(p.cast::<u8>()).ok_or(ENOMEM)?;
        Ok(Self { base, len })
    }

    fn check(
        &self,
        off: usize,
        len: usize,
        align: usize,
    ) -> core::result::Result<*mut u8, OutOfBounds> {
        let end = off.checked_add(len).ok_or(OutOfBounds)?;
        if end > self.len || off % align != 0 {
            return Err(OutOfBounds);
        }
        // SAFETY: `off + len <= self.len`, inside the mapping.
        Ok(unsafe { self.base.as_ptr().add(off) })
    }

    fn word(&self, off: usize) -> core::result::Result<&AtomicU32, OutOfBounds> {
        let p = self.check(off, 4, 4)?;
        // SAFETY: `p` is 4-aligned and inside the mapping, which lives as long
        // as `self`; an `AtomicU32` may alias memory others write concurrently.
        Ok(unsafe { AtomicU32::from_ptr(p.cast::<u32>()) })
    }

    /// Copies bytes `from..from + n` of `user` into the mapping at `off`:
    /// a `write(2)` straight into the ring, without a bounce buffer.
    /// `EFAULT` for a bad user address (the mapping may then hold part of
    /// the bytes, which the channel does not publish); `EIO` for a range
    /// outside the mapping (the caller's layout validation prevents that).
    pub(crate) fn copy_from_user(
        &self,
        off: usize,
        user: &UserBuf,
        from: usize,
        n: usize,
    ) -> Result {
        let dst = self.check(off, n, 1).map_err(|_| EIO)?;
        let src = user.at(from, n)?;
        // SAFETY: `dst..dst + n` is inside the mapping (checked) and never a
        // Rust reference; `copy_from_user` is the kernel's user copy, opaque
        // to the compiler, so a peer racing with it yields torn bytes, never
        // undefined behaviour, and a bad user address only a short copy.
        let left = unsafe { bindings::copy_from_user(dst.cast(), src.as_const_ptr(), n) };
        if left != 0 {
            return Err(EFAULT);
        }
        Ok(())
    }

    /// Copies `n` bytes of the mapping at `off` into bytes `to..to + n` of
    /// `user`: a `read(2)` straight out of the ring. Errors as for
    /// [`copy_from_user`](Self::copy_from_user).
    pub(crate) fn copy_to_user(&self, off: usize, user: &UserBuf, to: usize, n: usize) -> Result {
        let src = self.check(off, n, 1).map_err(|_| EIO)?;
        let dst = user.at(to, n)?;
        // SAFETY: as in `copy_from_user`, with the roles swapped.
        let left = unsafe { bindings::copy_to_user(dst.as_mut_ptr(), src.cast_const().cast(), n) };
        if left != 0 {
            return Err(EFAULT);
        }
        Ok(())
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: `base` came from `memremap` and is unmapped once.
        unsafe { bindings::memunmap(self.base.as_ptr().cast()) };
    }
}

impl SharedMemory for SharedMapping {
    fn len(&self) -> usize {
        self.len
    }

    fn load_u32_acquire(&self, off: usize) -> core::result::Result<u32, OutOfBounds> {
        Ok(u32::from_le(self.word(off)?.load(Ordering::Acquire)))
    }

    fn load_u32_relaxed(&self, off: usize) -> core::result::Result<u32, OutOfBounds> {
        Ok(u32::from_le(self.word(off)?.load(Ordering::Relaxed)))
    }

    fn store_u32_release(&self, off: usize, v: u32) -> core::result::Result<(), OutOfBounds> {
        self.word(off)?.store(v.to_le(), Ordering::Release);
        Ok(())
    }

    fn store_u32_relaxed(&self, off: usize, v: u32) -> core::result::Result<(), OutOfBounds> {
        self.word(off)?.store(v.to_le(), Ordering::Relaxed);
        Ok(())
    }

    fn compare_exchange_u32(
        &self,
        off: usize,
        current: u32,
        new: u32,
    ) -> core::result::Result<core::result::Result<u32, u32>, OutOfBounds> {
        Ok(self
            .word(off)?
            .compare_exchange(
                current.to_le(),
                new.to_le(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .map(u32::from_le)
            .map_err(u32::from_le))
    }

    fn read_bytes(&self, off: usize, dst: &mut [u8]) -> core::result::Result<(), OutOfBounds> {
        let p = self.check(off, dst.len(), 1)?;
        // SAFETY: the source range is inside the mapping (checked) and `dst`
        // is ours. The peer may write the source concurrently: the copy is the
        // C `memcpy`, opaque to the compiler, so a race yields torn
        // data (which the protocol tolerates), never undefined behaviour.
        unsafe { bindings::memcpy(dst.as_mut_ptr().cast(), p.cast(), dst.len()) };
        Ok(())
    }

    fn write_bytes(&self, off: usize, src: &[u8]) -> core::result::Result<(), OutOfBounds> {
        let p = self.check(off, src.len(), 1)?;
        // SAFETY: the destination range is inside the mapping (checked); see
        // `read_bytes` for why a racing peer cannot cause undefined behaviour.
        unsafe { bindings::memcpy(p.cast(), src.as_ptr().cast(), src.len()) };
        Ok(())
    }

    fn fence_seqcst(&self) {
        core::sync::atomic::fence(Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Register BARs (MMIO or I/O ports)
// ---------------------------------------------------------------------------

/// A BAR mapped with `pci_iomap`, accessed with the `ioread`/`iowrite`
/// family, which handles both I/O-port and MMIO BARs.
pub(crate) struct IoRegion {
    pdev: NonNull<bindings::pci_dev>,
    base: NonNull<core::ffi::c_void>,
    len: usize,
}

// SAFETY: `ioread`/`iowrite` may be used from any context and CPU.
unsafe impl Send for IoRegion {}
// SAFETY: as above.
unsafe impl Sync for IoRegion {}

impl IoRegion {
    /// Maps the whole of BAR `bar`. The caller keeps the device bound while
    /// the region exists.
    pub(crate) fn map(pdev: &pci::Device<kernel::device::Bound>, bar: u32) -> Result<Self> {
        let len = usize::try_from(pdev.resource_len(bar)?)?;
        if len == 0 {
            return Err(ENODEV);
        }
        let raw = raw_pci(pdev);
        // SAFETY: `raw` is a valid bound device; `pci_iomap` returns null on
        // failure.
        let p = unsafe { bindings::pci_iomap(raw, bar as i32, 0) };
        let base = NonNull::new(p).ok_or(ENOMEM)?;
        let pdev = NonNull::new(raw).ok_or(EINVAL)?;
        Ok(Self { pdev, base, len })
    }

    fn at(&self, off: usize, width: usize) -> Result<*mut core::ffi::c_void> {
        match off.checked_add(width) {
            Some(end) if end <= self.len && off % width == 0 => {
                // SAFETY: inside the mapped BAR (checked).
                Ok(unsafe { self.base.as_ptr().cast::<u8>().add(off).cast() })
            }
            _ => Err(EINVAL),
        }
    }

    /// 32-bit register read.
    pub(crate) fn read32(&self, off: usize) -> Result<u32> {
        let p = self.at(off, 4)?;
        // SAFETY: `p` is an aligned register address inside the BAR.
        Ok(unsafe { bindings::ioread32(p) })
    }

    /// 32-bit register write.
    pub(crate) fn write32(&self, off: usize, val: u32) -> Result {
        let p = self.at(off, 4)?;
        // SAFETY: `p` is an aligned register address inside the BAR.
        unsafe { bindings::iowrite32(val, p) };
        Ok(())
    }

    /// String read (`rep insb` on an I/O BAR) from the byte register at `off`
    /// into all of `buf`.
    pub(crate) fn read_rep8(&self, off: usize, buf: &mut [u8]) -> Result {
        let p = self.at(off, 1)?;
        // SAFETY: `p` is a register inside the BAR; `buf` is ours for its
        // whole length.
        unsafe {
            bindings::ioread8_rep(
                p,
                buf.as_mut_ptr().cast(),
                buf.len() as kernel::ffi::c_ulong,
            )
        };
        Ok(())
    }

    /// String write (`rep outsl` on an I/O BAR) of `buf` as little-endian
    /// dwords to the register at `off`; `buf.len()` must be a multiple of 4.
    pub(crate) fn write_rep32(&self, off: usize, buf: &[u8]) -> Result {
        let p = self.at(off, 4)?;
        if buf.len() % 4 != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `p` is an aligned register inside the BAR; `buf` is ours
        // for `len / 4` dwords (x86 reads them unaligned without fault).
        unsafe {
            bindings::iowrite32_rep(
                p,
                buf.as_ptr().cast(),
                (buf.len() / 4) as kernel::ffi::c_ulong,
            )
        };
        Ok(())
    }

    /// String write (`rep outsb` on an I/O BAR) of all of `buf` to the byte
    /// register at `off`.
    pub(crate) fn write_rep8(&self, off: usize, buf: &[u8]) -> Result {
        let p = self.at(off, 1)?;
        // SAFETY: `p` is a register inside the BAR; `buf` is ours for its
        // whole length.
        unsafe {
            bindings::iowrite8_rep(p, buf.as_ptr().cast(), buf.len() as kernel::ffi::c_ulong)
        };
        Ok(())
    }
}

impl Drop for IoRegion {
    fn drop(&mut self) {
        // SAFETY: `base` came from `pci_iomap` on this device, unmapped once.
        unsafe { bindings::pci_iounmap(self.pdev.as_ptr(), self.base.as_ptr()) };
    }
}

// ---------------------------------------------------------------------------
// Device-visible memory
// ---------------------------------------------------------------------------

/// Tells the DMA layer the device can reach all of memory (ivc-vmm reads
/// guest RAM at any address). Call once in probe, before [`DmaBuffer::alloc`].
pub(crate) fn set_dma_mask_64(pdev: &pci::Device<kernel::device::Core<'_>>) -> Result {
    use kernel::dma::Device as _;
    // SAFETY: called from probe before any DMA allocation for this device,
    // so nothing uses the mask concurrently.
    unsafe { pdev.dma_set_mask_and_coherent(kernel::dma::DmaMask::new::<64>()) }
}

/// A buffer the device reads and writes (`dma_alloc_coherent`: physically
/// contiguous, and its bus address is what the device is given).
///
/// The device touches the buffer only while the CPU performs an access the
/// driver issues inside [`DmaBuffer::lend`] (ivc-pio's descriptor `GO`: the
/// VMM copies while the vCPU is stopped in that exit). `lend` takes
/// `&mut self`, so no slice from [`DmaBuffer::bytes`] or
/// [`DmaBuffer::bytes_mut`] is alive while the device may access the
/// memory, which is the condition `Coherent`'s accessors make unsafe.
pub(crate) struct DmaBuffer(kernel::dma::Coherent<[u8]>);

impl DmaBuffer {
    /// `len` zeroed bytes of device-visible memory.
    pub(crate) fn alloc(pdev: &pci::Device<kernel::device::Core<'_>>, len: usize) -> Result<Self> {
        let dev: &kernel::device::Device<kernel::device::Bound> = pdev.as_ref();
        Ok(Self(kernel::dma::Coherent::<u8>::zeroed_slice(
            dev, len, GFP_KERNEL,
        )?))
    }

    /// The address the device knows the buffer by.
    pub(crate) fn dma_address(&self) -> u64 {
        self.0.dma_address()
    }

    /// The buffer's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the device accesses the buffer only inside `lend`, which
        // needs `&mut self` and so cannot overlap this borrow (type doc).
        unsafe { self.0.as_ref() }
    }

    /// The buffer's bytes, to fill.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; `&mut self` also excludes any other slice.
        unsafe { self.0.as_mut() }
    }

    /// Runs `f`, during which the device may read and write the buffer.
    pub(crate) fn lend<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // The CPU's stores into the buffer are issued before the access in
        // `f`, and its loads after it (the port access is an opaque call
        // too, and a VM exit serialises the vCPU).
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        let r = f();
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        r
    }
}

/// Enables I/O and memory decoding (the Rust abstraction only offers the
/// memory-only variant, and the ivc-pio device is all I/O BAR).
pub(crate) fn enable_device(pdev: &pci::Device<kernel::device::Core<'_>>) -> Result {
    // SAFETY: a device in probe (`Core` context) may be enabled; the device
    // data calls `disable_device` when it is dropped at unbind.
    to_result(unsafe { bindings::pci_enable_device(raw_pci(pdev)) })
}

/// Undoes [`enable_device`].
pub(crate) fn disable_device(pdev: &pci::Device) {
    // SAFETY: paired with a successful `pci_enable_device` on this device.
    unsafe { bindings::pci_disable_device(raw_pci(pdev)) };
}

/// Claims all of the device's BARs for `name` (`/proc/ioports`,
/// `/proc/iomem`), so no other driver can map them while we are bound.
pub(crate) fn request_regions(
    pdev: &pci::Device<kernel::device::Core<'_>>,
    name: &'static CStr,
) -> Result {
    // SAFETY: a device in probe may claim its regions; `name` is 'static, as
    // the resource tree keeps the pointer; `release_regions` undoes it.
    to_result(unsafe { bindings::pci_request_regions(raw_pci(pdev), name.as_char_ptr()) })
}

/// Undoes [`request_regions`].
pub(crate) fn release_regions(pdev: &pci::Device) {
    // SAFETY: paired with a successful `pci_request_regions` on this device.
    unsafe { bindings::pci_release_regions(raw_pci(pdev)) };
}

// ---------------------------------------------------------------------------
// Interrupts
// ---------------------------------------------------------------------------

/// MSI-X (or MSI, or INTx) vectors allocated for a device.
pub(crate) struct IrqVectors {
    pdev: NonNull<bindings::pci_dev>,
    count: u32,
}

// SAFETY: freeing vectors is allowed from any process context.
unsafe impl Send for IrqVectors {}
// SAFETY: no interior mutability.
unsafe impl Sync for IrqVectors {}

impl IrqVectors {
    /// Allocates between 1 and `max` vectors: MSI-X only if `msix_only`,
    /// else MSI-X preferred, then MSI, then INTx.
    pub(crate) fn alloc(
        pdev: &pci::Device<kernel::device::Core<'_>>,
        max: u32,
        msix_only: bool,
    ) -> Result<Self> {
        let raw = raw_pci(pdev);
        let flags = if msix_only {
            bindings::PCI_IRQ_MSIX
        } else {
            bindings::PCI_IRQ_MSIX | bindings::PCI_IRQ_MSI | bindings::PCI_IRQ_INTX
        };
        // SAFETY: `raw` is a valid device in probe.
        let n = unsafe { bindings::pci_alloc_irq_vectors(raw, 1, max, flags) };
        if n < 0 {
            return Err(Error::from_errno(n));
        }
        Ok(Self {
            pdev: NonNull::new(raw).ok_or(EINVAL)?,
            count: n as u32,
        })
    }

    /// Linux IRQ number of vector `index`.
    pub(crate) fn irq(&self, index: u32) -> Result<u32> {
        if index >= self.count {
            return Err(EINVAL);
        }
        // SAFETY: the device has `count` vectors allocated.
        let irq = unsafe { bindings::pci_irq_vector(self.pdev.as_ptr(), index) };
        if irq < 0 {
            return Err(Error::from_errno(irq));
        }
        Ok(irq as u32)
    }

    /// Whether the vectors are MSI-X (each peer can target its own vector).
    pub(crate) fn is_msix(&self) -> bool {
        // SAFETY: valid device.
        unsafe { (*self.pdev.as_ptr()).msix_enabled() != 0 }
    }
}

impl Drop for IrqVectors {
    fn drop(&mut self) {
        // SAFETY: vectors were allocated in `alloc`; all handlers registered
        // on them are freed first (`IrqHandlerRegistration` borrows nothing,
        // but the device data drops it before the vectors: field order).
        unsafe { bindings::pci_free_irq_vectors(self.pdev.as_ptr()) };
    }
}

/// What an interrupt does; runs in hard-IRQ context, must not sleep.
pub(crate) trait IrqHandler: Send + Sync + 'static {
    /// Handles one interrupt; returns whether it was ours.
    fn handle(&self) -> bool;
}

/// A handler registered with `request_irq`; freed on drop.
pub(crate) struct IrqHandlerRegistration<H: IrqHandler> {
    irq: u32,
    handler: Arc<H>,
}

impl<H: IrqHandler> IrqHandlerRegistration<H> {
    /// Registers `handler` on `irq` (shared, so INTx fallback works).
    pub(crate) fn register(irq: u32, name: &'static CStr, handler: Arc<H>) -> Result<Self> {
        let cookie = core::ptr::from_ref::<H>(&handler)
            .cast_mut()
            .cast::<core::ffi::c_void>();
        // SAFETY: `cookie` points into the `Arc`, which this registration keeps
        // alive until `free_irq` returns in `drop`; `name` is 'static.
        to_result(unsafe {
            bindings::request_irq(
                irq,
                Some(Self::trampoline),
                bindings::IRQF_SHARED as kernel::ffi::c_ulong,
                name.as_char_ptr(),
                cookie,
            )
        })?;
        Ok(Self { irq, handler })
    }

    /// # Safety
    /// Called by the IRQ core with the cookie given to `request_irq`.
    unsafe extern "C" fn trampoline(
        _irq: i32,
        cookie: *mut core::ffi::c_void,
    ) -> bindings::irqreturn_t {
        // SAFETY: the cookie is the `H` kept alive by the registration.
        let h = unsafe { &*cookie.cast::<H>() };
        if h.handle() {
            bindings::irqreturn::IRQ_HANDLED
        } else {
            bindings::irqreturn::IRQ_NONE
        }
    }
}

impl<H: IrqHandler> Drop for IrqHandlerRegistration<H> {
    fn drop(&mut self) {
        let cookie = core::ptr::from_ref::<H>(&self.handler)
            .cast_mut()
            .cast::<core::ffi::c_void>();
        // SAFETY: registered with this irq and cookie; `free_irq` waits for
        // running handlers, after which the cookie is no longer used.
        unsafe { bindings::free_irq(self.irq, cookie) };
    }
}

// ---------------------------------------------------------------------------
// Work items
// ---------------------------------------------------------------------------

/// Runs a pending instance of `work` now instead of at its timer, and waits
/// until it and any running instance have returned (`flush_delayed_work`).
///
/// Not `cancel_delayed_work_sync`: a cancelled item never runs, so the
/// reference its owning pointer (an `Arc`) handed to the queue would leak.
/// A flushed one runs and drops it. The caller makes sure the item does not
/// queue itself again (the poller's `removed` check).
pub(crate) fn flush_delayed_work<T>(work: &kernel::workqueue::DelayedWork<T>) {
    // CAST: `DelayedWork` is `repr(transparent)` over
    // `Opaque<bindings::delayed_work>`, itself transparent over the C struct.
    let raw = core::ptr::from_ref(work)
        .cast_mut()
        .cast::<bindings::delayed_work>();
    // SAFETY: `raw` points to the initialised `delayed_work` inside `work`,
    // which the caller keeps alive across the call.
    unsafe { bindings::flush_delayed_work(raw) };
}

// ---------------------------------------------------------------------------
// PCI ids
// ---------------------------------------------------------------------------

/// A `pci::DeviceId` matching exactly `vendor:device`, any subsystem, for a
/// vendor the kernel has no `pci::Vendor` constant for.
pub(crate) const fn pci_device_id(vendor: u16, device: u16) -> pci::DeviceId {
    const ANY: u32 = !0;
    let raw = bindings::pci_device_id {
        vendor: vendor as u32,
        device: device as u32,
        subvendor: ANY,
        subdevice: ANY,
        class: 0,
        class_mask: 0,
        driver_data: 0,
        override_only: 0,
    };
    // SAFETY: `pci::DeviceId` is `#[repr(transparent)]` over
    // `bindings::pci_device_id` and adds no invariant beyond holding a valid
    // id, which `raw` is.
    unsafe { core::mem::transmute::<bindings::pci_device_id, pci::DeviceId>(raw) }
}
