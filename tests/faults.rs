//! Faults never silent (issue 25): the real binary under the faults an unattended host
//! meets, with stand-in receivers that log each request before answering.

mod common;

#[path = "faults/connections.rs"]
mod connections;
#[path = "faults/crash.rs"]
mod crash;
#[path = "faults/stall.rs"]
mod stall;
