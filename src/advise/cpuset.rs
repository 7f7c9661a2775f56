//! Docker cpusets (`0-3,8,10-11`): read into CPU numbers and written back.

use std::collections::BTreeSet;

/// Parses a Docker cpuset (`0-3,8,10-11`) into CPU numbers.
pub(crate) fn parse_cpuset(s: &str) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().ok()?);
            }
        }
    }
    Some(out)
}

/// Writes CPU numbers as a cpuset (`0-3,8`).
pub(crate) fn format_cpuset(cpus: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut iter = cpus.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().expect("peeked");
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpusets_parse_and_format() {
        assert_eq!(
            parse_cpuset("0-2, 5,7-8").unwrap(),
            BTreeSet::from([0, 1, 2, 5, 7, 8])
        );
        assert_eq!(parse_cpuset(""), Some(BTreeSet::new()));
        assert_eq!(parse_cpuset("3-1"), None);
        assert_eq!(parse_cpuset("a"), None);
        assert_eq!(
            format_cpuset(&BTreeSet::from([0, 1, 2, 5, 7, 8])),
            "0-2,5,7-8"
        );
    }
}
