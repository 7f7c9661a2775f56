//! Faults never silent (issue 25): the real binary under the faults an unattended host
//! meets — a full disk, a vanished or replaced data directory, unwritable files and
//! damaged databases, a kill right after a 200, a stuck receiver, a peer that sends
//! without end, a StatsD flood — with stand-in receivers that log each request before
//! answering. Run as root (scripts/test.sh does): a test that needs to mount a
//! filesystem or set a file attribute fails loudly without the privilege, never skips.

mod common;

#[path = "faults/config.rs"]
mod config;
#[path = "faults/connections.rs"]
mod connections;
#[path = "faults/crash.rs"]
mod crash;
#[path = "faults/network.rs"]
mod network;
#[path = "faults/stall.rs"]
mod stall;
#[path = "faults/storage.rs"]
mod storage;
