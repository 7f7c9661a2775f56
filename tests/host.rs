//! The host collector against this machine's kernel: a UDP socket on loopback that
//! does not read while a bounded burst overflows its receive buffer. The watched
//! socket's drop counter must equal what the kernel lists for that socket, and the
//! kernel-wide receive-buffer errors must have grown by at least as much, and the
//! loopback interface must have received every byte of the burst.

#![cfg(target_os = "linux")]

use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use m4watch::collect::BlockingCollector;
use m4watch::collect::host::{
    HostCollector, NETWORK_RECEIVE_BYTES_TOTAL, UDP_RECEIVE_BUFFER_ERRORS_TOTAL,
    UDP_SOCKET_DROPS_TOTAL, UDP_SOCKET_RECEIVE_QUEUE_BYTES,
};
use m4watch::config::HostConfig;
use m4watch::store::Family;

/// The value of `name`'s one series whose labels include `port`, or its only series.
fn value(fams: &[Family], name: &str, port: Option<u16>) -> Option<f64> {
    labelled(fams, name, port.map(|p| ("port", p.to_string())))
}

/// The value of `name`'s series with `label`, or its first series.
fn labelled(fams: &[Family], name: &str, label: Option<(&str, String)>) -> Option<f64> {
    let f = fams.iter().find(|f| f.name == name)?;
    f.samples
        .iter()
        .find(|s| match &label {
            None => true,
            Some((k, v)) => s.labels.contains(&(k.to_string(), v.clone())),
        })
        .map(|s| s.value)
}

/// The drops column of `port`'s row in /proc/net/udp, read here without the
/// collector's parser: the row whose local address ends in `:PORT` (hex), last field.
fn kernel_drops(port: u16) -> u64 {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap();
    let needle = format!("0100007F:{port:04X}");
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(needle.as_str()))
        .unwrap_or_else(|| panic!("no row for {needle} in /proc/net/udp"));
    row.split_whitespace().last().unwrap().parse().unwrap()
}

#[test]
fn an_unread_socket_overflowing_its_buffer_is_counted_per_socket_and_kernel_wide() {
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The smallest receive buffer the kernel allows (it doubles and floors the value).
    let size: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option of the size given.
    let rc = unsafe {
        libc::setsockopt(
            feed.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
    let port = feed.local_addr().unwrap().port();

    let mut collector = HostCollector::new(&HostConfig {
        udp_ports: vec![port],
        ..HostConfig::default()
    });
    let before = collector.collect().unwrap();
    assert_eq!(
        value(&before, UDP_SOCKET_DROPS_TOTAL.name, Some(port)),
        Some(0.0),
        "a fresh socket has dropped nothing"
    );
    let rcvbuf_before = value(&before, UDP_RECEIVE_BUFFER_ERRORS_TOTAL.name, None)
        .expect("this kernel counts RcvbufErrors");
    let lo = || Some(("interface", "lo".to_string()));
    let lo_before = labelled(&before, NETWORK_RECEIVE_BYTES_TOTAL.name, lo()).unwrap();

    // Loopback delivers synchronously: when send returns, the datagram is queued or
    // dropped. 500 datagrams of 1 KiB are far beyond a few-KiB buffer.
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let burst = 500u64;
    for _ in 0..burst {
        sender.send_to(&[0x5a; 1024], ("127.0.0.1", port)).unwrap();
    }

    let after = collector.collect().unwrap();
    let kernel = kernel_drops(port);
    let drops = value(&after, UDP_SOCKET_DROPS_TOTAL.name, Some(port)).unwrap();
    assert!(
        kernel > burst / 2,
        "the burst should overflow the buffer: the kernel shows {kernel} drops of {burst}"
    );
    assert_eq!(
        drops, kernel as f64,
        "the watched socket's drops are the kernel's"
    );
    let queued = value(&after, UDP_SOCKET_RECEIVE_QUEUE_BYTES.name, Some(port)).unwrap();
    assert!(
        queued > 0.0,
        "the datagrams that fit are still queued, unread"
    );
    let rcvbuf_after = value(&after, UDP_RECEIVE_BUFFER_ERRORS_TOTAL.name, None).unwrap();
    assert!(
        rcvbuf_after - rcvbuf_before >= drops,
        "RcvbufErrors grew by {} but the socket alone dropped {drops}",
        rcvbuf_after - rcvbuf_before
    );
    // Every datagram crossed the loopback interface, dropped at the socket or not.
    let lo_after = labelled(&after, NETWORK_RECEIVE_BYTES_TOTAL.name, lo()).unwrap();
    assert!(
        lo_after - lo_before >= (burst * 1024) as f64,
        "lo received {} bytes during a burst of {burst} KiB",
        lo_after - lo_before
    );
    drop(feed);
}

#[test]
fn an_unwatched_port_has_no_per_socket_series() {
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut collector = HostCollector::new(&HostConfig::default());
    let fams = collector.collect().unwrap();
    let port = feed.local_addr().unwrap().port();
    assert_eq!(value(&fams, UDP_SOCKET_DROPS_TOTAL.name, Some(port)), None);
    assert!(
        value(&fams, "m4watch_udp_datagrams_received_total", None).is_some(),
        "kernel-wide counters are read without watched ports"
    );
}
