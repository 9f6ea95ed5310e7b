// SPDX-License-Identifier: GPL-2.0

//! A misc character device (`/dev/<name>`) with our own file operations,
//! because `kernel::miscdevice` has no `poll` hook: the VFS entry points
//! here turn raw `struct file` calls into calls of the safe [`FileOps`].

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
