//! Building the `--ivc` devices: join the rendezvous server (or open the
//! file), map the shared memory, create the device, plug it in, and start
//! the thread that follows peers joining and leaving.

use std::fs::{File, OpenOptions};
use std::sync::{Arc, Mutex};

use ivc_rendezvous::{Client, ClientEvent, ClientOptions};
use log::info;

use super::ivc_pio::IvcPio;
use super::ivc_shm::doorbell::Doorbells;
use super::ivc_shm::shm_region::ShmRegion;
use super::ivc_shm::{IvcShm, SharedDoorbells};
use super::peer_watcher::{self, NoListener, PeerListener};
use super::shm_mapping::ShmMapping;
use crate::ivc_spec::{IvcSpec, ShmSource};
use crate::machine::{Machine, MachineError};
use crate::pci::msix::Msix;

fn err(spec: &IvcSpec, what: impl std::fmt::Display) -> MachineError {
    MachineError::Device(format!("--ivc {spec}: {what}"))
}

/// How long to look for a protocol error right after setup.
const SETUP_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// Joins the server. Our client knows its setup is complete after its own
/// `vectors`-th eventfd; a server with more vectors sends more, which the
/// client reports as an error on the next read. Reading once here turns
/// that misconfiguration into a start-up error instead of a watcher thread
/// that dies later (and a server that then announces us as gone). An
/// ordinary event read here is handed to the watcher.
fn connect(
    spec: &IvcSpec,
    socket: &std::path::Path,
    vectors: u32,
) -> Result<(Client, Option<ClientEvent>), MachineError> {
    let mut c =
        Client::connect_with(socket, &ClientOptions::new(vectors)).map_err(|e| err(spec, e))?;
    let first = c.next_event(Some(SETUP_CHECK)).map_err(|e| {
        err(
            spec,
            format!(
                "rendezvous server: {e} (does vectors={vectors} match the server's --vectors?)"
            ),
        )
    })?;
    info!(
        "{}: joined {} as peer {} ({} bytes of shared memory, {} vectors)",
        spec.kind(),
        socket.display(),
        c.id(),
        c.shm_size(),
        vectors
    );
    Ok((c, first))
}

fn map(spec: &IvcSpec, file: &File, size: u64) -> Result<Arc<ShmMapping>, MachineError> {
    ShmMapping::new(file, size)
        .map(Arc::new)
        .map_err(|e| err(spec, format!("mapping the shared memory: {e}")))
}

/// A plain file as shared memory (ivshmem-plain style): created with
/// `size` bytes if missing or empty, otherwise it must have that size.
fn open_file(spec: &IvcSpec, path: &std::path::Path, size: u64) -> Result<File, MachineError> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| err(spec, format!("{}: {e}", path.display())))?;
    let len = f.metadata().map_err(|e| err(spec, e))?.len();
    if len == 0 {
        f.set_len(size).map_err(|e| err(spec, e))?;
    } else if len != size {
        return Err(err(
            spec,
            format!("{} has {len} bytes, not size={size}", path.display()),
        ));
    }
    Ok(f)
}

/// Keeps the doorbell table in step with the server's announcements.
struct DoorbellListener(SharedDoorbells);

impl PeerListener for DoorbellListener {
    fn joined(&mut self, id: u16, client: &Client) {
        let fds = clone_fds(client.peer_vectors(id).unwrap_or(&[]));
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_peer(id, fds);
    }
    fn left(&mut self, id: u16, _vectors: &[vmm_sys_util::eventfd::EventFd]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_peer(id);
    }
}

fn clone_fds(fds: &[vmm_sys_util::eventfd::EventFd]) -> Vec<vmm_sys_util::eventfd::EventFd> {
    fds.iter()
        .filter_map(|f| match f.try_clone() {
            Ok(c) => Some(c),
            Err(e) => {
                log::error!("ivc-shm: duplicating an eventfd: {e}");
                None
            }
        })
        .collect()
}

/// What a device has to say when the VM stops (ivc-pio: its exits and
/// bytes); `None` for devices with nothing to report.
pub type Summary = Box<dyn Fn() -> Option<String> + Send>;

/// Adds the device `spec` describes to `machine`.
pub fn add_ivc_device(machine: &Machine, spec: &IvcSpec) -> Result<Summary, MachineError> {
    let mut summary: Summary = Box::new(|| None);
    let res = machine.resources();
    match spec {
        IvcSpec::Pio { socket, vectors } => {
            let (client, first) = connect(spec, socket, *vectors)?;
            let mapping = map(spec, client.shm(), client.shm_size())?;
            let mut dev =
                IvcPio::new(mapping.clone(), Some(client.id())).map_err(|e| err(spec, e))?;
            dev.set_guest_ram(Box::new(machine.guest_memory()));
            let dev = Arc::new(Mutex::new(dev));
            machine.add_pci_device(None, dev.clone())?;
            let seen = dev.clone();
            summary = Box::new(move || {
                let t = seen.lock().unwrap_or_else(|e| e.into_inner()).traffic();
                Some(format!("ivc-pio traffic: {t}"))
            });
            super::ivc_pio::spawn_heartbeat(dev).map_err(|e| err(spec, e))?;
            peer_watcher::spawn(
                "ivc-pio".into(),
                client,
                first,
                mapping,
                Box::new(NoListener),
            )
            .map_err(|e| err(spec, e))?;
        }
        IvcSpec::ShmPoll(ShmSource::File { path, size }) => {
            let f = open_file(spec, path, *size)?;
            let mapping = map(spec, &f, *size)?;
            let dev =
                IvcShm::new(ShmRegion::new(mapping, res), 0, None).map_err(|e| err(spec, e))?;
            machine.add_pci_device(None, Arc::new(Mutex::new(dev)))?;
        }
        IvcSpec::ShmPoll(ShmSource::Server { socket, vectors }) => {
            let (client, first) = connect(spec, socket, *vectors)?;
            let mapping = map(spec, client.shm(), client.shm_size())?;
            let dev = IvcShm::new(
                ShmRegion::new(mapping.clone(), res),
                u32::from(client.id()),
                None,
            )
            .map_err(|e| err(spec, e))?;
            machine.add_pci_device(None, Arc::new(Mutex::new(dev)))?;
            peer_watcher::spawn(
                "ivc-shm".into(),
                client,
                first,
                mapping,
                Box::new(NoListener),
            )
            .map_err(|e| err(spec, e))?;
        }
        IvcSpec::ShmIrq { socket, vectors } => {
            let (client, first) = connect(spec, socket, *vectors)?;
            let mapping = map(spec, client.shm(), client.shm_size())?;
            let n = u16::try_from(*vectors).map_err(|e| err(spec, e))?;
            let mut msix = Msix::new(n, res.router()).map_err(|e| err(spec, e))?;
            // Our own vectors' eventfds become the MSI-X irqfds: a peer's
            // doorbell ioeventfd writes them, KVM injects the MSI.
            for (v, fd) in client.own_vectors().iter().enumerate() {
                let fd = fd.try_clone().map_err(|e| err(spec, e))?;
                msix.set_vector_eventfd(v, fd).map_err(|e| err(spec, e))?;
            }
            let doorbells: SharedDoorbells = Arc::new(Mutex::new(Doorbells::new(res.clone())));
            {
                let mut d = doorbells.lock().unwrap_or_else(|e| e.into_inner());
                // Every known peer, and ourselves (a guest may ring its own
                // doorbell, as ivshmem allows).
                for id in client.peer_ids().collect::<Vec<_>>() {
                    d.add_peer(id, clone_fds(client.peer_vectors(id).unwrap_or(&[])));
                }
                d.add_peer(client.id(), clone_fds(client.own_vectors()));
            }
            let dev = IvcShm::new(
                ShmRegion::new(mapping.clone(), res),
                u32::from(client.id()),
                Some((msix, doorbells.clone())),
            )
            .map_err(|e| err(spec, e))?;
            machine.add_pci_device(None, Arc::new(Mutex::new(dev)))?;
            peer_watcher::spawn(
                "ivc-shm".into(),
                client,
                first,
                mapping,
                Box::new(DoorbellListener(doorbells)),
            )
            .map_err(|e| err(spec, e))?;
        }
    }
    Ok(summary)
}
