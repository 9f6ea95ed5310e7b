//! Legacy devices every guest has, and the ivc devices (`--ivc`).

pub mod debug_exit;
pub mod i8042;
pub mod ivc_pio;
pub mod ivc_setup;
pub mod ivc_shm;
pub mod peer_watcher;
pub mod ratelimit;
pub mod serial;
pub mod shm_mapping;
