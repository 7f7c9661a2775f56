//! Where a key path is in the YAML text, so that errors found after deserialising
//! (a timeout longer than its interval, a receiver that does not exist) name
//! `file:line:col` like the parser's own; and the nesting limit checked before parsing.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The deepest nesting of flow collections (`[`, `{`) a config may have. The shipped
/// configs nest 6 deep; 100 000 levels took libyaml over 30 s.
pub(super) const MAX_DEPTH: usize = 64;

/// Line and column (1-based) of the first flow collection nested deeper than
/// [`MAX_DEPTH`], outside quotes and comments.
pub(super) fn too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut col) = (0usize, 1usize, 0usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = '\n';
    for c in text.chars() {
        col += 1;
        if c == '\n' {
            line += 1;
            col = 0;
            comment = false;
            prev = c;
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if comment => {}
            None => match c {
                '#' if prev.is_whitespace() => comment = true,
                '"' | '\'' if depth > 0 || prev.is_whitespace() || prev == ':' => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Some((line, col));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = c;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `a.b[2].c` -> `a`, `b`, `[2]`, `c`.
fn segments(path: &str) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name.to_string()));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            out.push(Seg::Index(r[..end].parse().ok()?));
            rest = &r[end + 1..];
        }
    }
    Some(out)
}

const FOUND: &str = "\u{0}m4watch-located\u{0}";

/// Line and column of the key path `path` in `text`; of its nearest ancestor when the
/// key itself is not written (a value left at its default).
pub(super) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let segs = segments(path)?;
    (1..=segs.len())
        .rev()
        .find_map(|n| locate_exact(text, &segs[..n]))
}

fn locate_exact(text: &str, segs: &[Seg]) -> Option<(usize, usize)> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match (Probe { segs }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

/// Walks the document along `segs`; at the end, fails with [`FOUND`], so the YAML
/// library's error carries the position.
struct Probe<'a> {
    segs: &'a [Seg],
}

/// Fails at once, at the position of the value about to be read.
struct Here;

impl<'de> DeserializeSeed<'de> for Here {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // Failing inside the visitor ties the error to the value's own event.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_some<D: de::Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(FOUND))
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(want), rest)) = self.segs.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        while let Some(key) = map.next_key::<serde_yaml_ng::Value>()? {
            if key.as_str() == Some(want.as_str()) {
                return if rest.is_empty() {
                    map.next_value_seed(Here)
                } else {
                    map.next_value_seed(Probe { segs: rest })
                };
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(want), rest)) = self.segs.split_first() else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut i = 0;
        loop {
            let done = if i == *want {
                if rest.is_empty() {
                    seq.next_element_seed(Here)?
                } else {
                    seq.next_element_seed(Probe { segs: rest })?
                }
            } else {
                seq.next_element::<IgnoredAny>()?.map(|_| ())
            };
            if done.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "listen: 1\nhardware:\n  interval: 1s\n  timeout: 2s\nprobes:\n  targets:\n    - name: a\n      url: x\n    - name: b\n      url: y\n";

    #[test]
    fn keys_are_found_by_path() {
        // The value's position, as the parser's own type errors give it.
        assert_eq!(locate(TEXT, "hardware.timeout"), Some((4, 12)));
        assert_eq!(locate(TEXT, "probes.targets[1].url"), Some((10, 12)));
        assert_eq!(locate(TEXT, "probes.targets[1]"), Some((9, 7)));
        // Not written: its nearest ancestor.
        assert_eq!(locate(TEXT, "hardware.replay_file"), Some((3, 3)));
        assert_eq!(locate(TEXT, "nothing.here"), None);
    }

    #[test]
    fn deep_flow_nesting_is_found_before_parsing() {
        let deep = format!("listen: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(too_deep(&deep), Some((1, 8 + MAX_DEPTH + 1)));
        assert_eq!(too_deep("a: [[1], {b: [2]}]  # [[[[[\nc: '[[[['\n"), None);
    }
}
