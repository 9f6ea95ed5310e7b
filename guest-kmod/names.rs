// SPDX-License-Identifier: GPL-2.0

//! Device node names `ivc0` … `ivc15`, handed out lowest-free first.
//!
//! The misc device keeps a pointer to its name for as long as it is
//! registered, so the names are static strings; sixteen channels per guest
//! is far more than any configuration uses.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;

const NAMES: [&CStr; 16] = [
    c"ivc0", c"ivc1", c"ivc2", c"ivc3", c"ivc4", c"ivc5", c"ivc6", c"ivc7", c"ivc8", c"ivc9",
    c"ivc10", c"ivc11", c"ivc12", c"ivc13", c"ivc14", c"ivc15",
];

static IN_USE: AtomicU32 = AtomicU32::new(0);

/// A claimed name; released on drop.
pub(crate) struct Name(usize);

impl Name {
    /// Claims the lowest free name; `EBUSY` when all are taken.
    pub(crate) fn claim() -> Result<Self> {
        let mut cur = IN_USE.load(Ordering::Relaxed);
        loop {
            let free = (!cur).trailing_zeros() as usize;
            if free >= NAMES.len() {
                return Err(EBUSY);
            }
            match IN_USE.compare_exchange(
                cur,
                cur | (1 << free),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Name(free)),
                Err(now) => cur = now,
            }
        }
    }

    /// The node name, e.g. `ivc0`.
    pub(crate) fn as_cstr(&self) -> &'static CStr {
        NAMES[self.0]
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        IN_USE.fetch_and(!(1 << self.0), Ordering::AcqRel);
    }
}
