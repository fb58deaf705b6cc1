//! Expected values were printed by papermill 2.7's own `PythonTranslator.translate` and
//! `cli._resolve_type` on the same inputs.

use super::*;

fn cli(value: &str) -> String {
    ParamValue::from_cli(value).to_python()
}

#[test]
fn hostile_strings_are_escaped_as_papermill_does() {
    for (input, expected) in [
        ("quo\"te", r#""quo\"te""#),
        ("it's", r#""it's""#),
        ("back\\slash", r#""back\\slash""#),
        ("new\nline\ttab\r", r#""new\nline\ttab\r""#),
        ("é ✓ 😀", r#""\xe9 \u2713 \U0001f600""#),
        ("\u{0}\u{1f}\u{7f}\u{80}", r#""\x00\x1f\x7f\x80""#),
        ("", r#""""#),
        ("{}", r#""{}""#),
        ("'''", r#""'''""#),
        ("\"\"\"\nimport os", r#""\"\"\"\nimport os""#),
    ] {
        assert_eq!(ParamValue::raw(input).to_python(), expected, "{input:?}");
    }
}

#[test]
fn floats_are_written_as_python_repr() {
    for (value, expected) in [
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (0.0001, "0.0001"),
        (1e-5, "1e-05"),
        (123.456, "123.456"),
        (-0.0, "-0.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1.5e300, "1.5e+300"),
        (5e-324, "5e-324"),
        (2f64.powi(70), "1.1805916207174113e+21"),
        (f64::NAN, "float('nan')"),
        (f64::NEG_INFINITY, "float('-inf')"),
        (f64::INFINITY, "float('inf')"),
        (3.0, "3.0"),
    ] {
        assert_eq!(ParamValue::Float(value).to_python(), expected, "{value:?}");
    }
}

#[test]
fn cli_values_are_typed_as_papermill_resolves_them() {
    for (input, expected) in [
        ("True", "True"),
        ("False", "False"),
        ("None", "None"),
        ("true", r#""true""#),
        ("1_000", "1000"),
        ("+0", "0"),
        ("-0", "0"),
        (" 42 ", "42"),
        ("007", "7"),
        ("0x10", r#""0x10""#),
        ("1e5", "100000.0"),
        ("1_0.5", "10.5"),
        (".5", "0.5"),
        ("5.", "5.0"),
        ("-inf", "float('-inf')"),
        ("Infinity", "float('inf')"),
        ("nan", "float('nan')"),
        ("1__0", r#""1__0""#),
        ("_1", r#""_1""#),
        ("1.2.3", r#""1.2.3""#),
        ("12345678901234567890123", "12345678901234567890123"),
        ("-12345678901234567890123", "-12345678901234567890123"),
        ("1e", r#""1e""#),
        ("e5", r#""e5""#),
        (".", r#"".""#),
        ("1_e5", r#""1_e5""#),
    ] {
        assert_eq!(cli(input), expected, "{input:?}");
    }
}

#[test]
fn names_must_be_python_identifiers() {
    for good in [
        "x", "_", "_private", "alpha2", "données", "match", "type", "ñ",
    ] {
        assert!(ParamName::parse(good).is_ok(), "{good}");
    }
    for (bad, reason) in [
        ("", NameProblem::NotAnIdentifier),
        ("a b", NameProblem::NotAnIdentifier),
        ("2x", NameProblem::NotAnIdentifier),
        ("x-y", NameProblem::NotAnIdentifier),
        ("x\n", NameProblem::NotAnIdentifier),
        ("x=1;import os;y", NameProblem::NotAnIdentifier),
        ("✓", NameProblem::NotAnIdentifier),
        ("class", NameProblem::Keyword),
        ("None", NameProblem::Keyword),
    ] {
        let err = ParamName::parse(bad).unwrap_err();
        assert_eq!(
            err,
            ParameterError::Name {
                name: bad.to_owned(),
                reason
            },
            "{bad:?}"
        );
    }
    let err = Parameters::new().set_cli("a b", "1").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"parameter name "a b" is not a Python identifier"#
    );
    assert_eq!(
        Parameters::new()
            .set_raw("def", "1")
            .unwrap_err()
            .to_string(),
        r#"parameter name "def" is a Python keyword"#
    );
}

#[test]
fn codify_matches_papermill_and_later_sources_replace_in_place() {
    let mut params = Parameters::from_yaml(
        "p.yaml",
        "a: 1\nb: [1, x, null, true, 2.5, {k: []}]\nc: {1: one, z: {n: ~}}\n",
    )
    .unwrap();
    assert_eq!(
        params.to_python(),
        "# Parameters\na = 1\nb = [1, \"x\", None, True, 2.5, {\"k\": []}]\n\
         c = {\"1\": \"one\", \"z\": {\"n\": None}}\n"
    );
    params.set_cli("a", "2.5").unwrap();
    params.set_raw("d", "2.5").unwrap();
    params.set_raw("b", "x").unwrap();
    assert_eq!(
        params.to_python(),
        "# Parameters\na = 2.5\nb = \"x\"\nc = {\"1\": \"one\", \"z\": {\"n\": None}}\nd = \"2.5\"\n"
    );
    assert_eq!(
        params.to_json(),
        serde_json::json!({"a": 2.5, "b": "x", "c": {"1": "one", "z": {"n": null}}, "d": "2.5"})
    );
    assert_eq!(Parameters::new().to_python(), "# Parameters\n");
}

#[test]
fn json_documents_keep_their_order_and_types() {
    let params = Parameters::from_yaml(
        "p.json",
        r#"{"z": 1.0, "a": "s", "m": {"y": 1, "b": [false]}}"#,
    )
    .unwrap();
    assert_eq!(
        params.to_python(),
        "# Parameters\nz = 1.0\na = \"s\"\nm = {\"y\": 1, \"b\": [False]}\n"
    );
}

#[test]
fn bad_documents_are_typed_errors() {
    assert!(Parameters::from_yaml("empty", "").unwrap().is_empty());
    assert!(Parameters::from_yaml("null", "null").unwrap().is_empty());
    assert_eq!(
        Parameters::from_yaml("list.yaml", "[1, 2]").unwrap_err(),
        ParameterError::NotAMapping {
            origin: "list.yaml".into()
        }
    );
    assert!(matches!(
        Parameters::from_yaml("broken.json", "{\"a\": ").unwrap_err(),
        ParameterError::Document { origin, .. } if origin == "broken.json"
    ));
    assert_eq!(
        Parameters::from_yaml("k.yaml", "1: x").unwrap_err(),
        ParameterError::Name {
            name: "1".into(),
            reason: NameProblem::NotAnIdentifier
        }
    );
    assert_eq!(
        Parameters::from_yaml("k.yaml", "\"a b\": x").unwrap_err(),
        ParameterError::Name {
            name: "a b".into(),
            reason: NameProblem::NotAnIdentifier
        }
    );
    assert_eq!(
        Parameters::from_yaml("t.yaml", "blob: !thing x")
            .unwrap_err()
            .to_string(),
        "parameter blob: unsupported value !thing"
    );
    // A failed merge adds nothing.
    let mut params = Parameters::new();
    params.set_cli("keep", "1").unwrap();
    let before = params.clone();
    assert!(
        params
            .merge_yaml("bad.yaml", "ok: 1\n\"no good\": 2")
            .is_err()
    );
    assert_eq!(params, before);
}
