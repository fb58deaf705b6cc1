//! Tests of the OpenMetrics parser: accepted syntax, every kind of malformed line, and a
//! differential test against the `prometheus-parse` crate.

use std::collections::BTreeMap;

use super::history::{History, Labels};
use crate::error::Error;
use crate::metrics::Timestamp;

fn parse(text: &str) -> History {
    History::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().copied().collect()
}

fn ms(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[test]
fn parses_metadata_samples_escapes_and_special_values() {
    let h = parse(concat!(
        "# TYPE kube_pod_created gauge\n",
        "# HELP kube_pod_created Unix creation timestamp, with \\\\ and \\n escapes: ünïcode\n",
        "# UNIT uptime_seconds seconds\n",
        "# HELP empty_help \n",
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-jürgen\",uid=\"u-1\"} 1.7e9 1700000000\n",
        "# TYPE c counter\n",
        "c_total{path=\"C:\\\\dir\\\\\",msg=\"say \\\"hi\\\"\\nbye\"} NaN 1700000000.5 # {trace=\"x\"} 1 1700000000.4\n",
        "c_total{path=\"C:\\\\dir\\\\\",msg=\"say \\\"hi\\\"\\nbye\"} +Inf 1700000001.25\n",
        "c_total{path=\"C:\\\\dir\\\\\",msg=\"say \\\"hi\\\"\\nbye\"} -Inf 1700000002 # {} 3\n",
        "up 1 -1.5\n",
        "up 0 1e1\n",
        "# EOF\n",
    ));
    assert_eq!(h.series().len(), 3);
    assert_eq!(h.sample_count(), 6);
    assert_eq!(h.last_timestamp(), Some(ms(1_700_000_002_000)));

    let c = &h.series()[0];
    assert_eq!(c.name(), "c_total");
    assert_eq!(
        *c.labels(),
        labels(&[
            ("__name__", "c_total"),
            ("msg", "say \"hi\"\nbye"),
            ("path", "C:\\dir\\")
        ])
    );
    assert_eq!(c.label("path"), Some("C:\\dir\\"));
    assert_eq!(c.label("nope"), None);
    let s = c.samples();
    assert_eq!(s.len(), 3);
    assert!(s[0].1.is_nan());
    assert_eq!(s[0].0, ms(1_700_000_000_500));
    assert_eq!(s[1], (ms(1_700_000_001_250), f64::INFINITY));
    assert_eq!(s[2], (ms(1_700_000_002_000), f64::NEG_INFINITY));

    let k = &h.series()[1];
    assert_eq!(k.name(), "kube_pod_created");
    assert_eq!(k.label("pod"), Some("jupyter-jürgen"));
    assert_eq!(k.samples(), [(ms(1_700_000_000_000), 1.7e9)]);

    let up = &h.series()[2];
    assert_eq!(*up.labels(), labels(&[("__name__", "up")]));
    assert_eq!(up.samples(), [(ms(-1500), 1.0), (ms(10_000), 0.0)]);
    assert_eq!(h.series_named("up").count(), 1);
    assert_eq!(h.series_named("absent").count(), 0);
}

#[test]
fn values_are_read_like_go_parse_float() {
    let h = parse(concat!(
        "v{i=\"1\"} 12345678901234567890 1\n",
        "v{i=\"2\"} -0 1\n",
        "v{i=\"3\"} .5 1\n",
        "v{i=\"4\"} 5. 1\n",
        "v{i=\"5\"} -1.5E-3 1\n",
        "v{i=\"6\"} nan 1\n",
        "v{i=\"7\"} inf 1\n",
        "v{i=\"8\"} -Infinity 1\n",
        "v{i=\"9\"} +7 1\n",
        "# EOF",
    ));
    let v: Vec<f64> = h.series().iter().map(|s| s.samples()[0].1).collect();
    assert_eq!(v[0], 12_345_678_901_234_567_890.0);
    assert!(v[1] == 0.0 && v[1].is_sign_negative());
    assert_eq!(v[2..4], [0.5, 5.0]);
    assert_eq!(v[4], -1.5e-3);
    assert!(v[5].is_nan());
    assert_eq!(v[6..], [f64::INFINITY, f64::NEG_INFINITY, 7.0]);
}

#[test]
fn timestamps_are_truncated_to_the_millisecond_like_promtool() {
    // promtool 2.42 stores int64(seconds * 1000): 1000.0009 -> 1000000, 1001.0015 -> 1001001.
    let h =
        parse("g 1 1000.0009\ng 2 1001.0015\ng 3 1002.1234\ng 4 1003.123\ng 5 -0.0015\n# EOF\n");
    let times: Vec<i64> = h.series()[0]
        .samples()
        .iter()
        .map(|(t, _)| t.as_millis())
        .collect();
    assert_eq!(times, [-1, 1_000_000, 1_001_001, 1_002_123, 1_003_123]);
}

#[test]
fn one_series_however_it_is_written() {
    // Label order, `{}` and empty-valued labels (which Prometheus does not store) do not make
    // new series.
    let h = parse(concat!(
        "m{a=\"1\",b=\"2\"} 1 10\n",
        "m{b=\"2\",a=\"1\"} 2 20\n",
        "m{a=\"1\",b=\"2\",c=\"\"} 3 30\n",
        "n 1 10\n",
        "n{} 2 20\n",
        "# EOF\n",
    ));
    assert_eq!(h.series().len(), 2);
    assert_eq!(
        *h.series()[0].labels(),
        labels(&[("__name__", "m"), ("a", "1"), ("b", "2")])
    );
    assert_eq!(
        h.series()[0].samples(),
        [(ms(10_000), 1.0), (ms(20_000), 2.0), (ms(30_000), 3.0)]
    );
    assert_eq!(h.series()[1].samples().len(), 2);
}

#[test]
fn samples_in_any_order_are_sorted_and_repeated_times_keep_the_first() {
    let h = parse(concat!(
        "m 3 30\nother 1 5\nm 1 10\nm 2 20\nm 9 20\nm 4 40\n",
        "# EOF\n"
    ));
    let m = h.series_named("m").next().unwrap();
    assert_eq!(
        m.samples(),
        [
            (ms(10_000), 1.0),
            (ms(20_000), 2.0),
            (ms(30_000), 3.0),
            (ms(40_000), 4.0)
        ]
    );
    assert_eq!(h.sample_count(), 5);
}

#[test]
fn series_are_in_prometheus_storage_order() {
    // Label sets compare label by label, `__name__` included: `Z` sorts before `__name__`.
    let h = parse("b{x=\"1\"} 1 1\na{x=\"2\"} 1 1\na{x=\"1\"} 1 1\nz{Z=\"1\"} 1 1\n# EOF\n");
    let order: Vec<(&str, Option<&str>)> = h
        .series()
        .iter()
        .map(|s| (s.name(), s.label("x").or(s.label("Z"))))
        .collect();
    assert_eq!(
        order,
        [
            ("z", Some("1")),
            ("a", Some("1")),
            ("a", Some("2")),
            ("b", Some("1"))
        ]
    );
    let mut names: Vec<&str> = h.metric_names().collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "b", "z"]);
}

#[test]
fn an_empty_history_is_valid() {
    let h = parse("# TYPE g gauge\n# EOF");
    assert!(h.series().is_empty());
    assert_eq!(h.last_timestamp(), None);
}

/// Parses `text`, expects an error on `line` whose message contains `needle`.
fn assert_error(text: &[u8], line: usize, needle: &str) {
    match History::parse(text) {
        Err(Error::OpenMetrics { line: l, message }) => {
            assert!(
                l == line && message.contains(needle),
                "{:?}: got line {l}: {message}, wanted line {line}: ...{needle}...",
                String::from_utf8_lossy(text)
            );
        }
        other => panic!("{:?}: got {other:?}", String::from_utf8_lossy(text)),
    }
}

#[test]
fn malformed_lines_are_errors_naming_the_line_and_the_problem() {
    let cases: &[(&[u8], usize, &str)] = &[
        // Bad escape; the only ones allowed are \\ \" \n.
        (
            b"g 1 1\ng{a=\"x\\q\"} 1 1\n# EOF\n",
            2,
            "invalid escape `\\q`",
        ),
        // Missing value.
        (b"g{a=\"1\"}\n# EOF\n", 1, "missing value"),
        (b"g{a=\"1\"} \n# EOF\n", 1, "missing value"),
        (b"g  1 1\n# EOF\n", 1, "two spaces"),
        // Unterminated label set and value.
        (b"g{a=\"1\" 1 1\n# EOF\n", 1, "unterminated label set"),
        (b"g{a=\"1 1 1\n# EOF\n", 1, "unterminated label value"),
        // Missing # EOF, garbage after it.
        (b"g 1 1\n", 2, "does not end with `# EOF`"),
        (b"g 1 1\n# EOF\ng 2 2\n", 3, "after `# EOF`"),
        (b"g 1 1\n# EOF\n\n", 3, "after `# EOF`"),
        (b"", 1, "does not end with `# EOF`"),
        // Non-UTF-8 label value.
        (b"g{a=\"\xff\xfe\"} 1 1\n# EOF\n", 1, "not valid UTF-8"),
        // Duplicated label name; __name__ repeating the name.
        (
            b"g{a=\"1\",b=\"2\",a=\"3\"} 1 1\n# EOF\n",
            1,
            "label \"a\" appears twice",
        ),
        (b"g{__name__=\"g\"} 1 1\n# EOF\n", 1, "`__name__`"),
        // No timestamp, bad timestamp.
        (b"g 1\n# EOF\n", 1, "no timestamp"),
        (b"g 1 NaN\n# EOF\n", 1, "invalid timestamp"),
        (b"g 1 1 \n# EOF\n", 1, "trailing space"),
        (b"g 1 12:00\n# EOF\n", 1, "invalid timestamp"),
        // Bad values.
        (b"g one 1\n# EOF\n", 1, "invalid value \"one\""),
        (b"g 1_000 1\n# EOF\n", 1, "invalid value"),
        (b"g 0x10 1\n# EOF\n", 1, "invalid value"),
        (b"g 1e999 1\n# EOF\n", 1, "out of the range"),
        (b"g -NaN 1\n# EOF\n", 1, "NaN takes no sign"),
        // Label syntax.
        (b"g{a=\"1\",} 1 1\n# EOF\n", 1, "trailing or doubled comma"),
        (b"g{a=1} 1 1\n# EOF\n", 1, "double quotes"),
        (
            b"g{a:b=\"1\"} 1 1\n# EOF\n",
            1,
            "expected `=` after label name \"a\"",
        ),
        (b"g{1a=\"1\"} 1 1\n# EOF\n", 1, "expected a label name"),
        (b"g{a=\"1\" b=\"2\"} 1 1\n# EOF\n", 1, "expected `,` or `}`"),
        (b"g{a=\"1\\", 1, "unterminated label value"),
        // Line structure.
        (b"g 1 1\n\ng 2 2\n# EOF\n", 2, "empty line"),
        (b"-g 1 1\n# EOF\n", 1, "expected a metric name"),
        (b"g-x 1 1\n# EOF\n", 1, "unexpected '-' after the series"),
        (b"g 1 1\r\n# EOF\n", 1, "not \\r\\n"),
        // Comments.
        (b"# hello\n# EOF\n", 1, "unknown comment"),
        (b"#TYPE g gauge\n# EOF\n", 1, "unknown comment"),
        (b"# TYPE g\n# EOF\n", 1, "expected a space and text"),
        (
            b"# TYPE g gauges\n# EOF\n",
            1,
            "invalid metric type \"gauges\"",
        ),
        (
            b"# TYPE 1g gauge\n# EOF\n",
            1,
            "expected a metric name after `# TYPE`",
        ),
        (b"# HELP g\n# EOF\n", 1, "`# HELP`"),
        (b"# HELP g \xff\n# EOF\n", 1, "help text is not valid UTF-8"),
        (b"# UNIT g_bytes seconds\n# EOF\n", 1, "not a suffix"),
        (b"# EOF \n", 1, "unknown comment"),
        // Exemplars.
        (
            b"g 1 1 # {a=\"b\"} 1\n# EOF\n",
            1,
            "cannot have an exemplar",
        ),
        (b"c_total 1 1 x\n# EOF\n", 1, "unexpected text"),
        (
            b"c_total 1 1 # {a=\"b\"}\n# EOF\n",
            1,
            "exemplar: expected a space and a value",
        ),
        (
            b"c_total 1 1 # {a=\"b\"} x\n# EOF\n",
            1,
            "exemplar: invalid value",
        ),
        (
            b"c_total 1 1 # {a=\"b\"} 1 2 3\n# EOF\n",
            1,
            "exemplar: unexpected text",
        ),
        (
            b"c_total 1 1 # {a=b} 1\n# EOF\n",
            1,
            "exemplar: the value of label \"a\"",
        ),
    ];
    for &(text, line, needle) in cases {
        assert_error(text, line, needle);
    }
}

#[test]
fn a_known_series_does_not_hide_later_errors() {
    // The second line repeats the series (fast path) but its value is broken.
    assert_error(
        b"g{a=\"1\"} 1 1\ng{a=\"1\"} x 2\n# EOF\n",
        2,
        "invalid value",
    );
    assert_error(
        b"g{a=\"1\"} 1 1\nh 1 1\ng{a=\"1\"} 2\n# EOF\n",
        3,
        "no timestamp",
    );
}

/// A text that both parsers accept: the subset of the exposition format without escapes,
/// commas or `=` in label values (prometheus-parse splits labels naively on `,` and `=`).
/// Returns (OpenMetrics text for us, Prometheus text for prometheus-parse): the same
/// samples, timestamps in seconds for us and in integer milliseconds for prometheus-parse.
fn generated_texts(seed: u64) -> (String, String) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let words = [
        "jupyter-alice",
        "jürgen",
        "日本",
        "a b",
        "x.y/z",
        "-",
        "0",
        "HUB",
        "é:ü",
    ];
    let mut ours = String::new();
    let mut theirs = String::new();
    let mut both = |line: &str| {
        ours.push_str(line);
        theirs.push_str(line);
    };
    both("# HELP demo_total A counter.\n# TYPE demo counter\n# UNIT demo_seconds seconds\n");
    let names = [
        "demo_total",
        "kube_pod_created",
        "container_cpu_usage_seconds_total",
        "up",
    ];
    let mut series = Vec::new();
    for i in 0..60 {
        let name = names[i % names.len()];
        let n_labels = rng.usize(0..5);
        let mut label_text = Vec::new();
        for l in 0..n_labels {
            let value = format!("{}{}", words[rng.usize(..words.len())], rng.u32(..100));
            label_text.push(format!("l{l}_{}=\"{value}\"", rng.u8(..3)));
        }
        label_text.push(format!("id=\"{i}\""));
        series.push(format!("{name}{{{}}}", label_text.join(",")));
    }
    series.push("bare_metric".to_owned());
    let mut t_ms: i64 = 1_699_999_000_000;
    for _ in 0..40 {
        t_ms += rng.i64(1..120_000);
        for s in &series {
            if rng.u8(..4) == 0 {
                continue;
            }
            let value = match rng.u8(..10) {
                0 => "NaN".to_owned(),
                1 => "+Inf".to_owned(),
                2 => "-Inf".to_owned(),
                3 => format!("{:e}", rng.f64() * 1e6),
                4 => format!("{}", rng.i64(-1_000_000..1_000_000)),
                _ => format!("{}", rng.f64() * 1000.0),
            };
            let exemplar = if s.contains("_total") && rng.bool() {
                " # {trace_id=\"abc\"} 1"
            } else {
                ""
            };
            ours.push_str(&format!(
                "{s} {value} {}.{:03}{exemplar}\n",
                t_ms / 1000,
                t_ms % 1000
            ));
            theirs.push_str(&format!("{s} {value} {t_ms}{exemplar}\n"));
        }
    }
    ours.push_str("# EOF\n");
    (ours, theirs)
}

fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn agrees_with_prometheus_parse() {
    for seed in 1..=5 {
        let (ours, theirs) = generated_texts(seed);
        let h = parse(&ours);

        let scrape = prometheus_parse::Scrape::parse(theirs.lines().map(|l| Ok(l.to_owned())))
            .expect("prometheus-parse reads the text");
        type Key = (String, Vec<(String, String)>);
        let mut expected: BTreeMap<Key, Vec<(i64, f64)>> = BTreeMap::new();
        for s in &scrape.samples {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("unexpected {other:?}"),
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            labels.sort();
            expected
                .entry((s.metric.clone(), labels))
                .or_default()
                .push((s.timestamp.timestamp_millis(), value));
        }
        assert_eq!(h.series().len(), expected.len(), "seed {seed}");
        assert_eq!(h.sample_count(), scrape.samples.len(), "seed {seed}");
        for s in h.series() {
            let labels: Vec<(String, String)> = s
                .labels()
                .iter()
                .filter(|&(n, _)| n != "__name__")
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            let theirs = &expected[&(s.name().to_owned(), labels)];
            assert_eq!(s.samples().len(), theirs.len(), "seed {seed} {}", s.name());
            for (&(t, v), &(their_t, their_v)) in s.samples().iter().zip(theirs) {
                // Seconds with three decimals survive `int64(seconds * 1000)` at today's epoch.
                assert_eq!(t.as_millis(), their_t, "seed {seed} {}", s.name());
                assert!(
                    same_value(v, their_v),
                    "seed {seed} {}: {v} vs {their_v}",
                    s.name()
                );
            }
        }
    }
}
