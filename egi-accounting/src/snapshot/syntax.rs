//! Pieces of OpenMetrics lines: names, label sets, numbers. Errors are plain messages; the
//! parser adds the line number.

use memchr::{memchr, memchr2};

use crate::metrics::Timestamp;

/// `NAME TEXT` of a `# TYPE`, `# HELP` or `# UNIT` line (the text may be empty, the space
/// may not).
pub(super) fn metadata<'l>(rest: &'l [u8], what: &str) -> Result<(&'l [u8], &'l [u8]), String> {
    let n = metric_name_len(rest);
    if n == 0 {
        return Err(format!("expected a metric name after `# {what}`"));
    }
    match rest.get(n) {
        Some(b' ') => Ok((&rest[..n], &rest[n + 1..])),
        Some(&c) => Err(format!(
            "unexpected {:?} in the metric name of `# {what}`",
            char::from(c)
        )),
        None => Err(format!(
            "expected a space and text after the metric name in `# {what}`"
        )),
    }
}

/// Length of the metric name at the start of `s`: `[a-zA-Z_:][a-zA-Z0-9_:]*`, 0 if none.
pub(super) fn metric_name_len(s: &[u8]) -> usize {
    match s.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {
            1 + s[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b':')
                .count()
        }
        _ => 0,
    }
}

/// Length of the label name at the start of `s`: `[a-zA-Z_][a-zA-Z0-9_]*`, 0 if none.
fn label_name_len(s: &[u8]) -> usize {
    match s.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
            1 + s[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count()
        }
        _ => 0,
    }
}

/// Where the series (`name` or `name{...}`) at the start of a sample line ends. Only finds
/// the closing brace (outside quotes); the labels are checked by [`parse_label_set`] the first
/// time these bytes are seen.
pub(super) fn series_end(line: &[u8]) -> Result<usize, String> {
    let n = metric_name_len(line);
    if n == 0 {
        return Err(match line.first() {
            None => "empty line (not allowed in OpenMetrics)".to_owned(),
            Some(&c) => format!(
                "expected a metric name or `#` at the start of the line, found {:?}",
                char::from(c)
            ),
        });
    }
    if line.get(n) != Some(&b'{') {
        return Ok(n);
    }
    label_set_end(line, n + 1).map(|end| end + 1)
}

/// Index of the `}` closing the label set whose content starts at `i`.
pub(super) fn label_set_end(line: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        let Some(j) = line.get(i..).and_then(|s| memchr2(b'"', b'}', s)) else {
            return Err("unterminated label set: no closing `}`".to_owned());
        };
        i += j;
        if line[i] == b'}' {
            return Ok(i);
        }
        i = quoted_end(line, i + 1)?;
    }
}

/// Index just after the `"` closing the label value that starts at `i`.
fn quoted_end(line: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        let Some(j) = line.get(i..).and_then(|s| memchr2(b'"', b'\\', s)) else {
            return Err("unterminated label value: no closing quote".to_owned());
        };
        i += j;
        if line[i] == b'"' {
            return Ok(i + 1);
        }
        i += 2;
    }
}

/// Parses the labels between `{` and `}` (`name="value"` separated by commas), appending
/// each name and unescaped value to `text` and their `(name start, value start, value end)`
/// to `spans`. Values may only use the escapes `\\`, `\"` and `\n`, and must be UTF-8.
pub(super) fn parse_label_set(
    mut s: &[u8],
    text: &mut String,
    spans: &mut Vec<(usize, usize, usize)>,
) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    loop {
        let n = label_name_len(s);
        if n == 0 {
            return Err(match s.first() {
                Some(b',') | None => "trailing or doubled comma in the label set".to_owned(),
                Some(&c) => format!("expected a label name, found {:?}", char::from(c)),
            });
        }
        // Label names are ASCII.
        let name = std::str::from_utf8(&s[..n]).unwrap_or_default();
        s = &s[n..];
        s = s
            .strip_prefix(b"=")
            .ok_or_else(|| format!("expected `=` after label name {name:?}"))?;
        s = s
            .strip_prefix(b"\"")
            .ok_or_else(|| format!("the value of label {name:?} must be in double quotes"))?;
        let end = quoted_end(s, 0)? - 1;
        let start = text.len();
        text.push_str(name);
        let mid = text.len();
        unescape_into(&s[..end], text).map_err(|why| format!("label {name:?}: {why}"))?;
        spans.push((start, mid, text.len()));
        s = &s[end + 1..];
        match s.split_first() {
            None => return Ok(()),
            Some((b',', rest)) => s = rest,
            Some((&c, _)) => {
                return Err(format!(
                    "expected `,` or `}}` after the value of label {name:?}, found {:?}",
                    char::from(c)
                ));
            }
        }
    }
}

/// Appends the unescaped label value to `out`: `\\`, `\"` and `\n` only; it must be UTF-8.
fn unescape_into(raw: &[u8], out: &mut String) -> Result<(), String> {
    // The escapes are ASCII: the raw bytes are UTF-8 exactly when the value is.
    let raw = std::str::from_utf8(raw).map_err(|_| "label value is not valid UTF-8".to_owned())?;
    let mut rest = raw;
    while let Some(i) = memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..i]);
        let mut chars = rest[i + 1..].chars();
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                return Err(format!(
                    "invalid escape `\\{other}` in label value (only \\\\, \\\" and \\n are allowed)"
                ));
            }
            None => return Err("label value ends with a lone backslash".to_owned()),
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
    Ok(())
}

/// Splits at the first space: the token, and what follows the space (if there is one).
#[inline]
pub(super) fn split_token(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr(b' ', s) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// An optional `-` then up to 15 digits.
#[inline]
fn parse_small_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + i64::from(d);
    }
    Some(if neg { -n } else { n })
}

/// Exact powers of ten as `f64`.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// Fast path for plain decimals (`[+-]digits[.digits]`, at most 15 digits): the digits form an
/// integer below 2^53 and the divisor is an exact power of ten, so one IEEE division gives the
/// correctly rounded value, the same `f64` as a full parser (and Go's) would.
#[inline]
fn parse_decimal(s: &[u8]) -> Option<f64> {
    let (neg, body) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0;
    let mut fraction: Option<usize> = None;
    for &c in body {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            digits += 1;
            if digits > 15 {
                return None;
            }
            mantissa = mantissa * 10 + u64::from(d);
            if let Some(f) = fraction.as_mut() {
                *f += 1;
            }
        } else if c == b'.' && fraction.is_none() {
            fraction = Some(0);
        } else {
            return None;
        }
    }
    if digits == 0 {
        return None;
    }
    let v = mantissa as f64 / POW10[fraction.unwrap_or(0)];
    Some(if neg { -v } else { v })
}

/// A sample value as Go's `strconv.ParseFloat` reads it for Prometheus: decimal or exponent
/// notation, `NaN`, `+Inf`, `-Inf` (any case); out-of-range numbers are errors.
#[inline]
pub(super) fn parse_float(s: &[u8]) -> Result<f64, &'static str> {
    if let Some(v) = parse_decimal(s) {
        return Ok(v);
    }
    let text = std::str::from_utf8(s).map_err(|_| "not a number")?;
    let v: f64 = text.parse().map_err(|_| "not a number")?;
    if v.is_nan() && matches!(s.first(), Some(b'+' | b'-')) {
        return Err("NaN takes no sign");
    }
    if v.is_infinite() {
        let word = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
        if word != "inf" && word != "infinity" {
            return Err("out of the range of a 64-bit float");
        }
    }
    Ok(v)
}

/// Seconds to milliseconds as promtool does (`int64(seconds * 1000)`, truncating).
#[inline]
pub(super) fn parse_timestamp(s: &[u8]) -> Result<Timestamp, String> {
    let bad = |why: &str| format!("invalid timestamp {:?}: {why}", String::from_utf8_lossy(s));
    if let Some(secs) = parse_small_int(s).filter(|n| n.abs() < 9_000_000_000_000) {
        return Ok(Timestamp::from_millis(secs * 1000));
    }
    if s.is_empty() {
        return Err(bad("empty (two spaces?)"));
    }
    let secs = parse_float(s).map_err(bad)?;
    let ms = (secs * 1000.0).trunc();
    if !ms.is_finite() || ms.abs() >= 9.0e18 {
        return Err(bad("not a finite time in seconds"));
    }
    Ok(Timestamp::from_millis(ms as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decimal_fast_path_gives_the_same_floats_as_the_full_parser() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            let magnitude = rng.u32(0..13);
            let int = rng.u64(..10u64.pow(magnitude));
            let text = match rng.u8(..3) {
                0 => format!("{int}"),
                1 => format!("-{int}.{:03}", rng.u32(..1000)),
                _ => {
                    let places = rng.u32(1..4);
                    format!("{int}.{}", rng.u64(..10u64.pow(places)))
                }
            };
            let fast = parse_decimal(text.as_bytes());
            let full: f64 = text.parse().unwrap();
            if let Some(fast) = fast {
                assert_eq!(fast.to_bits(), full.to_bits(), "{text}");
            }
        }
        assert_eq!(parse_decimal(b"1234567890123456"), None);
        assert_eq!(parse_decimal(b"1.2.3"), None);
        assert_eq!(parse_decimal(b"."), None);
        assert_eq!(parse_decimal(b"1e3"), None);
        assert_eq!(parse_decimal(b"+.5"), Some(0.5));
    }
}
