//! The ivshmem client-server wire protocol (QEMU `docs/specs/ivshmem-spec.rst`).
//!
//! The connection is one-way: only the server talks. Every message is one
//! little-endian `i64`, optionally accompanied by exactly one file descriptor
//! passed with `SCM_RIGHTS`. What a message means depends on its value, on
//! whether it carries a descriptor, and on where it falls in the stream:
//!
//! | value | fd | meaning |
//! | --- | --- | --- |
//! | `0` (first message) | no | protocol version |
//! | `0..=65535` (second message) | no | the receiving client's own id |
//! | `-1` | yes | the shared-memory object |
//! | peer id | yes | one eventfd of that peer, for vector 0, 1, ... in order |
//! | peer id | no | that peer has left |
//!
//! This module holds the pure parts — constants, encoding, and the order in
//! which the server sends things — so that they can be tested without sockets.

/// The only protocol version there is (QEMU >= 2.5). Before it, messages were
/// native-endian `long`s without a version message; we do not speak that.
pub const PROTOCOL_VERSION: i64 = 0;

/// Value of the message that carries the shared-memory fd.
pub const SHM_MESSAGE: i64 = -1;

/// Size of one message on the wire.
pub const MESSAGE_SIZE: usize = 8;

/// Most interrupt vectors per peer. QEMU's ivshmem-server has the same limit;
/// every vector costs one eventfd per peer in every connected process.
pub const MAX_VECTORS: u32 = 64;

/// Peer ids are 16 bits wide because the Doorbell register carries the target
/// id in bits 16..31.
pub type PeerId = u16;

/// Encodes one message value as it goes on the wire.
pub fn encode(value: i64) -> [u8; MESSAGE_SIZE] {
    value.to_le_bytes()
}

/// Decodes one message value from the wire.
pub fn decode(bytes: [u8; MESSAGE_SIZE]) -> i64 {
    i64::from_le_bytes(bytes)
}

/// Interprets a message value as a peer id, if it is one.
pub fn peer_id_from_wire(value: i64) -> Option<PeerId> {
    PeerId::try_from(value).ok()
}

/// Which descriptor a message of the server's setup sequence carries.
///
/// The sequence is planned in terms of this enum and then turned into real
/// descriptors by the server, so the order can be unit-tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdSource {
    /// No descriptor.
    None,
    /// The shared-memory object.
    SharedMemory,
    /// Eventfd of `peer` for interrupt vector `vector`.
    Vector { peer: PeerId, vector: u32 },
}

/// One message the server is to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedMessage {
    /// The number on the wire.
    pub value: i64,
    /// The descriptor that goes with it.
    pub fd: FdSource,
}

impl PlannedMessage {
    fn plain(value: i64) -> Self {
        PlannedMessage {
            value,
            fd: FdSource::None,
        }
    }
}

/// Messages for a newly connected client `new_id`, given the peers that are
/// already connected (in the order they will be announced).
///
/// QEMU's device reads the first three synchronously while it is being
/// realized and insists on their order; it then treats any `id + fd` message
/// as "next vector of that peer", which is why each peer's vectors must come
/// contiguously and in vector order, and why its own vectors come last: a
/// client that knows its vector count knows setup is complete after them.
pub fn setup_sequence(new_id: PeerId, existing: &[PeerId], vectors: u32) -> Vec<PlannedMessage> {
    let mut out = Vec::with_capacity(3 + (existing.len() + 1) * vectors as usize);
    out.push(PlannedMessage::plain(PROTOCOL_VERSION));
    out.push(PlannedMessage::plain(i64::from(new_id)));
    out.push(PlannedMessage {
        value: SHM_MESSAGE,
        fd: FdSource::SharedMemory,
    });
    for &peer in existing {
        out.extend(join_announcement(peer, vectors));
    }
    out.extend(join_announcement(new_id, vectors));
    out
}

/// Messages that tell a client that `peer` is there: its id once per vector,
/// each time with the eventfd for that vector.
pub fn join_announcement(peer: PeerId, vectors: u32) -> impl Iterator<Item = PlannedMessage> {
    (0..vectors).map(move |vector| PlannedMessage {
        value: i64::from(peer),
        fd: FdSource::Vector { peer, vector },
    })
}

/// Message that tells a client that `peer` has left.
pub fn leave_announcement(peer: PeerId) -> PlannedMessage {
    PlannedMessage::plain(i64::from(peer))
}

/// A violation of the protocol by the server, seen by a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The first message was not version 0.
    #[error("server speaks protocol version {0}, only {PROTOCOL_VERSION} is supported")]
    UnsupportedVersion(i64),
    /// A message that must not carry a descriptor carried one.
    #[error("{message} message (value {value}) came with a file descriptor")]
    UnexpectedFd { message: &'static str, value: i64 },
    /// A message that must carry a descriptor did not.
    #[error("{message} message (value {value}) came without a file descriptor")]
    MissingFd { message: &'static str, value: i64 },
    /// More than one descriptor arrived with one message.
    #[error("a message came with {count} file descriptors, at most 1 allowed")]
    TooManyFds { count: usize },
    /// The kernel truncated the control data: descriptors were lost.
    #[error("file descriptors from the server were truncated by the kernel")]
    ControlTruncated,
    /// A value that is neither -1 nor a 16-bit peer id.
    #[error("message value {value} is neither -1 nor a peer id (0..=65535)")]
    InvalidValue { value: i64 },
    /// The own-id message was out of range.
    #[error("server assigned invalid id {0}")]
    InvalidOwnId(i64),
    /// Something other than the shared-memory message came third.
    #[error("expected the shared-memory message (-1 with fd), got {value}")]
    ExpectedSharedMemory { value: i64 },
    /// The shared-memory descriptor is unusable.
    #[error("bad shared-memory object: {0}")]
    BadSharedMemory(String),
    /// A second shared-memory message.
    #[error("server sent the shared-memory object twice")]
    DuplicateSharedMemory,
    /// A descriptor that should be an eventfd is something else.
    #[error("descriptor for peer {peer} is not an eventfd ({target})")]
    NotAnEventFd { peer: PeerId, target: String },
    /// A peer got more eventfds than the configured vector count.
    #[error("peer {peer} announced with more than the configured {vectors} vectors")]
    TooManyVectors { peer: PeerId, vectors: u32 },
    /// A peer's vectors were interrupted by another message before all
    /// `expected` arrived (vector counts differ between server and client).
    #[error(
        "peer {peer} announced with {got} vectors, expected {expected} \
         (does the server use the same vector count?)"
    )]
    IncompleteVectors {
        peer: PeerId,
        got: u32,
        expected: u32,
    },
    /// A peer that is already fully announced was announced again.
    #[error("peer {0} announced twice")]
    DuplicatePeer(PeerId),
    /// A leave for a peer that was never announced.
    #[error("leave of unknown peer {0}")]
    UnknownPeerLeft(PeerId),
    /// A leave message carrying our own id.
    #[error("leave message for our own id {0}")]
    OwnIdLeft(PeerId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_little_endian_i64() {
        assert_eq!(encode(0), [0; 8]);
        assert_eq!(encode(-1), [0xff; 8]);
        assert_eq!(encode(0x0102), [2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode(65535), [0xff, 0xff, 0, 0, 0, 0, 0, 0]);
        for v in [i64::MIN, -2, -1, 0, 1, 65535, 65536, i64::MAX] {
            assert_eq!(decode(encode(v)), v);
        }
    }

    #[test]
    fn peer_ids_are_16_bit() {
        assert_eq!(peer_id_from_wire(0), Some(0));
        assert_eq!(peer_id_from_wire(65535), Some(65535));
        assert_eq!(peer_id_from_wire(65536), None);
        assert_eq!(peer_id_from_wire(-1), None);
        assert_eq!(peer_id_from_wire(i64::MIN), None);
    }

    #[test]
    fn first_client_gets_version_id_shm_then_own_vectors() {
        let seq = setup_sequence(0, &[], 2);
        let expect = vec![
            PlannedMessage::plain(0),
            PlannedMessage::plain(0),
            PlannedMessage {
                value: -1,
                fd: FdSource::SharedMemory,
            },
            PlannedMessage {
                value: 0,
                fd: FdSource::Vector { peer: 0, vector: 0 },
            },
            PlannedMessage {
                value: 0,
                fd: FdSource::Vector { peer: 0, vector: 1 },
            },
        ];
        assert_eq!(seq, expect);
    }

    #[test]
    fn later_client_gets_existing_peers_before_own_vectors() {
        let seq = setup_sequence(7, &[3, 5], 3);
        assert_eq!(seq.len(), 3 + 3 * 3);
        assert_eq!(seq[0], PlannedMessage::plain(PROTOCOL_VERSION));
        assert_eq!(seq[1], PlannedMessage::plain(7));
        assert_eq!(seq[2].fd, FdSource::SharedMemory);
        let rest: Vec<(i64, FdSource)> = seq[3..].iter().map(|m| (m.value, m.fd)).collect();
        let mut expect = Vec::new();
        for peer in [3u16, 5, 7] {
            for vector in 0..3 {
                expect.push((i64::from(peer), FdSource::Vector { peer, vector }));
            }
        }
        assert_eq!(rest, expect);
    }

    #[test]
    fn join_and_leave_announcements() {
        let join: Vec<_> = join_announcement(9, 2).collect();
        assert_eq!(join.len(), 2);
        assert!(join
            .iter()
            .zip(0u32..)
            .all(|(m, v)| m.value == 9 && m.fd == FdSource::Vector { peer: 9, vector: v }));
        assert_eq!(leave_announcement(9), PlannedMessage::plain(9));
    }
}
