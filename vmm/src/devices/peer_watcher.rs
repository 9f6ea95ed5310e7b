//! The thread that listens to a rendezvous server for one ivc device.
//!
//! After setup the server only announces peers joining (with their
//! eventfds) and leaving. The device reacts through a [`PeerListener`]
//! (`ivc-shm` registers or unregisters doorbell ioeventfds); for every
//! leave this thread also marks the peer's channel slot ABSENT in the
//! shared memory, so that the surviving guest (or the VMM's own `ivc-pio`
//! endpoint) sees the peer gone even though the dead VMM never closed it.

use std::sync::Arc;
use std::thread::JoinHandle;

use ivc_rendezvous::{Client, ClientEvent};
use log::{error, info, warn};
use vmm_sys_util::eventfd::EventFd;

use super::shm_mapping::ShmMapping;

/// What a device does when peers come and go.
pub trait PeerListener: Send {
    /// Peer `id` joined; its eventfds are `client.peer_vectors(id)`.
    fn joined(&mut self, _id: u16, _client: &Client) {}
    /// Peer `id` left; `vectors` are its eventfds, closed after this call.
    fn left(&mut self, _id: u16, _vectors: &[EventFd]) {}
}

/// A listener that does nothing (devices without doorbells).
pub struct NoListener;
impl PeerListener for NoListener {}

/// Applies one server event; false when the connection is over.
fn handle(
    name: &str,
    event: Result<Option<ClientEvent>, ivc_rendezvous::ClientError>,
    client: &Client,
    mapping: &ShmMapping,
    listener: &mut dyn PeerListener,
) -> bool {
    match event {
        Ok(Some(ClientEvent::PeerJoined(id))) => {
            info!("{name}: peer {id} joined");
            listener.joined(id, client);
            true
        }
        Ok(Some(ClientEvent::PeerLeft { id, vectors })) => {
            match mapping.mark_peer_absent(id) {
                Some(slot) => info!("{name}: peer {id} left; channel slot {slot} marked absent"),
                None => info!("{name}: peer {id} left"),
            }
            listener.left(id, &vectors);
            true
        }
        Ok(Some(ClientEvent::ServerGone)) | Ok(None) => {
            warn!("{name}: rendezvous server went away; known peers stay connected, no new ones");
            false
        }
        Err(e) => {
            error!("{name}: rendezvous server connection: {e}; no more peer updates");
            false
        }
    }
}

/// Spawns the watcher thread for device `name`; `first` is an event the
/// caller already took from the client (see `ivc_setup`). It runs until
/// the server goes away (the device keeps working with the peers it knows)
/// or the process ends.
pub fn spawn(
    name: String,
    mut client: Client,
    first: Option<ClientEvent>,
    mapping: Arc<ShmMapping>,
    mut listener: Box<dyn PeerListener>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("{name}-peers"))
        .spawn(move || {
            if let Some(ev) = first {
                if !handle(&name, Ok(Some(ev)), &client, &mapping, listener.as_mut()) {
                    return;
                }
            }
            loop {
                let ev = client.next_event(None);
                if !handle(&name, ev, &client, &mapping, listener.as_mut()) {
                    break;
                }
            }
        })
}
