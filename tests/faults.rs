//! Faults m4watch meets on an unattended host (issue 25), against the real binary.

#[path = "faults/network.rs"]
mod network;
