//! Fault tests (issue 25): the real binary under a full disk, a vanished or replaced
//! data directory, unwritable files and damaged databases, with stand-in receivers
//! that log each request before answering. Run as root (scripts/test.sh does): a
//! test that needs to mount a filesystem or set a file attribute fails loudly
//! without the privilege, never skips.

mod common;

#[path = "faults/storage.rs"]
mod storage;
