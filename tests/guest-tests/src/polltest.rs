//! What `ivc-polltest checker --reconnect` proves, and the assertion that it
//! did: shared by the file-semantics tests over shared memory (tier 3) and
//! over port I/O (tier 4).

use ivc_guest_harness::GuestOutcome;

/// The checker's `IVC_CHECK` names, in the order it runs them.
pub const CHECKS: &[&str] = &[
    "nonblock_read_eagain",
    "pollout_when_peer_connects",
    "no_pollin_while_empty",
    "pollin_when_data_arrives",
    "efault_moves_nothing",
    "epollet_woken_after_eagain",
    "signal_interrupts_blocked_read",
    "nonblock_write_eagain_and_no_pollout_when_full",
    "pollout_when_peer_drains",
    "stream_intact_after_fill",
    "eof_after_peer_leaves",
    "pollhup_after_peer_leaves",
    "epipe_after_peer_leaves",
    "reconnect_after_peer_returns",
    "eof_after_second_peer_leaves",
];

/// Panics unless every check printed `IVC_CHECK <name>=ok`; the message
/// names the first that did not and quotes the checker's console.
#[track_caller]
pub fn assert_all_passed(checker: &GuestOutcome) {
    for name in CHECKS {
        assert!(
            checker.serial_contains(&format!("IVC_CHECK {name}=ok ")),
            "check {name} did not pass in {}:\n{}",
            checker.name,
            checker.report()
        );
    }
}
