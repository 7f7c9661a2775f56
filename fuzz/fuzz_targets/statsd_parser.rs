//! Any datagram: splitting and parsing never panic, and whatever parses keeps the
//! parser's promises (a valid name, a sample rate in range, bounded numbers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use m4watch::internals::collect::trading::statsd::{
    MAX_VALUE, MIN_SAMPLE_RATE, MetricType, lines, parse_line, parse_packet, valid_name,
};

fuzz_target!(|packet: &[u8]| {
    // The listener's fast path and the line-by-line parser agree.
    let mut fast = Vec::new();
    parse_packet(packet, |r| fast.push(r));
    let slow: Vec<_> = lines(packet).map(parse_line).collect();
    assert_eq!(fast, slow);
    for line in slow.into_iter().flatten() {
        assert!(valid_name(line.name));
        assert!((MIN_SAMPLE_RATE..=1.0).contains(&line.sample_rate));
        if line.kind != MetricType::Set {
            assert!(line.values().all(|v| v.abs() <= MAX_VALUE));
        }
        if line.kind == MetricType::Timer {
            assert!(line.values().all(|v| v >= 0.0));
        }
        let _ = line.tag_pairs().count();
        let _ = line.set_members().count();
    }
});
