//! The PCI devices a test can give a guest, and their QEMU arguments.

use std::path::{Path, PathBuf};

/// A device attached to a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// `ivshmem-plain`: BAR2 backed by the host file `mem_path`, mapped shared,
    /// no interrupts (the `shm-poll` variant). Guests given the same file share
    /// the memory, and the host test can read and write it too (it is the
    /// guests' memory itself, not a copy). QEMU creates the file if it does
    /// not exist; an existing one must hold at least `size` bytes. `size` must
    /// be a power of two (it becomes a BAR).
    /// Put the file on tmpfs: see [`ScratchDir`](crate::ScratchDir).
    IvshmemPlain {
        /// The backing file (not a directory: QEMU would make a private,
        /// unlinked file in it and nothing would be shared).
        mem_path: PathBuf,
        /// Size in bytes, a power of two.
        size: u64,
    },
    /// `ivshmem-doorbell`: shared memory and doorbells obtained from an
    /// ivshmem-server compatible server listening on `socket` (the `shm-irq`
    /// variant). The server must be listening before the guest starts.
    IvshmemDoorbell {
        /// The server's UNIX socket.
        socket: PathBuf,
        /// Number of MSI-X vectors, at least 1.
        vectors: u32,
    },
    /// Arguments appended to QEMU's command line as they are.
    Raw(Vec<String>),
    /// An ivc-vmm device (guests run by [`run_scenario`](crate::run_scenario)
    /// only; QEMU has no such device).
    Ivc(crate::vmm::IvcDevice),
}

impl Device {
    /// An `ivc-pio` device of an ivc-vmm guest, joined to `server`.
    pub fn ivc_pio(server: &str) -> Self {
        Device::Ivc(crate::vmm::IvcDevice::Pio {
            server: server.into(),
        })
    }
    /// An `ivc-shm` device without interrupts, joined to `server`.
    pub fn ivc_shm_poll(server: &str) -> Self {
        Device::Ivc(crate::vmm::IvcDevice::ShmPoll {
            server: server.into(),
        })
    }
    /// An `ivc-shm` device with doorbells and MSI-X, joined to `server`.
    pub fn ivc_shm_irq(server: &str) -> Self {
        Device::Ivc(crate::vmm::IvcDevice::ShmIrq {
            server: server.into(),
        })
    }
}

impl Device {
    /// QEMU arguments for this device. `index` is the device's position in
    /// the guest's list and makes the object/chardev ids unique.
    pub(crate) fn qemu_args(&self, index: usize) -> Result<Vec<String>, String> {
        Ok(match self {
            Device::IvshmemPlain { mem_path, size } => {
                if !size.is_power_of_two() {
                    return Err(format!(
                        "ivshmem-plain size {size} is not a power of two (it is a PCI BAR)"
                    ));
                }
                let id = format!("hmem{index}");
                vec![
                    "-object".into(),
                    format!(
                        "memory-backend-file,id={id},share=on,mem-path={},size={size}",
                        opt_value(mem_path)?
                    ),
                    "-device".into(),
                    format!("ivshmem-plain,memdev={id}"),
                ]
            }
            Device::IvshmemDoorbell { socket, vectors } => {
                if *vectors == 0 {
                    return Err("ivshmem-doorbell needs at least one vector".into());
                }
                let id = format!("ivs{index}");
                vec![
                    "-chardev".into(),
                    format!("socket,path={},id={id}", opt_value(socket)?),
                    "-device".into(),
                    format!("ivshmem-doorbell,chardev={id},vectors={vectors}"),
                ]
            }
            Device::Raw(args) => args.clone(),
            Device::Ivc(d) => {
                return Err(format!(
                "the ivc-vmm device {} cannot be given to a QEMU guest (run it with run_scenario)",
                d.kind()
            ))
            }
        })
    }
}

/// A path as a value inside a QEMU `key=value,...` option: QEMU reads `,,` as
/// a literal comma, and the option string must be UTF-8 to be built here.
pub(crate) fn opt_value(path: &Path) -> Result<String, String> {
    let s = path
        .to_str()
        .ok_or_else(|| format!("path {} is not UTF-8", path.display()))?;
    Ok(s.replace(',', ",,"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ivshmem_plain_args() {
        let d = Device::IvshmemPlain {
            mem_path: "/dev/shm/x/ring".into(),
            size: 1 << 20,
        };
        assert_eq!(
            d.qemu_args(2).expect("valid"),
            [
                "-object",
                "memory-backend-file,id=hmem2,share=on,mem-path=/dev/shm/x/ring,size=1048576",
                "-device",
                "ivshmem-plain,memdev=hmem2",
            ]
        );
    }

    #[test]
    fn ivshmem_plain_rejects_non_power_of_two() {
        let d = Device::IvshmemPlain {
            mem_path: "/dev/shm/r".into(),
            size: 3 << 20,
        };
        let err = d.qemu_args(0).expect_err("3 MiB");
        assert!(err.contains("power of two"), "{err}");
    }

    #[test]
    fn ivshmem_doorbell_args() {
        let d = Device::IvshmemDoorbell {
            socket: "/tmp/s/ivshmem.sock".into(),
            vectors: 2,
        };
        assert_eq!(
            d.qemu_args(0).expect("valid"),
            [
                "-chardev",
                "socket,path=/tmp/s/ivshmem.sock,id=ivs0",
                "-device",
                "ivshmem-doorbell,chardev=ivs0,vectors=2",
            ]
        );
        let none = Device::IvshmemDoorbell {
            socket: "/tmp/s".into(),
            vectors: 0,
        };
        assert!(none.qemu_args(0).is_err());
    }

    #[test]
    fn raw_args_pass_through() {
        let d = Device::Raw(vec!["-device".into(), "isa-debug-exit".into()]);
        assert_eq!(d.qemu_args(7).expect("raw"), ["-device", "isa-debug-exit"]);
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let d = Device::IvshmemPlain {
            mem_path: "/tmp/a,b".into(),
            size: 4096,
        };
        let args = d.qemu_args(0).expect("valid");
        assert!(
            args[1].contains("mem-path=/tmp/a,,b,size=4096"),
            "{}",
            args[1]
        );
    }
}
