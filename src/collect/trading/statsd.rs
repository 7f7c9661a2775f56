//! StatsD / DogStatsD over UDP: the listener thread (the parser is [`super::line`]).
//!
//! The listener is a plain OS thread on a blocking socket: it receives a datagram,
//! parses every line and hands the batch to the [`Trading`] store under one short lock.
//! It never encodes, never awaits and never allocates per line in the common case, so a
//! sender can only fill the socket buffer, never stall or crash the daemon.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Trading;
// The parser's items keep their `statsd::` paths (the fuzz target and statsd-load use them).
pub(crate) use super::line::valid_name;

/// Largest datagram accepted: the UDP maximum, so no sender's packet is cut.
pub(crate) const MAX_PACKET: usize = 65_536;

/// A running listener; dropping it does not stop it, [`Listener::stop`] does.
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// How often the receive loop wakes to check for shutdown when no packet comes.
const POLL: Duration = Duration::from_millis(200);

impl Listener {
    /// Binds `addr` and starts the receive thread feeding `trading`, with a receive
    /// buffer of [`RECEIVE_BUFFER`] (or what the kernel allows).
    pub fn start(addr: SocketAddr, trading: Arc<Trading>) -> std::io::Result<Listener> {
        Self::start_with_buffer(addr, trading, RECEIVE_BUFFER)
    }

    /// [`Listener::start`] with a receive buffer of `bytes` (the kernel doubles it for
    /// its bookkeeping and caps it at `net.core.rmem_max`).
    pub fn start_with_buffer(
        addr: SocketAddr,
        trading: Arc<Trading>,
        bytes: usize,
    ) -> std::io::Result<Listener> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(POLL))?;
        set_receive_buffer(&socket, bytes);
        if !kernel_drops::enable(&socket) {
            tracing::debug!(error = %std::io::Error::last_os_error(), "SO_RXQ_OVFL not set");
        }
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("statsd".into())
            .spawn(move || receive_loop(&socket, &trading, &flag))?;
        tracing::info!(udp = %addr, "StatsD listener on UDP");
        Ok(Listener { addr, stop, thread })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread and waits for it (at most one poll interval).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn receive_loop(socket: &UdpSocket, trading: &Trading, stop: &AtomicBool) {
    let mut buf = vec![0u8; MAX_PACKET];
    let mut batch = trading.batch();
    // The kernel's drop count as last reported; it counts from the socket's creation.
    let mut dropped: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        match kernel_drops::recv(socket, &mut buf) {
            Ok((n, drops, peer)) => {
                if let Some(d) = drops {
                    // A u32 in the kernel: wrapping_sub survives its wrap.
                    trading.kernel_drops(u64::from(d.wrapping_sub(dropped)));
                    dropped = d;
                }
                // A sender outside trading.statsd_allow is counted and never parsed; a
                // datagram whose sender is unknown (no address) is refused too.
                if peer.is_some_and(|ip| trading.statsd_admit(ip)) {
                    trading.ingest_packet(&buf[..n], &mut batch);
                } else if peer.is_none() {
                    trading.statsd_admit(std::net::Ipv4Addr::UNSPECIFIED.into());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                // Transient errors (ICMP port unreachable echoes, ENOMEM) must not end
                // the listener; back off briefly so a persistent one cannot spin.
                tracing::warn!(error = %e, "StatsD receive failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The receive buffer the listener asks for: large, so bursts wait in the kernel
/// instead of being dropped while the collector holds the lock.
pub(crate) const RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// Asks for a receive buffer of [`RECEIVE_BUFFER`]; the kernel caps it at `rmem_max`.
pub fn grow_receive_buffer(socket: &UdpSocket) {
    set_receive_buffer(socket, RECEIVE_BUFFER);
}

/// Asks for a receive buffer of `bytes`.
pub(crate) fn set_receive_buffer(socket: &UdpSocket, bytes: usize) {
    #[cfg(unix)]
    {
        let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        if !set_int_option(socket, libc::SO_RCVBUF, size) {
            tracing::debug!(error = %std::io::Error::last_os_error(), "SO_RCVBUF not raised");
        }
    }
    #[cfg(not(unix))]
    let _ = (socket, bytes);
}

/// Sets the `SOL_SOCKET` option `name` to `value`; false when the kernel refuses.
#[cfg(unix)]
fn set_int_option(socket: &UdpSocket, name: libc::c_int, value: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket fd and a pointer to a c_int of the given length.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// The kernel's count of datagrams it dropped for the socket (receive buffer full),
/// where the platform reports it: on Linux `SO_RXQ_OVFL` makes `recvmsg` attach the
/// socket's running drop count to each datagram queued after a drop.
#[cfg(target_os = "linux")]
mod kernel_drops {
    use std::net::{IpAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    /// Turns the drop count on; false when the kernel refuses.
    pub(super) fn enable(socket: &UdpSocket) -> bool {
        super::set_int_option(socket, libc::SO_RXQ_OVFL, 1)
    }

    /// Receives one datagram into `buf`: its length, the socket's drop count when the
    /// kernel attached one, and the sender's address.
    pub(super) fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, Option<u32>, Option<IpAddr>)> {
        // SAFETY: sockaddr_storage is plain data; all-zero is its empty value.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one u32 control message, aligned for cmsghdr.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; all-zero is its empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&raw mut from).cast();
        msg.msg_namelen = std::mem::size_of_val(&from) as _;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: msg points at a live iovec over `buf` and at `control`, both of the
        // lengths given, for the duration of the call.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut drops = None;
        // SAFETY: the CMSG macros walk the control buffer the kernel filled, within
        // msg_controllen; the payload is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                    drops = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok((n as usize, drops, peer(&from)))
    }

    /// The address in `from`, as `recvmsg` filled it.
    fn peer(from: &libc::sockaddr_storage) -> Option<IpAddr> {
        match libc::c_int::from(from.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a = unsafe { &*(std::ptr::from_ref(from).cast::<libc::sockaddr_in>()) };
                Some(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a = unsafe { &*(std::ptr::from_ref(from).cast::<libc::sockaddr_in6>()) };
                Some(IpAddr::from(a.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

/// Elsewhere the kernel reports no drop count.
#[cfg(not(target_os = "linux"))]
mod kernel_drops {
    use std::net::UdpSocket;

    pub(crate) fn enable(_: &UdpSocket) -> bool {
        true
    }

    pub(crate) fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> std::io::Result<(usize, Option<u32>, Option<std::net::IpAddr>)> {
        socket
            .recv_from(buf)
            .map(|(n, from)| (n, None, Some(from.ip())))
    }
}
