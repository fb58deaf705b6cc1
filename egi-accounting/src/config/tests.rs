use std::collections::HashMap;

use secrecy::ExposeSecret;

use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

const PYTHON_STYLE: &str = "\
[default]
verbose=1
site=MY-SITE
cloud_compute_service=notebooks.example.org
fqan_key=primary_group
apel_spool=/var/spool/apel/outgoing
default_cpu_count=1

[VO]
vo.notebooks.egi.eu=urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu,notebooks
vo.access.egi.eu=access

[prometheus]
url=https://prometheus.example.org/prom/
user=reader
password=p#ss;word
verify=1
filter=pod=~'jupyter-.*',namespace='hub'
range=4h
";

#[test]
fn the_python_tools_file_means_the_same() {
    let c = Config::from_ini_str(PYTHON_STYLE, env(&[])).unwrap();
    assert!(c.verbose);
    assert_eq!(c.records.site, "MY-SITE");
    assert_eq!(c.records.cloud_type, "EGI Notebooks");
    assert_eq!(
        c.records.cloud_compute_service.as_deref(),
        Some("notebooks.example.org")
    );
    assert_eq!(c.records.default_cpu_count, Some(1.0));
    assert_eq!(
        c.records.vo_map.resolve("notebooks").as_deref(),
        Some("vo.notebooks.egi.eu")
    );
    assert_eq!(
        c.records.vo_map.resolve("access").as_deref(),
        Some("vo.access.egi.eu")
    );
    assert_eq!(
        c.spool.as_deref(),
        Some(Path::new("/var/spool/apel/outgoing"))
    );
    assert_eq!(
        c.prometheus.url.as_str(),
        "https://prometheus.example.org/prom/"
    );
    match &c.prometheus.auth {
        Auth::Basic { user, password } => {
            assert_eq!(user, "reader");
            assert_eq!(password.expose_secret(), "p#ss;word");
        }
        other => panic!("{other:?}"),
    }
    assert!(c.prometheus.verify_tls);
    assert_eq!(c.filter.as_str(), "pod=~'jupyter-.*',namespace='hub'");
    assert_eq!(c.range.as_str(), "4h");
    assert_eq!(c.records.units, Units::Caso);
    assert_eq!(c.limits.max_records.get(), 100);
    assert!(
        !format!("{c:?}").contains("p#ss;word"),
        "Debug must redact the password"
    );
}

#[test]
fn environment_overrides_the_file() {
    let c = Config::from_ini_str(
        PYTHON_STYLE,
        env(&[
            ("SITENAME", "ENV-SITE"),
            ("PROMETHEUS_URL", "http://127.0.0.1:9090"),
            ("RANGE", "2h"),
            ("FILTER", "pod=~'nb-.*'"),
            ("SSL_VERIFY", "0"),
            ("APEL_SPOOL", "/tmp/spool"),
            ("VERBOSE", "0"),
            ("UNITS", "bytes"),
            ("MAX_RECORDS", "10"),
        ]),
    )
    .unwrap();
    assert_eq!(c.records.site, "ENV-SITE");
    assert_eq!(c.prometheus.url.as_str(), "http://127.0.0.1:9090/");
    assert_eq!(c.range.as_str(), "2h");
    assert_eq!(c.filter.as_str(), "pod=~'nb-.*'");
    assert!(!c.prometheus.verify_tls);
    assert!(!c.verbose);
    assert_eq!(c.spool.as_deref(), Some(Path::new("/tmp/spool")));
    assert_eq!(c.records.units, Units::Bytes);
    assert_eq!(c.limits.max_records.get(), 10);
}

#[test]
fn defaults_verify_tls_and_send_no_credentials() {
    let c = Config::from_ini_str("", env(&[])).unwrap();
    assert_eq!(c.records.site, "EGI-NOTEBOOKS");
    assert_eq!(c.prometheus.url.as_str(), "http://localhost:8080/");
    assert!(c.prometheus.verify_tls);
    assert!(matches!(c.prometheus.auth, Auth::None));
    assert_eq!(c.filter.as_str(), Filter::DEFAULT);
    assert_eq!(c.range.as_str(), "24h");
    assert_eq!(c.spool, None);
    assert_eq!(c.records.default_cpu_count, None);
    let w = c.window(Timestamp::from_millis(5));
    assert_eq!(w.at, Timestamp::from_millis(5));
}

#[test]
fn bearer_token_from_environment() {
    let c = Config::from_ini_str("", env(&[("PROMETHEUS_TOKEN", "tok")])).unwrap();
    assert!(matches!(&c.prometheus.auth, Auth::Bearer(t) if t.expose_secret() == "tok"));
    assert!(!format!("{c:?}").contains("tok"));
}

#[test]
fn bad_values_are_named() {
    for (text, vars, needle) in [
        ("[default]\nfqan_key=vo\n", vec![], "fqan_key"),
        (
            "[default]\ndefault_cpu_count=many\n",
            vec![],
            "default_cpu_count",
        ),
        (
            "[default]\ndefault_cpu_count=-1\n",
            vec![],
            "default_cpu_count",
        ),
        ("[prometheus]\nrange=1x\n", vec![], "range"),
        ("[prometheus]\nurl=ftp://x\n", vec![], "url"),
        ("[prometheus]\nverify=maybe\n", vec![], "verify"),
        ("[prometheus]\nuser=a\ntoken=b\n", vec![], "not both"),
        ("[prometheus]\ntimeout=0\n", vec![], "timeout"),
        ("", vec![("SITENAME", " ")], "site"),
        ("", vec![("MAX_RECORDS", "0")], "max_records"),
        ("", vec![("UNITS", "kb")], "units"),
        ("", vec![("SITENAME", "Zürich")], "site"),
        ("", vec![("SERVICE", "a\tb")], "cloud_compute_service"),
        ("", vec![("SSL_VERIFY", "/nonexistent/ca.pem")], "verify"),
    ] {
        let e = Config::from_ini_str(text, env(&vars))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn a_missing_file_falls_back_to_the_environment_with_a_warning() {
    let path = Path::new("/nonexistent/config.ini");
    let c = Config::load(Some(path), env(&[("SITENAME", "FROM-ENV")])).unwrap();
    assert_eq!(c.records.site, "FROM-ENV");
    assert_eq!(
        c.warnings,
        [Warning::MissingFile {
            path: path.to_owned()
        }]
    );
    assert!(
        c.warnings[0]
            .to_string()
            .contains("/nonexistent/config.ini")
    );
}

#[test]
fn an_unreadable_file_is_still_an_error_naming_it() {
    // A directory exists but cannot be read as a file: not the Python "missing" case.
    let dir = tempfile::tempdir().unwrap();
    let e = Config::load(Some(dir.path()), env(&[])).unwrap_err();
    assert!(matches!(e, Error::ConfigFile { .. }), "{e:?}");
    assert!(e.to_string().contains(&dir.path().display().to_string()));
}

#[test]
fn a_vo_value_listed_twice_goes_to_the_later_line_with_a_warning() {
    // File order, not name order: "vo.z" comes first, so "vo.a" (later) wins.
    let c = Config::from_ini_str("[VO]\nvo.z = g1, g2\nvo.a = g2\n", env(&[])).unwrap();
    assert_eq!(c.records.vo_map.resolve("g2").as_deref(), Some("vo.a"));
    assert_eq!(c.records.vo_map.resolve("g1").as_deref(), Some("vo.z"));
    assert_eq!(
        c.warnings,
        [Warning::VoValueTwice {
            value: "g2".into(),
            dropped: "vo.z".into(),
            kept: "vo.a".into()
        }]
    );
}

#[test]
fn loading_returns_warnings_instead_of_logging_them() {
    let c = Config::from_ini_str(
        "[default]\nverbose=2\nnotebok_db=/x\n[prometheus]\npassword=p\nverfy=0\n\
         [eosc]\ntoken_url=https://x\n[VO]\nvo.a=x\n",
        env(&[]),
    )
    .unwrap();
    let texts: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        c.warnings,
        [
            Warning::UnknownKey {
                section: "default".into(),
                key: "notebok_db".into()
            },
            Warning::UnknownKey {
                section: "prometheus".into(),
                key: "verfy".into()
            },
            Warning::VerboseNotBoolean { value: "2".into() },
            Warning::PasswordWithoutUser,
        ],
        "{texts:?}"
    );
    assert_eq!(texts[1], "[prometheus] verfy: unknown key, ignored");
    let clean = Config::from_ini_str(PYTHON_STYLE, env(&[])).unwrap();
    assert!(clean.warnings.is_empty(), "{:?}", clean.warnings);
}

#[test]
fn python_leniency_where_it_is_safe() {
    let c = Config::from_ini_str("[default]\nverbose=2\n", env(&[])).unwrap();
    assert!(
        !c.verbose,
        "verbose other than a true value is false, as in Python"
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").unwrap();
    let c = Config::from_ini_str("", env(&[("SSL_VERIFY", ca.to_str().unwrap())])).unwrap();
    assert!(c.prometheus.verify_tls);
    assert_eq!(c.prometheus.ca_cert.as_deref(), Some(ca.as_path()));
}
