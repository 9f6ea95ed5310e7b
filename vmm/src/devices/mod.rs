//! Legacy devices every guest has.

pub mod debug_exit;
pub mod i8042;
pub mod serial;
