//! Any datagram: splitting and parsing never panic, and whatever parses keeps the
//! parser's promises (a valid name, a sample rate in (0, 1], finite numbers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use m4watch::collect::trading::statsd::{MetricType, lines, parse_line, valid_name};

fuzz_target!(|packet: &[u8]| {
    for raw in lines(packet) {
        if let Ok(line) = parse_line(raw) {
            assert!(valid_name(line.name));
            assert!(line.sample_rate > 0.0 && line.sample_rate <= 1.0);
            if line.kind != MetricType::Set {
                assert!(line.values().all(f64::is_finite));
            }
            if line.kind == MetricType::Timer {
                assert!(line.values().all(|v| v >= 0.0));
            }
            let _ = line.tag_pairs().count();
            let _ = line.set_members().count();
        }
    }
});
