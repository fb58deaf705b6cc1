//! Streaming parser of Prometheus' query responses: a pure function over [`Read`].
//!
//! A response looks like
//! `{"status":"success","data":{"resultType":"vector","result":[{"metric":{..},"value":[t,"v"]},..]}}`
//! (or `"matrix"` with `"values":[[t,"v"],..]`, or `{"status":"error","errorType":..,"error":..}`).
//! The Running question returns a matrix of possibly tens of megabytes, so nothing here
//! holds the body or a series' samples: serde visitors reduce every series while it is read
//! and hand it to a callback (only the labels the caller wants are kept, and a matrix series
//! is reduced to a [`RangeSummary`]). Key order is not assumed: `resultType` is checked as
//! soon as it is seen and again at the end, and each series must have the shape the caller
//! expects (`value` for a vector, `values` for a matrix).

use std::fmt;
use std::io::{BufReader, Read};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::error::{Error, Result};
use crate::metrics::Timestamp;

/// Buffer between the byte source and the JSON parser (which reads byte by byte).
const READ_BUFFER: usize = 64 * 1024;

/// The longest piece of response text quoted in an error message.
const QUOTE_LIMIT: usize = 64;

/// The labels of one series that the caller asked to keep, in response order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Labels(Vec<(String, String)>);

impl Labels {
    /// Removes and returns the first label called `name`, if present and not empty
    /// (Prometheus never reports empty labels: empty means absent).
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        let (_, value) = self.0.swap_remove(i);
        (!value.is_empty()).then_some(value)
    }

    /// The remaining labels.
    pub(crate) fn into_pairs(self) -> impl Iterator<Item = (String, String)> {
        self.0.into_iter()
    }
}

/// A matrix series reduced to what the status rules need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RangeSummary {
    /// The latest time of a sample whose value is exactly 1.
    pub(crate) last_one: Option<Timestamp>,
    /// How many samples had the value 1.
    pub(crate) ones: u64,
}

impl RangeSummary {
    fn add(&mut self, time: Timestamp, value: f64) {
        if value == 1.0 {
            self.ones = self.ones.saturating_add(1);
            self.last_one = self.last_one.max(Some(time));
        }
    }
}

/// Parses an instant-vector response, calling `each` with every series' wanted labels and
/// value. Returns [`Error::Query`] for `"status":"error"` and
/// [`Error::MalformedResponse`] for anything that is not a vector response.
pub(crate) fn parse_vector<R: Read>(
    reader: R,
    wanted: &dyn Fn(&str) -> bool,
    each: &mut dyn FnMut(Labels, f64),
) -> Result<()> {
    parse(reader, wanted, Sink::Vector(each))
}

/// Parses a range-vector (matrix) response, calling `each` with every series' wanted labels
/// and the summary of its samples. Errors as [`parse_vector`].
pub(crate) fn parse_matrix<R: Read>(
    reader: R,
    wanted: &dyn Fn(&str) -> bool,
    each: &mut dyn FnMut(Labels, RangeSummary),
) -> Result<()> {
    parse(reader, wanted, Sink::Matrix(each))
}

/// Where series go; also tells which result type is expected.
enum Sink<'a> {
    Vector(&'a mut dyn FnMut(Labels, f64)),
    Matrix(&'a mut dyn FnMut(Labels, RangeSummary)),
}

impl Sink<'_> {
    fn result_type(&self) -> &'static str {
        match self {
            Sink::Vector(_) => "vector",
            Sink::Matrix(_) => "matrix",
        }
    }
}

fn parse<R: Read>(reader: R, wanted: &dyn Fn(&str) -> bool, mut sink: Sink<'_>) -> Result<()> {
    let expected = sink.result_type();
    let mut de =
        serde_json::Deserializer::from_reader(BufReader::with_capacity(READ_BUFFER, reader));
    let top = TopSeed {
        wanted,
        sink: &mut sink,
    }
    .deserialize(&mut de)
    .map_err(|e| malformed(&e))?;
    de.end().map_err(|e| malformed(&e))?;
    top.finish(expected)
}

/// Maps a JSON error to [`Error::MalformedResponse`], saying what kind of problem it is.
/// serde_json's messages carry a position, never the body.
fn malformed(e: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "truncated body",
        Category::Syntax => "invalid JSON",
        Category::Data => "unexpected content",
        Category::Io => "cannot read the body",
    };
    Error::MalformedResponse(format!("{what}: {e}"))
}

/// At most [`QUOTE_LIMIT`] characters of `s`, for error messages.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LIMIT) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// What the top-level object said besides the series.
#[derive(Debug, Default)]
struct Top {
    status: Option<String>,
    error_type: Option<String>,
    error: Option<String>,
    data: Option<Data>,
}

/// What the `data` object said besides the series.
#[derive(Debug, Default)]
struct Data {
    result_type: Option<String>,
    saw_result: bool,
}

impl Top {
    fn finish(self, expected: &str) -> Result<()> {
        match self.status.as_deref() {
            Some("success") => {}
            Some("error") => {
                return Err(Error::Query {
                    error_type: self.error_type.unwrap_or_else(|| "unknown".to_owned()),
                    message: self.error.unwrap_or_default(),
                });
            }
            Some(other) => {
                return Err(Error::MalformedResponse(format!(
                    "unknown status {}",
                    quote(other)
                )));
            }
            None => return Err(Error::MalformedResponse("no \"status\" field".to_owned())),
        }
        let data = self.data.ok_or_else(|| {
            Error::MalformedResponse("no \"data\" in a successful response".to_owned())
        })?;
        match data.result_type.as_deref() {
            Some(t) if t == expected => {}
            Some(t) => return Err(Error::MalformedResponse(wrong_result_type(t, expected))),
            None => {
                return Err(Error::MalformedResponse(
                    "no \"resultType\" in \"data\"".to_owned(),
                ));
            }
        }
        if !data.saw_result {
            return Err(Error::MalformedResponse(
                "no \"result\" in \"data\"".to_owned(),
            ));
        }
        Ok(())
    }
}

fn wrong_result_type(found: &str, expected: &str) -> String {
    format!(
        "resultType {} where {expected:?} was expected",
        quote(found)
    )
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum TopKey {
    Status,
    Data,
    ErrorType,
    Error,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum DataKey {
    ResultType,
    Result,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum SeriesKey {
    Metric,
    Value,
    Values,
    #[serde(other)]
    Other,
}

struct TopSeed<'s, 'a> {
    wanted: &'s dyn Fn(&str) -> bool,
    sink: &'s mut Sink<'a>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = Top;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Prometheus query response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let mut top = Top::default();
        while let Some(key) = map.next_key::<TopKey>()? {
            match key {
                TopKey::Status => top.status = Some(map.next_value()?),
                TopKey::ErrorType => top.error_type = map.next_value()?,
                TopKey::Error => top.error = map.next_value()?,
                TopKey::Data => {
                    top.data = map.next_value_seed(DataSeed {
                        wanted: self.wanted,
                        sink: &mut *self.sink,
                    })?;
                }
                TopKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }
}

/// The `data` object (or `null`, as in some error responses).
struct DataSeed<'s, 'a> {
    wanted: &'s dyn Fn(&str) -> bool,
    sink: &'s mut Sink<'a>,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_> {
    type Value = Option<Data>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Data>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, '_> {
    type Value = Option<Data>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a \"data\" object")
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<Data>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<Data>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<Data>, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Data>, A::Error> {
        let expected = self.sink.result_type();
        let mut data = Data::default();
        while let Some(key) = map.next_key::<DataKey>()? {
            match key {
                DataKey::ResultType => {
                    let t: String = map.next_value()?;
                    if t != expected {
                        // Fail before trying to read a scalar or a matrix as series.
                        return Err(de::Error::custom(wrong_result_type(&t, expected)));
                    }
                    data.result_type = Some(t);
                }
                DataKey::Result => {
                    map.next_value_seed(ResultSeed {
                        wanted: self.wanted,
                        sink: &mut *self.sink,
                    })?;
                    data.saw_result = true;
                }
                DataKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(data))
    }
}

/// The `result` array: every series is reduced and handed to the sink as it is read.
struct ResultSeed<'s, 'a> {
    wanted: &'s dyn Fn(&str) -> bool,
    sink: &'s mut Sink<'a>,
}

impl<'de> DeserializeSeed<'de> for ResultSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ResultSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of series")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let matrix = matches!(self.sink, Sink::Matrix(_));
        while let Some(series) = seq.next_element_seed(SeriesSeed {
            wanted: self.wanted,
            matrix,
        })? {
            match (&mut *self.sink, series.sample) {
                (Sink::Vector(each), SeriesSample::Instant(v)) => each(series.labels, v),
                (Sink::Matrix(each), SeriesSample::Range(r)) => each(series.labels, r),
                // SeriesSeed only produces the kind it was asked for.
                (Sink::Vector(_), SeriesSample::Range(_))
                | (Sink::Matrix(_), SeriesSample::Instant(_)) => {
                    return Err(de::Error::custom("series of the wrong kind"));
                }
            }
        }
        Ok(())
    }
}

/// One series, reduced.
struct ReducedSeries {
    labels: Labels,
    sample: SeriesSample,
}

enum SeriesSample {
    Instant(f64),
    Range(RangeSummary),
}

struct SeriesSeed<'s> {
    wanted: &'s dyn Fn(&str) -> bool,
    matrix: bool,
}

impl<'de> DeserializeSeed<'de> for SeriesSeed<'_> {
    type Value = ReducedSeries;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ReducedSeries, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SeriesSeed<'_> {
    type Value = ReducedSeries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Prometheus series object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReducedSeries, A::Error> {
        let mut labels = Labels::default();
        let mut sample = None;
        while let Some(key) = map.next_key::<SeriesKey>()? {
            match key {
                SeriesKey::Metric => labels = map.next_value_seed(LabelsSeed(self.wanted))?,
                SeriesKey::Value if !self.matrix => {
                    let (_, value) = map.next_value_seed(SampleSeed)?;
                    sample = Some(SeriesSample::Instant(value));
                }
                SeriesKey::Values if self.matrix => {
                    sample = Some(SeriesSample::Range(map.next_value_seed(RangeSeed)?));
                }
                SeriesKey::Value => {
                    return Err(de::Error::custom(
                        "series with a single \"value\" where a matrix was expected",
                    ));
                }
                SeriesKey::Values => {
                    return Err(de::Error::custom(
                        "series with \"values\" where a vector was expected",
                    ));
                }
                SeriesKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let sample = sample.ok_or_else(|| {
            de::Error::custom(if self.matrix {
                "series without \"values\""
            } else {
                "series without \"value\""
            })
        })?;
        Ok(ReducedSeries { labels, sample })
    }
}

/// The `metric` object: keeps the wanted labels, skips the others without allocating.
struct LabelsSeed<'s>(&'s dyn Fn(&str) -> bool);

impl<'de> DeserializeSeed<'de> for LabelsSeed<'_> {
    type Value = Labels;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Labels, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LabelsSeed<'_> {
    type Value = Labels;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a label set object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
        let mut labels = Vec::new();
        while let Some(name) = map.next_key_seed(LabelNameSeed(self.0))? {
            match name {
                Some(name) => {
                    let value: String = map.next_value()?;
                    labels.push((name, value));
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Labels(labels))
    }
}

/// A label name: `Some(name)` if wanted, `None` (no allocation) otherwise.
struct LabelNameSeed<'s>(&'s dyn Fn(&str) -> bool);

impl<'de> DeserializeSeed<'de> for LabelNameSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for LabelNameSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a label name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<String>, E> {
        Ok((self.0)(name).then(|| name.to_owned()))
    }

    fn visit_string<E: de::Error>(self, name: String) -> Result<Option<String>, E> {
        Ok((self.0)(&name).then_some(name))
    }
}

/// All samples of a matrix series, folded into a [`RangeSummary`] one at a time.
struct RangeSeed;

impl<'de> DeserializeSeed<'de> for RangeSeed {
    type Value = RangeSummary;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RangeSummary, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RangeSeed {
    type Value = RangeSummary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of samples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RangeSummary, A::Error> {
        let mut summary = RangeSummary::default();
        while let Some((time, value)) = seq.next_element_seed(SampleSeed)? {
            summary.add(time, value);
        }
        Ok(summary)
    }
}

/// One `[time, "value"]` pair.
struct SampleSeed;

impl<'de> DeserializeSeed<'de> for SampleSeed {
    type Value = (Timestamp, f64);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(Timestamp, f64), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SampleSeed {
    type Value = (Timestamp, f64);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [time, \"value\"] sample")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(Timestamp, f64), A::Error> {
        let time = seq
            .next_element_seed(NumberSeed::Time)?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let value = seq
            .next_element_seed(NumberSeed::Value)?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(3, &self));
        }
        let time = Timestamp::from_secs_f64(time)
            .ok_or_else(|| de::Error::custom(format!("sample time {time:e} is out of range")))?;
        Ok((time, value))
    }
}

/// A sample time (a JSON number of seconds) or value (a string such as `"1"`, `"NaN"`,
/// `"+Inf"`, `"1.5e3"`). Either form is accepted for both, to be lenient with proxies.
#[derive(Clone, Copy)]
enum NumberSeed {
    Time,
    Value,
}

impl<'de> DeserializeSeed<'de> for NumberSeed {
    type Value = f64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NumberSeed {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberSeed::Time => f.write_str("a sample time in seconds"),
            NumberSeed::Value => f.write_str("a sample value string"),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    #[allow(clippy::cast_precision_loss)] // sample times and values are f64 in Prometheus
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        parse_sample_value(v).ok_or_else(|| match self {
            NumberSeed::Time => E::custom(format!("sample time {} is not a number", quote(v))),
            NumberSeed::Value => E::custom(format!("sample value {} is not a number", quote(v))),
        })
    }
}

/// Parses a sample value as Prometheus formats it: a Go float (`1`, `1.5e+03`, `0.25`),
/// `NaN`, `+Inf` or `-Inf` (case-insensitive, as Prometheus accepts them).
pub(crate) fn parse_sample_value(s: &str) -> Option<f64> {
    let t = s.trim();
    // Rust's parser also accepts "infinity" and "nan" in any case, like Go's ParseFloat.
    t.parse::<f64>().ok()
}
