// SPDX-License-Identifier: GPL-2.0

//! Work items: flushing a delayed work item, which the workqueue abstraction
//! does not offer.

use kernel::bindings;

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
