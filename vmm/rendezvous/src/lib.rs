//! ivc-rendezvous
