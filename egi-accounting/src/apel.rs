//! APEL cloud messages (`APEL-cloud-message: v0.4`): field rules, rendering, size limits.
//!
//! APEL's loader rejects a whole message when one record is invalid, and the SSM sender
//! decodes message bodies as ASCII. So every record is validated before it goes into a
//! message ([`validate`]), every string is made ASCII by [`ascii_field`], and messages are
//! bounded by record count and by size ([`Limits`]). [`parse_message`] reads a message back
//! with the loader's rules, for tests and for operators who want to check a spool.
//!
//! # Non-ASCII names
//! Free-text values (user names, namespaces, images) are percent-encoded byte-wise as UTF-8
//! (RFC 3986 style) for every byte outside printable ASCII, for `%` itself, and for a
//! leading or trailing space: `zoë` becomes `zo%C3%AB`. The encoding is reversible, leaves
//! plain ASCII names untouched, and makes it impossible for a hostile name (one containing
//! a newline, say) to inject fields into the message. A value the loader would read as null
//! (`none`, `null`) gets its first letter encoded (`%6Eone`).
//!
//! # Overlong names
//! APEL's columns hold 255 characters, and encoding can triple a name's length (a
//! 50-character non-ASCII user name is enough to overflow). An encoded value longer than
//! [`MAX_FIELD_LEN`] is shortened rather than losing its record: the first 233 characters
//! (never splitting a `%XX` escape), then `%~`, then 20 hex digits of the SHA-256 of the
//! original value. The same name always gives the same text, and two different names never
//! give the same text: the encoder never writes `%` followed by anything but two hex
//! digits, so a shortened value cannot equal one that was not shortened, and two shortened
//! ones differ in their prefix or their hash (80 bits). [`was_shortened`] tells them apart.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::num::NonZeroUsize;

use sha2::{Digest, Sha256};

use crate::record::CloudRecord;

/// First line of every message.
pub const HEADER: &str = "APEL-cloud-message: v0.4";

/// APEL's field order, which the loader also accepts as the complete set of keys.
pub const FIELDS: [&str; 27] = [
    "RecordCreateTime",
    "VMUUID",
    "SiteName",
    "CloudComputeService",
    "MachineName",
    "LocalUserId",
    "LocalGroupId",
    "GlobalUserName",
    "FQAN",
    "Status",
    "StartTime",
    "EndTime",
    "SuspendDuration",
    "WallDuration",
    "CpuDuration",
    "CpuCount",
    "NetworkType",
    "NetworkInbound",
    "NetworkOutbound",
    "PublicIPCount",
    "Memory",
    "Disk",
    "BenchmarkType",
    "Benchmark",
    "StorageRecordId",
    "ImageId",
    "CloudType",
];

const INTEGER_FIELDS: [&str; 8] = [
    "SuspendDuration",
    "WallDuration",
    "CpuDuration",
    "NetworkInbound",
    "NetworkOutbound",
    "PublicIPCount",
    "Memory",
    "Disk",
];
const TIME_FIELDS: [&str; 3] = ["RecordCreateTime", "StartTime", "EndTime"];
const DECIMAL_FIELDS: [&str; 2] = ["CpuCount", "Benchmark"];

/// Longest string APEL's database columns take.
pub const MAX_FIELD_LEN: usize = 255;
/// Largest CpuCount in thousandths (DECIMAL(10,3)).
pub const MAX_CPU_COUNT_MILLI: i64 = 9_999_999_999;

/// Latest time APEL's loader can store (9999-12-31T23:59:59Z).
pub const MAX_TIME: i64 = 253_402_300_799;

/// Marks a shortened value (see the module documentation); the encoder never writes it.
const SHORTENED_MARK: &str = "%~";
/// Hex digits of the SHA-256 of the original value at the end of a shortened value.
const HASH_HEX_DIGITS: usize = 20;

/// Makes a value safe for an APEL message (see the module documentation): printable ASCII,
/// at most [`MAX_FIELD_LEN`] characters, distinct values kept distinct. A value the loader
/// would read as null (`none`, `null`, any case) gets its first letter encoded, so that a
/// user called `None` is still a user.
pub fn ascii_field(value: &str) -> String {
    if !value.is_empty() && is_null_word(value) {
        let (first, rest) = value.split_at(1);
        return format!("%{:02X}{rest}", first.as_bytes()[0]);
    }
    let encoded = encode(value);
    if encoded.len() <= MAX_FIELD_LEN {
        return encoded.into_owned();
    }
    let bytes = encoded.as_bytes();
    let mut cut = MAX_FIELD_LEN - SHORTENED_MARK.len() - HASH_HEX_DIGITS;
    // Every `%` the encoder writes starts a three-character escape: do not split one.
    if let Some(back) = (1..=2).find(|b| bytes[cut - b] == b'%') {
        cut -= back;
    }
    let mut out = String::with_capacity(MAX_FIELD_LEN);
    out.push_str(&encoded[..cut]);
    out.push_str(SHORTENED_MARK);
    for b in Sha256::digest(value.as_bytes())
        .iter()
        .take(HASH_HEX_DIGITS / 2)
    {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether [`ascii_field`] shortened the value it returned (it was over
/// [`MAX_FIELD_LEN`] characters once encoded).
pub fn was_shortened(field: &str) -> bool {
    let bytes = field.as_bytes();
    bytes.len() > HASH_HEX_DIGITS
        && bytes[..bytes.len() - HASH_HEX_DIGITS].ends_with(SHORTENED_MARK.as_bytes())
}

fn encode(value: &str) -> Cow<'_, str> {
    let bytes = value.as_bytes();
    let last = bytes.len().saturating_sub(1);
    let needs = |i: usize, b: u8| {
        !(0x20..=0x7e).contains(&b) || b == b'%' || (b == b' ' && (i == 0 || i == last))
    };
    if !bytes.iter().enumerate().any(|(i, &b)| needs(i, b)) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for (i, &b) in bytes.iter().enumerate() {
        if needs(i, b) {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
    Cow::Owned(out)
}

fn is_null_word(v: &str) -> bool {
    v.is_empty() || v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("null")
}

pub(crate) fn check_text(field: &str, value: &str, mandatory: bool) -> Result<(), String> {
    if mandatory && is_null_word(value) {
        return Err(format!("{field} is mandatory but is {value:?}"));
    }
    if value.len() > MAX_FIELD_LEN {
        return Err(format!("{field} is longer than {MAX_FIELD_LEN} characters"));
    }
    if let Some(c) = value.bytes().find(|b| !(0x20..=0x7e).contains(b)) {
        return Err(format!(
            "{field} contains the byte {c:#04x}, not printable ASCII"
        ));
    }
    if value.trim() != value {
        return Err(format!("{field} has leading or trailing blanks"));
    }
    Ok(())
}

/// Checks a record against APEL's field rules: mandatory VMUUID and SiteName, printable
/// ASCII strings of at most 255 characters, non-negative integers, CpuCount within
/// DECIMAL(10,3), EndTime not before StartTime.
pub fn validate(r: &CloudRecord) -> Result<(), String> {
    check_text("VMUUID", &r.vm_uuid, true)?;
    check_text("SiteName", &r.site_name, true)?;
    check_text("MachineName", &r.machine_name, false)?;
    check_text("CloudType", &r.cloud_type, false)?;
    for (field, value) in [
        ("CloudComputeService", &r.cloud_compute_service),
        ("LocalGroupId", &r.local_group_id),
        ("GlobalUserName", &r.global_user_name),
        ("FQAN", &r.fqan),
        ("ImageId", &r.image_id),
    ] {
        if let Some(v) = value {
            check_text(field, v, false)?;
        }
    }
    for (field, value) in [
        ("RecordCreateTime", Some(r.record_create_time)),
        ("StartTime", Some(r.start_time)),
        ("WallDuration", Some(r.wall_duration)),
        ("CpuDuration", r.cpu_duration),
        ("NetworkInbound", r.network_inbound),
        ("NetworkOutbound", r.network_outbound),
        ("Memory", r.memory),
        ("Disk", Some(r.disk)),
    ] {
        if let Some(value) = value
            && value < 0
        {
            return Err(format!("{field} is negative ({value})"));
        }
    }
    for (field, value) in [
        ("RecordCreateTime", Some(r.record_create_time)),
        ("StartTime", Some(r.start_time)),
        ("EndTime", r.end_time),
    ] {
        if value.is_some_and(|v| v > MAX_TIME) {
            return Err(format!("{field} is after the year 9999"));
        }
    }
    if let Some(end) = r.end_time
        && end < r.start_time
    {
        return Err(format!(
            "EndTime {end} is before StartTime {}",
            r.start_time
        ));
    }
    if !(0..=MAX_CPU_COUNT_MILLI).contains(&r.cpu_count_milli) {
        return Err(format!(
            "CpuCount {} is outside DECIMAL(10,3)",
            r.cpu_count_milli
        ));
    }
    Ok(())
}

/// CpuCount text from thousandths: `2`, `0.5`, `1.125`.
pub fn cpu_count_text(milli: i64) -> String {
    let whole = milli / 1000;
    let frac = milli % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        let digits = format!("{frac:03}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Appends the record's `Key: value` lines, in APEL's field order, to `out`.
pub fn render_into(r: &CloudRecord, out: &mut String) {
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{k}: {v}");
    };
    line("RecordCreateTime", &r.record_create_time);
    line("VMUUID", &r.vm_uuid);
    line("SiteName", &r.site_name);
    if let Some(v) = &r.cloud_compute_service {
        line("CloudComputeService", v);
    }
    line("MachineName", &r.machine_name);
    if let Some(v) = &r.local_group_id {
        line("LocalGroupId", v);
    }
    if let Some(v) = &r.global_user_name {
        line("GlobalUserName", v);
    }
    if let Some(v) = &r.fqan {
        line("FQAN", v);
    }
    line("Status", &r.status.as_str());
    line("StartTime", &r.start_time);
    if let Some(v) = &r.end_time {
        line("EndTime", v);
    }
    line("SuspendDuration", &0);
    line("WallDuration", &r.wall_duration);
    if let Some(v) = &r.cpu_duration {
        line("CpuDuration", v);
    }
    line("CpuCount", &cpu_count_text(r.cpu_count_milli));
    if let Some(v) = &r.network_inbound {
        line("NetworkInbound", v);
    }
    if let Some(v) = &r.network_outbound {
        line("NetworkOutbound", v);
    }
    line("PublicIPCount", &0);
    if let Some(v) = &r.memory {
        line("Memory", v);
    }
    line("Disk", &r.disk);
    if let Some(v) = &r.image_id {
        line("ImageId", v);
    }
    line("CloudType", &r.cloud_type);
}

/// How big a message may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records per message (default 100, as cASO sends).
    pub max_records: NonZeroUsize,
    /// Bytes per message (default 500,000: half the broker's ~1 MB limit, leaving room for
    /// the sender's S/MIME signature and base64 encoding).
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_records: NonZeroUsize::new(100).unwrap_or(NonZeroUsize::MIN),
            max_bytes: 500_000,
        }
    }
}

/// A complete message: header and at least one record, printable ASCII and newlines only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApelMessage {
    text: String,
    records: usize,
}

impl ApelMessage {
    /// The message text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How many records it holds.
    pub fn records(&self) -> usize {
        self.records
    }
}

/// Packs records into messages within `limits`, one record at a time, so that a run never
/// holds more than one message of text. A record is never split; a single record larger
/// than `max_bytes` (impossible with valid records) gets a message of its own.
#[derive(Debug)]
pub struct MessageBuilder {
    limits: Limits,
    text: String,
    count: usize,
    rendered: String,
}

impl MessageBuilder {
    /// An empty builder.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            text: String::new(),
            count: 0,
            rendered: String::with_capacity(1024),
        }
    }

    /// Adds a record; returns the previous message when this record starts a new one.
    pub fn push(&mut self, r: &CloudRecord) -> Option<ApelMessage> {
        self.rendered.clear();
        render_into(r, &mut self.rendered);
        let extra = self.rendered.len() + 3;
        let full = self.count > 0
            && (self.count == self.limits.max_records.get()
                || self.text.len() + extra > self.limits.max_bytes);
        let done = if full { self.take() } else { None };
        if self.count == 0 {
            self.text.push_str(HEADER);
            self.text.push('\n');
        } else {
            self.text.push_str("%%\n");
        }
        self.text.push_str(&self.rendered);
        self.count += 1;
        done
    }

    /// The last, incomplete message, if any record is pending.
    pub fn finish(mut self) -> Option<ApelMessage> {
        self.take()
    }

    fn take(&mut self) -> Option<ApelMessage> {
        (self.count > 0).then(|| {
            let records = std::mem::take(&mut self.count);
            ApelMessage {
                text: std::mem::take(&mut self.text),
                records,
            }
        })
    }
}

/// Splits records into messages within `limits`, keeping their order (see
/// [`MessageBuilder`]).
pub fn messages(records: &[CloudRecord], limits: Limits) -> Vec<ApelMessage> {
    let mut builder = MessageBuilder::new(limits);
    let mut out: Vec<ApelMessage> = records.iter().filter_map(|r| builder.push(r)).collect();
    out.extend(builder.finish());
    out
}

/// One record read back from a message: `(key, value)` pairs as the loader sees them
/// (null words already removed).
pub type ParsedRecord = Vec<(String, String)>;

/// Reads a message with APEL's loader rules and returns its records, or the first reason
/// the loader would reject the whole message.
pub fn parse_message(text: &str) -> Result<Vec<ParsedRecord>, String> {
    if let Some(b) = text.bytes().find(|b| !b.is_ascii()) {
        return Err(format!(
            "non-ASCII byte {b:#04x}: the sender cannot send it"
        ));
    }
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.trim() == HEADER => {}
        other => return Err(format!("bad header {other:?}")),
    }
    let mut records = Vec::new();
    let mut current: ParsedRecord = Vec::new();
    for line in lines.chain(std::iter::once("%%")) {
        if line.trim() == "%%" {
            if !current.is_empty() {
                check_parsed(&current)?;
                records.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("line without ':': {line:?}"))?;
        let (k, v) = (k.trim(), v.trim());
        if !FIELDS.contains(&k) {
            return Err(format!("unknown key {k:?}"));
        }
        if current.iter().any(|(old, _)| old == k) {
            return Err(format!("key {k:?} twice in one record"));
        }
        if !is_null_word(v) {
            current.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok(records)
}

fn check_parsed(rec: &ParsedRecord) -> Result<(), String> {
    for mandatory in ["VMUUID", "SiteName"] {
        if !rec.iter().any(|(k, _)| k == mandatory) {
            return Err(format!("record without {mandatory}"));
        }
    }
    for (k, v) in rec {
        let k = k.as_str();
        if INTEGER_FIELDS.contains(&k) && v.parse::<i64>().is_err() {
            return Err(format!("{k}: {v:?} is not an integer"));
        }
        if TIME_FIELDS.contains(&k) && v.parse::<i64>().is_err() && !v.ends_with('Z') {
            return Err(format!("{k}: {v:?} is not a time"));
        }
        if DECIMAL_FIELDS.contains(&k) {
            let ok = v
                .parse::<f64>()
                .is_ok_and(|x| x.is_finite() && x.abs() < 1e7)
                && v.split_once('.').is_none_or(|(_, f)| f.len() <= 3);
            if !ok {
                return Err(format!("{k}: {v:?} is not a DECIMAL(10,3)"));
            }
        }
        if v.len() > MAX_FIELD_LEN {
            return Err(format!("{k} is longer than {MAX_FIELD_LEN} characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
