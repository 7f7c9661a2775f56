//! The one field of an X.509 certificate the probes export: the end of its validity
//! (`notAfter`), read from the DER the TLS handshake hands over. A few lines of DER
//! walking instead of an X.509 crate: the path to the field is fixed by RFC 5280
//! (Certificate → tbsCertificate → validity → notAfter) and nothing else is read.

/// One DER element: its tag, and its contents and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits say how many length bytes follow (at most 4 here;
        // a certificate is far below 4 GiB).
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Unix seconds of the certificate's `notAfter`; `None` when `der` is not a
/// certificate this walk understands.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(cert)? else {
        return None;
    };
    // [0] version (absent for v1), serialNumber, signature, issuer, then validity.
    let (tag, _, rest) = element(tbs)?;
    if tag == VERSION {
        tbs = rest;
    }
    let (INTEGER, _, rest) = element(tbs)? else {
        return None;
    };
    let (SEQUENCE, _, rest) = element(rest)? else {
        return None;
    };
    let (SEQUENCE, _, rest) = element(rest)? else {
        return None;
    };
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (_, _, rest) = element(validity)?;
    let (tag, time, _) = element(rest)?;
    time_of(tag, std::str::from_utf8(time).ok()?)
}

/// An X.509 time: UTCTime `YYMMDDHHMMSSZ` (years 1950 to 2049) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`, the only forms RFC 5280 allows.
fn time_of(tag: u8, text: &str) -> Option<i64> {
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i32 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let n = |i: usize| rest[i..i + 2].parse::<u32>().ok();
    let date = chrono::NaiveDate::from_ymd_opt(year, n(0)?, n(2)?)?;
    Some(date.and_hms_opt(n(4)?, n(6)?, n(8)?)?.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x509_times_in_both_forms() {
        assert_eq!(time_of(UTC_TIME, "261207103000Z"), Some(1_796_639_400));
        assert_eq!(time_of(UTC_TIME, "500101000000Z"), Some(-631_152_000));
        assert_eq!(
            time_of(GENERALIZED_TIME, "20261207103000Z"),
            Some(1_796_639_400)
        );
        assert_eq!(time_of(UTC_TIME, "261207103000"), None, "no Z");
        assert_eq!(time_of(UTC_TIME, "261307103000Z"), None, "month 13");
        assert_eq!(time_of(GENERALIZED_TIME, "261207103000Z"), None);
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None, "length past the end");
        assert_eq!(not_after(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
    }
}
