//! The OpenMetrics parser behind [`History::parse`].
//!
//! The text is read once. Every sample line starts with its series, written `name{labels}`:
//! those raw bytes are looked up in a hash table whose keys borrow from the input, so labels
//! are only parsed (unescaped, checked, sorted) the first time a series is written that way,
//! and a sample costs one hash lookup plus two number conversions, without allocating. A
//! line that repeats the previous line's series skips even the lookup.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use memchr::memchr;

use super::history::{History, Labels, Parsed};
use super::syntax::{
    label_set_end, metadata, metric_name_len, parse_float, parse_label_set, parse_timestamp,
    series_end, split_token,
};
use crate::error::{Error, Result};
use crate::metrics::Timestamp;

/// Parses a whole history; see [`History::parse`].
pub(super) fn parse(text: &[u8]) -> Result<History> {
    Parser::new(text).run()
}

/// Word-at-a-time multiply-xor hasher, two 8-byte words per multiplication (a 128-bit product
/// folded to 64 bits). The keys come from a local file, so hash flooding is not a concern and
/// speed is.
#[derive(Debug, Default, Clone, Copy)]
struct FastHasher(u64);

const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xd6e8_feb8_6659_fd93;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

#[inline]
fn word(b: &[u8]) -> u64 {
    let mut w = [0; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ (bytes.len() as u64).wrapping_mul(K1);
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            h = fold(word(&c[..8]) ^ h, word(&c[8..]) ^ K2);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let (a, b) = rest.split_at(rest.len().min(8));
            h = fold(word(a) ^ h, word(b) ^ K2);
        }
        self.0 = h;
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.0 = fold(self.0 ^ i as u64, K1);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold(self.0, K1)
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

struct Parser<'a> {
    text: &'a [u8],
    /// Line being parsed, 1-based.
    line: usize,
    /// Raw `name{labels}` bytes as written in the file -> index in `series`. A series written
    /// in several ways (label order, empty labels, `{}`) gets several entries, merged when
    /// the history is assembled.
    raw: FastMap<&'a [u8], usize>,
    series: Vec<Parsed>,
    /// The previous sample line's raw series and its index.
    prev: Option<(&'a [u8], usize)>,
    /// Reused buffers for label text and spans.
    scratch: String,
    spans: Vec<(usize, usize, usize)>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self {
            text,
            line: 0,
            raw: FastMap::default(),
            series: Vec::new(),
            prev: None,
            scratch: String::new(),
            spans: Vec::new(),
        }
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error::OpenMetrics {
            line: self.line,
            message: message.into(),
        }
    }

    fn run(mut self) -> Result<History> {
        let text = self.text;
        let mut pos = 0;
        loop {
            self.line += 1;
            if pos >= text.len() {
                return Err(self.err("the text does not end with `# EOF`"));
            }
            let (line, next) = match memchr(b'\n', &text[pos..]) {
                Some(i) => (&text[pos..pos + i], pos + i + 1),
                None => (&text[pos..], text.len()),
            };
            let parsed = if line.first() == Some(&b'#') {
                if line == b"# EOF" {
                    if next < text.len() {
                        self.line += 1;
                        return Err(self.err("unexpected data after `# EOF`"));
                    }
                    break;
                }
                comment(line)
            } else {
                self.sample(line)
            };
            if let Err(message) = parsed {
                let hint = if line.last() == Some(&b'\r') {
                    " (lines must end with \\n, not \\r\\n)"
                } else {
                    ""
                };
                return Err(self.err(format!("{message}{hint}")));
            }
            pos = next;
        }
        Ok(History::assemble(self.series))
    }

    /// `name{labels} value timestamp [# exemplar]`.
    fn sample(&mut self, line: &'a [u8]) -> Result<(), String> {
        let (key_len, id) = match self.prev {
            Some((key, id))
                if line.len() > key.len() && line[key.len()] == b' ' && line.starts_with(key) =>
            {
                (key.len(), id)
            }
            _ => {
                let key_len = series_end(line)?;
                let key = &line[..key_len];
                let id = match self.raw.get(key) {
                    Some(&id) => id,
                    None => self.new_series(key)?,
                };
                self.prev = Some((key, id));
                (key_len, id)
            }
        };

        let (ts, value) = sample_fields(line, key_len, &mut self.scratch, &mut self.spans)?;

        let s = &mut self.series[id];
        if let Some(&(last, _)) = s.samples.last()
            && ts <= last
        {
            s.sorted = false;
        }
        s.samples.push((ts, value));
        Ok(())
    }

    /// Parses the labels of a series written this way for the first time and files it.
    fn new_series(&mut self, key: &'a [u8]) -> Result<usize, String> {
        let labels = series_labels(key, &mut self.scratch, &mut self.spans)?;
        let id = self.series.len();
        self.series.push(Parsed {
            labels,
            samples: Vec::new(),
            sorted: true,
        });
        self.raw.insert(key, id);
        Ok(id)
    }
}

/// The labels of a series written `key` (`name{labels}`, checked by [`series_end`]):
/// unescaped, checked, sorted, empty values dropped. `text` and `spans` are scratch space.
pub(super) fn series_labels(
    key: &[u8],
    text: &mut String,
    spans: &mut Vec<(usize, usize, usize)>,
) -> Result<Labels, String> {
    let name_len = metric_name_len(key);
    text.clear();
    spans.clear();
    text.push_str("__name__");
    // `series_end` checked the name, so it is ASCII.
    text.push_str(std::str::from_utf8(&key[..name_len]).unwrap_or_default());
    spans.push((0, "__name__".len(), text.len()));
    if name_len < key.len() {
        // `series_end` found the closing brace at the end of `key`.
        parse_label_set(&key[name_len + 1..key.len() - 1], text, spans)?;
    }
    let text = &*text;
    spans.sort_unstable_by(|a, b| text[a.0..a.1].cmp(&text[b.0..b.1]));
    if let Some(w) = spans
        .windows(2)
        .find(|w| text[w[0].0..w[0].1] == text[w[1].0..w[1].1])
    {
        let name = &text[w[0].0..w[0].1];
        return Err(if name == "__name__" {
            "label `__name__` repeats the metric name".to_owned()
        } else {
            format!("label {name:?} appears twice in the series")
        });
    }
    spans.retain(|&(_, m, e)| m < e);
    Ok(Labels::from_spans(text, spans))
}

/// The timestamp and value of a sample line whose series takes its first `key_len` bytes,
/// checking the exemplar that may follow. `scratch` and `spans` are scratch space.
pub(super) fn sample_fields(
    line: &[u8],
    key_len: usize,
    scratch: &mut String,
    spans: &mut Vec<(usize, usize, usize)>,
) -> Result<(Timestamp, f64), String> {
    let rest = &line[key_len..];
    let rest = match rest.split_first() {
        Some((b' ', rest)) => rest,
        Some((&c, _)) => {
            return Err(format!(
                "unexpected {:?} after the series {:?}: expected a space and the value",
                char::from(c),
                String::from_utf8_lossy(&line[..key_len])
            ));
        }
        None => return Err("missing value after the series".to_owned()),
    };
    let (value, rest) = split_token(rest);
    if value.is_empty() {
        return Err("missing value after the series (or two spaces)".to_owned());
    }
    let value = parse_float(value)
        .map_err(|why| format!("invalid value {:?}: {why}", String::from_utf8_lossy(value)))?;
    let Some(rest) = rest else {
        return Err(
            "sample has no timestamp: every sample of a history file needs one \
                    (`name{labels} value timestamp`)"
                .to_owned(),
        );
    };
    let (ts, rest) = split_token(rest);
    let ts = parse_timestamp(ts)?;
    match rest {
        None => {}
        Some([]) => return Err("trailing space after the timestamp".to_owned()),
        Some(rest) => exemplar(rest, &line[..key_len], scratch, spans)?,
    }
    Ok((ts, value))
}

/// Checks the ` # {labels} value [timestamp]` exemplar after a sample (`rest` starts
/// after the space that follows the timestamp).
fn exemplar(
    rest: &[u8],
    series: &[u8],
    scratch: &mut String,
    spans: &mut Vec<(usize, usize, usize)>,
) -> Result<(), String> {
    let body = rest.strip_prefix(b"# {").ok_or_else(|| {
            format!(
                "unexpected text {:?} after the timestamp (only an exemplar ` # {{...}} value` may follow)",
                String::from_utf8_lossy(rest)
            )
        })?;
    let name = &series[..metric_name_len(series)];
    if !(name.ends_with(b"_total") || name.ends_with(b"_bucket")) {
        return Err(format!(
            "metric {:?} cannot have an exemplar: only `_total` and `_bucket` samples may (as in promtool)",
            String::from_utf8_lossy(name)
        ));
    }
    let end = label_set_end(body, 0)?;
    scratch.clear();
    spans.clear();
    parse_label_set(&body[..end], scratch, spans).map_err(|why| format!("exemplar: {why}"))?;
    let rest = match body[end + 1..].split_first() {
        Some((b' ', rest)) => rest,
        _ => return Err("exemplar: expected a space and a value after its labels".to_owned()),
    };
    let (value, rest) = split_token(rest);
    parse_float(value).map_err(|why| {
        format!(
            "exemplar: invalid value {:?}: {why}",
            String::from_utf8_lossy(value)
        )
    })?;
    if let Some(rest) = rest {
        let (ts, rest) = split_token(rest);
        parse_timestamp(ts).map_err(|why| format!("exemplar: {why}"))?;
        if rest.is_some() {
            return Err("exemplar: unexpected text after its timestamp".to_owned());
        }
    }
    Ok(())
}

/// A `#` line other than `# EOF`.
pub(super) fn comment(line: &[u8]) -> Result<(), String> {
    let unknown = || {
        format!(
            "unknown comment {:?}: OpenMetrics only allows `# TYPE`, `# HELP`, `# UNIT` and `# EOF`",
            String::from_utf8_lossy(line)
        )
    };
    let rest = line.strip_prefix(b"# ").ok_or_else(unknown)?;
    if let Some(rest) = rest.strip_prefix(b"TYPE ") {
        let (_, kind) = metadata(rest, "TYPE")?;
        match kind {
            b"counter" | b"gauge" | b"histogram" | b"gaugehistogram" | b"stateset" | b"info"
            | b"summary" | b"unknown" => Ok(()),
            other => Err(format!(
                "invalid metric type {:?} in `# TYPE`",
                String::from_utf8_lossy(other)
            )),
        }
    } else if let Some(rest) = rest.strip_prefix(b"HELP ") {
        let (_, help) = metadata(rest, "HELP")?;
        match std::str::from_utf8(help) {
            Ok(_) => Ok(()),
            Err(_) => Err("help text is not valid UTF-8".to_owned()),
        }
    } else if let Some(rest) = rest.strip_prefix(b"UNIT ") {
        let (name, unit) = metadata(rest, "UNIT")?;
        let suffixed = name.len() > unit.len()
            && name.ends_with(unit)
            && name[name.len() - unit.len() - 1] == b'_';
        if unit.is_empty() || suffixed {
            Ok(())
        } else {
            let unit = String::from_utf8_lossy(unit);
            Err(format!(
                "unit {unit:?} is not a suffix (`_{unit}`) of metric {:?}",
                String::from_utf8_lossy(name)
            ))
        }
    } else {
        Err(unknown())
    }
}
