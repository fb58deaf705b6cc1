//! The streaming response parser over in-memory bodies: shapes, values, errors.

use crate::error::{Error, Result};
use crate::metrics::Timestamp;
use crate::prometheus::response::{RangeSummary, parse_matrix, parse_sample_value, parse_vector};

/// The labels kept from one series.
type Pairs = Vec<(String, String)>;

fn vector(json: &str, wanted: &[&str]) -> Result<Vec<(Pairs, f64)>> {
    let mut out = Vec::new();
    parse_vector(json.as_bytes(), &|n| wanted.contains(&n), &mut |l, v| {
        out.push((l.into_pairs().collect(), v))
    })?;
    Ok(out)
}

fn matrix(json: &str) -> Result<Vec<(Pairs, RangeSummary)>> {
    let mut out = Vec::new();
    parse_matrix(json.as_bytes(), &|n| n == "uid", &mut |l, r| {
        out.push((l.into_pairs().collect(), r))
    })?;
    Ok(out)
}

fn pair(n: &str, v: &str) -> (String, String) {
    (n.to_owned(), v.to_owned())
}

#[test]
fn vector_keeps_only_wanted_labels_and_parses_special_values() {
    let json = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"__name__":"x","uid":"a","pod":"p"},"value":[1700000000.5,"1"]},
        {"metric":{"uid":"b"},"value":[1700000000,"NaN"]},
        {"metric":{"uid":"c"},"value":[1700000000,"+Inf"]},
        {"metric":{"uid":"d"},"value":[1700000000,"-Inf"]},
        {"value":[1700000000,"1.5e3"],"metric":{"uid":"e"}}
    ]},"warnings":["something"]}"#;
    let got = vector(json, &["uid"]).unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0], (vec![pair("uid", "a")], 1.0));
    assert!(got[1].1.is_nan());
    assert_eq!(got[2].1, f64::INFINITY);
    assert_eq!(got[3].1, f64::NEG_INFINITY);
    assert_eq!(got[4], (vec![pair("uid", "e")], 1500.0));
}

#[test]
fn empty_and_null_results_are_empty() {
    let json = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    assert!(vector(json, &[]).unwrap().is_empty());
    let json = r#"{"status":"success","data":{"resultType":"vector","result":null}}"#;
    assert!(vector(json, &[]).unwrap().is_empty());
}

#[test]
fn matrix_is_reduced_to_last_one_and_count() {
    let json = r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"uid":"a","phase":"Running"},"values":[[100,"1"],[130,"0"],[160,"1"],[190,"NaN"],[220,"0"]]},
        {"metric":{"uid":"b"},"values":[[100,"0"],[130.25,"0"]]},
        {"metric":{"uid":"c"},"values":[]}
    ]}}"#;
    let got = matrix(json).unwrap();
    assert_eq!(
        got,
        vec![
            (
                vec![pair("uid", "a")],
                RangeSummary {
                    last_one: Some(Timestamp::from_millis(160_000)),
                    ones: 2
                }
            ),
            (vec![pair("uid", "b")], RangeSummary::default()),
            (vec![pair("uid", "c")], RangeSummary::default()),
        ]
    );
}

#[test]
fn result_type_is_checked_in_any_key_order() {
    let vec_json = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    let err = matrix(vec_json).unwrap_err();
    assert!(
        matches!(&err, Error::MalformedResponse(m) if m.contains("\"vector\" where \"matrix\"")),
        "{err}"
    );
    // resultType after an empty result: caught at the end.
    let late = r#"{"data":{"result":[],"resultType":"matrix"},"status":"success"}"#;
    assert!(matches!(
        vector(late, &[]),
        Err(Error::MalformedResponse(_))
    ));
    // A scalar result is refused before its value is read as series.
    let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#;
    let err = vector(scalar, &[]).unwrap_err();
    assert!(
        matches!(&err, Error::MalformedResponse(m) if m.contains("\"scalar\"")),
        "{err}"
    );
    // A matrix series in a vector answer.
    let shape = r#"{"status":"success","data":{"result":[{"metric":{},"values":[]}],"resultType":"vector"}}"#;
    let err = vector(shape, &[]).unwrap_err();
    assert!(
        matches!(&err, Error::MalformedResponse(m) if m.contains("\"values\"")),
        "{err}"
    );
}

#[test]
fn status_error_becomes_a_query_error() {
    let json = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
    let err = vector(json, &[]).unwrap_err();
    assert!(err.is_transient());
    match err {
        Error::Query {
            error_type,
            message,
        } => {
            assert_eq!(error_type, "timeout");
            assert_eq!(message, "query timed out in expression evaluation");
        }
        other => panic!("unexpected {other:?}"),
    }
    let json = r#"{"status":"error","data":null,"errorType":"bad_data","error":"parse error"}"#;
    let err = matrix(json).unwrap_err();
    assert!(matches!(&err, Error::Query { error_type, .. } if error_type == "bad_data"));
    assert!(!err.is_transient());
}

#[test]
fn malformed_and_truncated_bodies_are_reported_briefly() {
    let cases = [
        ("", "truncated body"),
        ("<html>proxy error</html>", "invalid JSON"),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"uid":"a"},"val"#,
            "truncated body",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[]}} trailing"#,
            "invalid JSON",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"one"]}]}}"#,
            "sample value \"one\"",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1]}]}}"#,
            "invalid length",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#,
            "without \"value\"",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"uid":7},"value":[1,"1"]}]}}"#,
            "invalid type",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1e300,"1"]}]}}"#,
            "out of range",
        ),
        (r#"{"status":"success"}"#, "no \"data\""),
        (r#"{"status":"weird"}"#, "unknown status"),
        (
            r#"{"data":{"resultType":"vector","result":[]}}"#,
            "no \"status\"",
        ),
        (
            r#"{"status":"success","data":{"resultType":"vector"}}"#,
            "no \"result\"",
        ),
        (r#"[1,2]"#, "invalid type"),
    ];
    for (json, needle) in cases {
        match vector(json, &["uid"]) {
            Err(Error::MalformedResponse(m)) => {
                assert!(m.contains(needle), "{json:?}: {m:?} lacks {needle:?}");
                assert!(m.len() < 300, "{m}");
            }
            other => panic!("{json:?}: unexpected {other:?}"),
        }
    }
}

#[test]
fn long_bad_values_are_quoted_briefly() {
    let long = "x".repeat(10_000);
    let json = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{long}"]}}]}}}}"#
    );
    let err = vector(&json, &[]).unwrap_err().to_string();
    assert!(err.contains("...") && err.len() < 300, "{err}");
}

#[test]
fn sample_values_follow_prometheus_formatting() {
    assert_eq!(parse_sample_value("1"), Some(1.0));
    assert_eq!(parse_sample_value("1.5e+03"), Some(1500.0));
    assert_eq!(parse_sample_value("-0.25"), Some(-0.25));
    assert_eq!(parse_sample_value("+Inf"), Some(f64::INFINITY));
    assert_eq!(parse_sample_value("-Inf"), Some(f64::NEG_INFINITY));
    assert!(parse_sample_value("NaN").is_some_and(f64::is_nan));
    assert_eq!(parse_sample_value(""), None);
    assert_eq!(parse_sample_value("1,5"), None);
}

#[test]
fn labels_take_treats_empty_as_absent() {
    let json = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"uid":"","pod":"p","other":"o"},"value":[1,"1"]}]}}"#;
    let mut taken = Vec::new();
    parse_vector(json.as_bytes(), &|n| n != "other", &mut |mut l, _| {
        taken.push((l.take("uid"), l.take("pod"), l.take("pod"), l.take("other")));
    })
    .unwrap();
    assert_eq!(taken, vec![(None, Some("p".to_owned()), None, None)]);
}
