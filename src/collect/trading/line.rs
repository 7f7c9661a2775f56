//! The StatsD / DogStatsD line parser: a pure function of the bytes of a datagram.
//! It borrows from the datagram and allocates nothing; it never panics on any input
//! (fuzzed in `fuzz/`, and by `arbitrary_bytes_never_panic` below). The listener that
//! feeds it is [`super::statsd`].

/// Longest metric name kept; longer names are a parse error, not a new series.
pub(crate) const MAX_NAME: usize = 200;
/// Largest magnitude of a value; beyond it a line is malformed.
pub const MAX_VALUE: f64 = 1e15;
/// Smallest sample rate; one line stands for at most a million events.
pub const MIN_SAMPLE_RATE: f64 = 1e-6;

/// A StatsD metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// `c`: adds to a stream's event count.
    Counter,
    /// `g`: sets a value, or moves it with a leading `+`/`-`.
    Gauge,
    /// `ms`, `h`, `d`: one latency or distribution observation, in milliseconds.
    Timer,
    /// `s`: counts distinct values.
    Set,
}

/// Why a line was dropped; each is one value of the bounded `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not UTF-8")]
    Encoding,
    #[error("not name:value|type")]
    Format,
    #[error("empty, too long or control characters in the name")]
    Name,
    #[error("value is not a finite number valid for its type")]
    Value,
    #[error("unknown metric type")]
    Type,
    #[error("sample rate is not a number in [1e-6, 1]")]
    SampleRate,
    #[error("malformed tags")]
    Tags,
    #[error("DogStatsD event or service check, which m4watch does not take")]
    Unsupported,
    #[error("a counter increment below 0 (a counter only goes up)")]
    NegativeCounter,
    #[error("an outcome tag other than outcome:success or outcome:error")]
    Outcome,
}

/// What became of an operation: the DogStatsD tag `outcome:success` (the default
/// when there is no such tag) or `outcome:error`, the HTTP APIs' `success` field.
/// Only these two, so the `outcome` label of `m4watch_trading_operations_total`
/// stays bounded; any other tag value is a parse error ([`ParseError::Outcome`]),
/// not guessed at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    #[default]
    Success,
    Error,
}

impl Outcome {
    /// Both, in label order.
    pub(crate) const ALL: [Outcome; 2] = [Outcome::Success, Outcome::Error];

    /// `true` for success, as the HTTP APIs' `success` field says it.
    pub fn from_success(success: bool) -> Self {
        if success {
            Outcome::Success
        } else {
            Outcome::Error
        }
    }

    /// The `outcome` label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
        }
    }
}

impl ParseError {
    /// Every reason, for pre-creating the counter series at 0.
    pub(crate) const ALL: [ParseError; 10] = [
        ParseError::Encoding,
        ParseError::Format,
        ParseError::Name,
        ParseError::Value,
        ParseError::Type,
        ParseError::SampleRate,
        ParseError::Tags,
        ParseError::Unsupported,
        ParseError::NegativeCounter,
        ParseError::Outcome,
    ];

    /// The `reason` label value.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            ParseError::Encoding => "encoding",
            ParseError::Format => "format",
            ParseError::Name => "name",
            ParseError::Value => "value",
            ParseError::Type => "type",
            ParseError::SampleRate => "sample_rate",
            ParseError::Tags => "tags",
            ParseError::Unsupported => "unsupported",
            ParseError::NegativeCounter => "negative_counter",
            ParseError::Outcome => "outcome",
        }
    }

    /// Position in [`ParseError::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One parsed line. Borrowed from the datagram: parsing allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub name: &'a str,
    pub kind: MetricType,
    /// The value part as sent, already checked: one number, or several joined by `:`
    /// (DogStatsD packs `name:1:2:3|d`); set members for sets.
    pub raw_values: &'a str,
    /// The first (usually only) number, parsed once; 0 for sets.
    pub value: f64,
    /// Gauge only: the value moves the gauge instead of setting it.
    pub delta: bool,
    /// In [`MIN_SAMPLE_RATE`], 1]; each observation stands for `1 / sample_rate` events.
    pub sample_rate: f64,
    /// `key:value,key2:value2` without the leading `#`; empty when none.
    pub tags: &'a str,
    /// The `outcome` tag's value (success without one).
    pub outcome: Outcome,
}

impl<'a> Line<'a> {
    /// The numbers of this line (sets: see [`Line::set_members`]).
    pub fn values(&self) -> impl Iterator<Item = f64> + 'a {
        let rest = split_at_byte(self.raw_values, b':').map_or("", |(_, rest)| rest);
        std::iter::once(self.value).chain(
            split_bytes(rest, b':')
                .filter(|v| !v.is_empty())
                .map(|v| v.parse::<f64>().unwrap_or(0.0)),
        )
    }

    /// The members of a set line.
    pub fn set_members(&self) -> impl Iterator<Item = &'a str> + 'a {
        split_bytes(self.raw_values, b':')
    }

    /// `(key, value)` pairs of the tags; a bare tag has an empty value.
    pub fn tag_pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + 'a {
        split_bytes(self.tags, b',')
            .filter(|t| !t.is_empty())
            .map(|t| split_at_byte(t, b':').unwrap_or((t, "")))
    }
}

/// `s` split around the first `byte` (an ASCII separator, so both sides stay valid
/// UTF-8). A plain byte scan: lines are short, so this beats the generic searcher.
fn split_at_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == byte)?;
    Some((&s[..i], &s[i + 1..]))
}

/// `s.split(byte)` with the byte scan of [`split_at_byte`].
fn split_bytes(s: &str, byte: u8) -> impl Iterator<Item = &str> + Clone {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match split_at_byte(r, byte) {
            Some((head, tail)) => {
                rest = Some(tail);
                Some(head)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Splits a datagram into lines; blank lines (a trailing newline) are not lines.
pub fn lines(packet: &[u8]) -> impl Iterator<Item = &[u8]> {
    packet
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
}

/// Parses every line of a datagram, handing each result to `each`. Same results as
/// [`lines`] and [`parse_line`], faster when the datagram is all UTF-8 (the usual
/// case): one validation pass and a vectorised newline search.
pub fn parse_packet<'a>(packet: &'a [u8], mut each: impl FnMut(Result<Line<'a>, ParseError>)) {
    match std::str::from_utf8(packet) {
        Ok(text) => text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.is_empty())
            .for_each(|l| each(parse_str(l))),
        Err(_) => lines(packet).for_each(|l| each(parse_line(l))),
    }
}

/// Parses one line: `name:value|type[|@rate][|#tags][|other DogStatsD fields]`.
///
/// A pure function of its input, total over all byte strings: it returns an error for
/// anything it cannot take and never panics (fuzzed in `fuzz/`).
pub fn parse_line(raw: &[u8]) -> Result<Line<'_>, ParseError> {
    parse_str(std::str::from_utf8(raw).map_err(|_| ParseError::Encoding)?)
}

/// [`parse_line`] on a line already known to be UTF-8 (a whole datagram is checked
/// at once, which is faster than line by line).
pub(crate) fn parse_str(line: &str) -> Result<Line<'_>, ParseError> {
    if line.starts_with("_e{") || line.starts_with("_sc|") {
        return Err(ParseError::Unsupported);
    }
    let (head, rest) = split_at_byte(line, b'|').ok_or(ParseError::Format)?;
    let (name, raw_values) = split_at_byte(head, b':').ok_or(ParseError::Format)?;
    if !valid_name(name) {
        return Err(ParseError::Name);
    }
    let mut fields = split_bytes(rest, b'|');
    let kind = match fields.next().unwrap_or("") {
        "c" => MetricType::Counter,
        "g" => MetricType::Gauge,
        "ms" | "h" | "d" => MetricType::Timer,
        "s" => MetricType::Set,
        _ => return Err(ParseError::Type),
    };
    let mut sample_rate = 1.0;
    let mut tags = "";
    let mut outcome = Outcome::Success;
    for field in fields {
        if let Some(r) = field.strip_prefix('@') {
            sample_rate = r.parse::<f64>().map_err(|_| ParseError::SampleRate)?;
            if !(MIN_SAMPLE_RATE..=1.0).contains(&sample_rate) {
                return Err(ParseError::SampleRate);
            }
        } else if let Some(t) = field.strip_prefix('#') {
            for tag in split_bytes(t, b',') {
                if tag.is_empty() || tag.starts_with(':') {
                    return Err(ParseError::Tags);
                }
                if tag.starts_with("outcome") {
                    outcome = match tag {
                        "outcome:success" => Outcome::Success,
                        "outcome:error" => Outcome::Error,
                        // `outcomes:x` is some other tag.
                        _ if tag.as_bytes().get(7).is_some_and(|&b| b != b':') => outcome,
                        _ => return Err(ParseError::Outcome),
                    };
                }
            }
            if t.chars().any(char::is_control) {
                return Err(ParseError::Tags);
            }
            tags = t;
        } else if field.is_empty() {
            return Err(ParseError::Format);
        }
        // Other DogStatsD fields (`c:` container id, `T` timestamp, `e:` external
        // data) carry nothing m4watch exports: ignored, not errors.
    }
    let delta = kind == MetricType::Gauge && raw_values.starts_with(['+', '-']);
    let value = check_values(kind, raw_values)?;
    Ok(Line {
        name,
        kind,
        raw_values,
        value,
        delta,
        sample_rate,
        tags,
        outcome,
    })
}

/// A name m4watch takes as an operation, stream or gauge name: 1 to [`MAX_NAME`]
/// bytes without control characters (it becomes a label value).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !has_control(name)
}

/// Whether `s` holds a control character; names and tags are nearly always ASCII, so
/// check bytes first and decode only when there is more than ASCII.
fn has_control(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_ascii() {
        b.iter().any(|&c| c < 0x20 || c == 0x7f)
    } else {
        s.chars().any(char::is_control)
    }
}

/// Checks the value part and returns its first number (0 for sets).
fn check_values(kind: MetricType, raw: &str) -> Result<f64, ParseError> {
    if kind == MetricType::Set {
        return if split_bytes(raw, b':').any(str::is_empty) {
            Err(ParseError::Value)
        } else {
            Ok(0.0)
        };
    }
    let number = |v: &str| -> Result<f64, ParseError> {
        // Rust accepts "inf" and "nan" spellings; StatsD senders never mean those.
        // Absurd magnitudes are refused too, so one line cannot push a counter or a
        // histogram sum to infinity for good.
        let x = fast_decimal(v)
            .map_or_else(|| v.parse::<f64>(), Ok)
            .map_err(|_| ParseError::Value)?;
        if x.is_nan() || x.abs() > MAX_VALUE || (kind == MetricType::Timer && x < 0.0) {
            return Err(ParseError::Value);
        }
        // A counter counts events: a negative increment would make its total go down,
        // which Prometheus reads as a reset (issue 25). Refused, counted by its reason.
        if kind == MetricType::Counter && x < 0.0 {
            return Err(ParseError::NegativeCounter);
        }
        Ok(x)
    };
    match split_at_byte(raw, b':') {
        None => number(raw),
        // Several packed values only make sense for observations.
        Some(_) if kind != MetricType::Timer => Err(ParseError::Value),
        Some((first, rest)) => {
            for v in split_bytes(rest, b':') {
                number(v)?;
            }
            number(first)
        }
    }
}

/// `[+-]digits[.digits]` with at most 15 digits, parsed exactly: the digits form an
/// integer below 2^53 and the power of ten is exact, so one division rounds
/// correctly (Clinger's fast path). Anything else is left to the full parser.
fn fast_decimal(v: &str) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, digits) = match v.as_bytes().first()? {
        b'-' => (true, &v[1..]),
        b'+' => (false, &v[1..]),
        _ => (false, v),
    };
    let (mut mantissa, mut count, mut frac, mut dot) = (0u64, 0usize, 0usize, false);
    for b in digits.bytes() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
                frac += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
        if count > 15 {
            return None;
        }
    }
    // "", ".", "5." and ".5" go to the full parser, which decides what they mean.
    if count == 0 || (dot && (frac == 0 || frac == count)) {
        return None;
    }
    let x = mantissa as f64 / POW10[frac];
    Some(if negative { -x } else { x })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Line<'_> {
        parse_line(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &[u8]) -> &'static str {
        parse_line(s)
            .map(|l| panic!("{:?} parsed as {l:?}", String::from_utf8_lossy(s)))
            .unwrap_err()
            .reason()
    }

    #[test]
    fn timers_histograms_and_distributions() {
        let l = ok("order_execution:12.5|ms");
        assert_eq!(
            (l.name, l.kind, l.values().collect::<Vec<_>>()),
            ("order_execution", MetricType::Timer, vec![12.5])
        );
        assert_eq!(ok("a:1|h").kind, MetricType::Timer);
        assert_eq!(ok("a:0|d").kind, MetricType::Timer);
        assert_eq!(
            ok("a:1:2.5:3|d").values().collect::<Vec<_>>(),
            vec![1.0, 2.5, 3.0]
        );
    }

    #[test]
    fn counters_with_sample_rate() {
        let l = ok("market_data:5|c|@0.1");
        assert_eq!(l.kind, MetricType::Counter);
        assert_eq!(l.sample_rate, 0.1);
        assert_eq!(err(b"x:-2|c"), "negative_counter");
    }

    #[test]
    fn gauges_set_or_move() {
        let set = ok("queue_depth:42|g");
        assert_eq!((set.delta, set.values().next()), (false, Some(42.0)));
        let up = ok("queue_depth:+3|g");
        assert_eq!((up.delta, up.values().next()), (true, Some(3.0)));
        let down = ok("queue_depth:-3.5|g");
        assert_eq!((down.delta, down.values().next()), (true, Some(-3.5)));
    }

    #[test]
    fn sets_take_any_member_text() {
        let l = ok("users:alice|s");
        assert_eq!(l.kind, MetricType::Set);
        assert_eq!(l.set_members().collect::<Vec<_>>(), vec!["alice"]);
    }

    #[test]
    fn dogstatsd_tags_and_extension_fields() {
        let l = ok("order_execution:1|ms|@0.5|#venue:xnys,strategy:mm,canary|c:abc|T1656581400");
        assert_eq!(l.sample_rate, 0.5);
        assert_eq!(
            l.tag_pairs().collect::<Vec<_>>(),
            vec![("venue", "xnys"), ("strategy", "mm"), ("canary", "")]
        );
        // Tags before the rate are fine too.
        assert_eq!(ok("a:1|c|#k:v|@1").tags, "k:v");
        // Tag values may contain ':' (DogStatsD splits at the first one).
        assert_eq!(
            ok("a:1|c|#url:http://x").tag_pairs().next(),
            Some(("url", "http://x"))
        );
    }

    #[test]
    fn the_outcome_tag_is_success_or_error_and_nothing_else() {
        assert_eq!(ok("order_execution:3|ms").outcome, Outcome::Success);
        assert_eq!(
            ok("order_execution:3|ms|#venue:x,outcome:error").outcome,
            Outcome::Error
        );
        assert_eq!(
            ok("order_execution:3|ms|#outcome:success").outcome,
            Outcome::Success
        );
        // Another tag that merely starts alike is just a tag.
        assert_eq!(ok("a:1|ms|#outcomes:3").outcome, Outcome::Success);
        // Any other value would be an unbounded label: refused, by its own reason.
        assert_eq!(err(b"a:1|ms|#outcome:failed"), "outcome");
        assert_eq!(err(b"a:1|ms|#outcome:Error"), "outcome");
        assert_eq!(err(b"a:1|ms|#outcome"), "outcome");
        assert_eq!(err(b"a:1|ms|#outcome:"), "outcome");
    }

    #[test]
    fn malformed_lines_name_their_reason() {
        assert_eq!(err(b"\xff\xfe:1|c"), "encoding");
        assert_eq!(err(b"no_separator"), "format");
        assert_eq!(err(b"name|c"), "format");
        assert_eq!(err(b"a:1|c||#x"), "format");
        assert_eq!(err(b":1|c"), "name");
        assert_eq!(err("a\u{7}b:1|c".as_bytes()), "name");
        assert_eq!(err("é\u{85}:1|c".as_bytes()), "name", "C1 control");
        assert_eq!(err("a:1|c|#k:\u{7f}".as_bytes()), "tags");
        assert_eq!(ok("ordre_exécution:1|c").name, "ordre_exécution");
        assert_eq!(err(format!("{}:1|c", "n".repeat(201)).as_bytes()), "name");
        assert_eq!(err(b"a:|c"), "value");
        assert_eq!(err(b"a:abc|ms"), "value");
        assert_eq!(err(b"a:-1|ms"), "value");
        assert_eq!(err(b"a:inf|g"), "value");
        assert_eq!(err(b"a:NaN|ms"), "value");
        assert_eq!(err(b"a:1:2|c"), "value");
        assert_eq!(err(b"a:-1|c"), "negative_counter");
        assert_eq!(err(b"a:-0.5|c|@0.5"), "negative_counter");
        assert_eq!(ok("a:-1|g").value, -1.0, "a gauge may go down");
        assert_eq!(err(b"a:x::y|s"), "value");
        assert_eq!(err(b"a:1|q"), "type");
        assert_eq!(err(b"a:1|"), "type");
        assert_eq!(err(b"a:1|c|@0"), "sample_rate");
        assert_eq!(err(b"a:1|c|@1e-300"), "sample_rate");
        assert_eq!(err(b"a:1e300|c"), "value");
        assert_eq!(err(b"a:2e15|ms"), "value");
        assert_eq!(err(b"a:1|c|@1.5"), "sample_rate");
        assert_eq!(err(b"a:1|c|@x"), "sample_rate");
        assert_eq!(err(b"a:1|c|#"), "tags");
        assert_eq!(err(b"a:1|c|#a,,b"), "tags");
        assert_eq!(err(b"a:1|c|#:v"), "tags");
        assert_eq!(err(b"_e{5,4}:title|text"), "unsupported");
        assert_eq!(err(b"_sc|check|0"), "unsupported");
    }

    #[test]
    fn packets_split_into_lines_without_blanks() {
        let got: Vec<&[u8]> = lines(b"a:1|c\r\n\nb:2|c\n").collect();
        assert_eq!(got, vec![&b"a:1|c"[..], &b"b:2|c"[..]]);
        assert_eq!(lines(b"").count(), 0);
    }

    #[test]
    fn the_fast_number_path_matches_the_full_parser() {
        for v in [
            "0",
            "12.5",
            "-3.25",
            "+7",
            "0.001",
            "123456789012345",
            "99999.9999999999",
            "0.1",
            "1.7976931348623157",
            "5.",
            ".5",
            "1e3",
            "12345678901234567",
        ] {
            assert_eq!(
                fast_decimal(v).map_or_else(|| v.parse::<f64>().ok(), Some),
                v.parse::<f64>().ok(),
                "{v}"
            );
        }
        assert_eq!(fast_decimal("0.1"), Some(0.1));
        assert_eq!(fast_decimal("1e3"), None);
        let mut rng = Rng(7);
        for _ in 0..100_000 {
            let int = rng.next() % 10_000_000;
            let frac = rng.next() % 100_000_000;
            let v = format!("{int}.{frac:08}");
            assert_eq!(fast_decimal(&v), v.parse().ok(), "{v}");
        }
    }

    #[test]
    fn packet_parsing_agrees_with_line_parsing() {
        for packet in [
            &b"a:1|c\r\n\nb:2|ms|#k:v\n"[..],
            b"a:1|c\n\xff:1|c\nb:x|g",
            b"",
            b"\n\n",
        ] {
            let mut fast = Vec::new();
            parse_packet(packet, |r| fast.push(r));
            let slow: Vec<_> = lines(packet).map(parse_line).collect();
            assert_eq!(fast, slow);
        }
    }

    /// xorshift64*: deterministic, dependency-free randomness for the test below.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// The stable-toolchain companion of the cargo-fuzz target: random bytes, and
    /// random mutations of valid lines (which reach deeper than pure noise), never
    /// panic, and whatever parses satisfies the parser's own promises.
    #[test]
    fn arbitrary_bytes_never_panic() {
        let seeds: &[&[u8]] = &[
            b"order_execution:12.5|ms|@0.5|#venue:xnys,canary",
            b"q:+3|g",
            b"u:alice:bob|s",
            b"a:1:2:3|d|c:abc|T123",
        ];
        let alphabet = b":|@#,.+-0123456789eE\n\r\xff\xc3msghdc";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..200_000 {
            let mut line: Vec<u8> = if i % 2 == 0 {
                seeds[(rng.next() % seeds.len() as u64) as usize].to_vec()
            } else {
                (0..rng.next() % 64).map(|_| rng.next() as u8).collect()
            };
            for _ in 0..(rng.next() % 4) {
                let pos = (rng.next() as usize) % (line.len() + 1);
                let byte = alphabet[(rng.next() as usize) % alphabet.len()];
                match rng.next() % 3 {
                    0 => line.insert(pos, byte),
                    1 if pos < line.len() => line[pos] = byte,
                    _ if pos < line.len() => {
                        line.remove(pos);
                    }
                    _ => {}
                }
            }
            for l in lines(&line) {
                if let Ok(p) = parse_line(l) {
                    assert!(!p.name.is_empty() && p.name.len() <= MAX_NAME);
                    assert!(p.sample_rate >= MIN_SAMPLE_RATE && p.sample_rate <= 1.0);
                    if p.kind != MetricType::Set {
                        assert!(p.values().all(|v| v.abs() <= MAX_VALUE));
                    }
                    let _ = p.tag_pairs().count();
                }
            }
        }
    }
}
