// SPDX-License-Identifier: GPL-2.0

//! A misc character device (`/dev/<name>`) with our own file operations,
//! because `kernel::miscdevice` has no `poll` hook: the VFS entry points
//! here turn raw `struct file` calls into calls of the safe [`FileOps`].
//!
//! Each open file remembers whether it was opened with `O_EXCL` (which the
//! VFS clears from `f_flags` once `open` returns): such a file is an
//! *exclusive* file, the one through which a process maps the channel
//! (see docs/driver.md, "Mapping the ring").

use core::marker::PhantomData;

use kernel::{
    bindings,
    error::to_result,
    fs::File,
    pci,
    prelude::*,
    sync::poll::PollTable,
    sync::Arc,
    types::{ForeignOwnable, Opaque},
    uaccess::UserPtr,
};

use super::pci_dev::raw_pci;
use super::user_buf::UserBuf;
use super::vm_area::{InodeMappings, MmapArea};

/// What a character device does; implemented in safe code by the channel.
/// `excl` says whether the file was opened with `O_EXCL`.
pub(crate) trait FileOps: Send + Sync + 'static {
    /// A process opened the device (`this` is what later calls get);
    /// `exclusive` is `Some` for an `O_EXCL` open and holds the device
    /// inode, whose user mappings it can remove.
    fn open(this: &Arc<Self>, exclusive: Option<InodeMappings>) -> Result;
    /// The last reference to an open file went away.
    fn release(&self, excl: bool);
    /// `read(2)`: fill `out` from the channel.
    fn read(&self, excl: bool, out: &UserBuf, nonblock: bool) -> Result<usize>;
    /// `write(2)`: drain `input` into the channel.
    fn write(&self, excl: bool, input: &UserBuf, nonblock: bool) -> Result<usize>;
    /// `poll(2)`: register `table` with the wait queues and return the mask.
    fn poll(&self, excl: bool, file: &File, table: &PollTable<'_>) -> u32;
    /// `mmap(2)`: check and fill `area`.
    fn mmap(&self, excl: bool, area: &MmapArea<'_>) -> Result;
    /// `ioctl(2)`: command `cmd` with argument `arg` (an integer or a user
    /// address, depending on `cmd`).
    fn ioctl(&self, excl: bool, cmd: u32, arg: usize) -> Result<isize>;
}

/// What an open file's `private_data` owns.
struct OpenFile<T: FileOps> {
    ops: Arc<T>,
    excl: bool,
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
        mmap: Some(Self::mmap),
        unlocked_ioctl: Some(Self::ioctl),
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
        // SAFETY: `file` is valid for the call. `O_EXCL` is still in
        // `f_flags` here; the VFS clears it after `open` returns.
        let excl = unsafe { (*file).f_flags } & bindings::O_EXCL != 0;
        let exclusive = if excl {
            // SAFETY: `inode` is the inode of the file being opened.
            match unsafe { InodeMappings::new(inode) } {
                Some(m) => Some(m),
                None => return ENODEV.to_errno(),
            }
        } else {
            None
        };
        if let Err(e) = T::open(&dev.ops, exclusive) {
            return e.to_errno();
        }
        let undo = |e: i32| {
            dev.ops.release(excl);
            e
        };
        // SAFETY: `inode` and `file` are the ones being opened. A stream has
        // no file position, as for pipes and sockets.
        let ret = unsafe { bindings::stream_open(inode, file) };
        if ret != 0 {
            return undo(ret);
        }
        let open = match KBox::new(
            OpenFile {
                ops: dev.ops.clone(),
                excl,
            },
            GFP_KERNEL,
        ) {
            Ok(b) => b,
            Err(_) => return undo(ENOMEM.to_errno()),
        };
        // SAFETY: the open call owns `private_data`; `release` takes the
        // box back with `from_foreign`.
        unsafe { (*file).private_data = open.into_foreign() };
        0
    }

    /// # Safety
    /// Called once by the VFS for a file opened by `open` above.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> i32 {
        // SAFETY: `private_data` holds the box `open` stored; release runs
        // once, so taking it back is sound.
        let open = unsafe { KBox::<OpenFile<T>>::from_foreign((*file).private_data) };
        open.ops.release(open.excl);
        0
    }

    /// Runs `f` with the channel of a file opened by `open` above.
    ///
    /// # Safety
    /// `(*file).private_data` must hold the box that `open` stored.
    unsafe fn with_ops<R>(file: *mut bindings::file, f: impl FnOnce(&T, bool) -> R) -> R {
        // SAFETY: per the contract; the box lives until `release`, which
        // cannot run while a file operation is in progress.
        let open = unsafe { <KBox<OpenFile<T>> as ForeignOwnable>::borrow((*file).private_data) };
        f(&open.ops, open.excl)
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
        match unsafe { Self::with_ops(file, |ops, excl| ops.read(excl, &out, nonblock)) } {
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
        match unsafe { Self::with_ops(file, |ops, excl| ops.write(excl, &input, nonblock)) } {
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
        unsafe { Self::with_ops(file, |ops, excl| ops.poll(excl, f, &table)) }
    }

    /// # Safety
    /// A file opened by `open`; `vma` the area being set up for it.
    unsafe extern "C" fn mmap(
        file: *mut bindings::file,
        vma: *mut bindings::vm_area_struct,
    ) -> kernel::ffi::c_int {
        // SAFETY: the VFS calls `mmap` with an area in its initial setup,
        // under the mmap write lock, for the duration of this call.
        let area = unsafe { MmapArea::from_raw(vma) };
        // SAFETY: `file` was opened by `open`.
        match unsafe { Self::with_ops(file, |ops, excl| ops.mmap(excl, &area)) } {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    /// A file opened by `open`.
    unsafe extern "C" fn ioctl(
        file: *mut bindings::file,
        cmd: kernel::ffi::c_uint,
        arg: kernel::ffi::c_ulong,
    ) -> kernel::ffi::c_long {
        // SAFETY: `file` was opened by `open`.
        match unsafe { Self::with_ops(file, |ops, excl| ops.ioctl(excl, cmd, arg)) } {
            Ok(v) => v as kernel::ffi::c_long,
            Err(e) => e.to_errno() as kernel::ffi::c_long,
        }
    }
}
