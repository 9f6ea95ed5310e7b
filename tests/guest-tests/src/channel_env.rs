//! The two shared-memory setups the tests give their guests: an
//! `ivshmem-plain` file (shm-poll) or an `ivshmem-doorbell` on our own
//! rendezvous server (shm-irq), each with its scratch directory.

use ivc_guest_harness::{Device, ScratchDir};
use ivc_rendezvous::{Server, ServerConfig, ServerThread};

/// A shared-memory channel for guests; keep it alive while they run.
pub struct ChannelEnv {
    /// What to give each guest (`GuestSpec::device`).
    pub device: Device,
    /// The backing file or socket lives here; removed on drop.
    pub scratch: ScratchDir,
    server: Option<ServerThread>,
}

impl ChannelEnv {
    /// `ivshmem-plain` over a `size`-byte file on tmpfs (no interrupts).
    pub fn plain(size: u64) -> Self {
        let scratch = ScratchDir::new().expect("scratch dir");
        let device = Device::IvshmemPlain {
            mem_path: scratch.join("shm"),
            size,
        };
        Self {
            device,
            scratch,
            server: None,
        }
    }

    /// `ivshmem-doorbell` (one vector) on a rendezvous server of ours
    /// serving `size` bytes of shared memory.
    pub fn doorbell(size: u64) -> Self {
        let scratch = ScratchDir::new().expect("scratch dir");
        let socket = scratch.join("ivshmem.sock");
        let server = Server::bind(ServerConfig::new(&socket, size, 1))
            .expect("bind rendezvous server")
            .spawn()
            .expect("start rendezvous server");
        let device = Device::IvshmemDoorbell { socket, vectors: 1 };
        Self {
            device,
            scratch,
            server: Some(server),
        }
    }

    /// Stops the server (if any) and checks it shut down cleanly.
    pub fn finish(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().expect("rendezvous server shut down cleanly");
        }
    }
}
