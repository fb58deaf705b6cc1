use super::report::{DAY, FlavorMetrics, day_metrics, midnight, parse_date, periods, zulu};
use super::*;
use crate::notebooks_db::VmRow;

/// 2026-12-01T00:00:00Z.
const D1: i64 = 1_796_083_200;

fn row(user: &str, group: &str, flavor: Option<&str>, start: i64, end: Option<i64>) -> VmRow {
    VmRow {
        local_id: format!("{user}-{start}"),
        namespace: "hub".into(),
        machine: format!("jupyter-{user}"),
        local_group_id: Some("hub".into()),
        global_user_name: Some(user.into()),
        fqan: Some(group.into()),
        status: Some(
            if end.is_some() {
                "completed"
            } else {
                "started"
            }
            .into(),
        ),
        start_time: Some(start),
        end_time: end,
        wall: 0.0,
        cpu_duration: 0.0,
        cpu_count: 1.0,
        network_inbound: 0.0,
        network_outbound: 0.0,
        memory: 0.0,
        image_id: None,
        flavor: flavor.map(str::to_owned),
    }
}

fn flavors() -> FlavorMetrics {
    [
        ("small".to_owned(), "m-small".to_owned()),
        ("big".to_owned(), "m-big".to_owned()),
    ]
    .into_iter()
    .collect()
}

#[test]
fn dates_parse_as_the_python_tool_takes_them() {
    assert_eq!(zulu(D1), "2026-12-01T00:00:00Z");
    for text in [
        "2026-12-01",
        "2026-12-01T00:00:00Z",
        "2026-12-01 00:00:00",
        "2026-12-01T01:00:00+01:00",
        " 2026-12-01T00:00 ",
    ] {
        assert_eq!(parse_date(text).unwrap(), D1, "{text}");
    }
    assert!(matches!(parse_date("yesterday"), Err(Error::Config(_))));
    assert_eq!(midnight(D1 + 5000), D1);
}

#[test]
fn periods_are_days_from_the_last_end_to_today_and_only_days_that_are_over() {
    let now = D1 + 3 * DAY + 3600;
    let p = |start| Period {
        start,
        end: start + DAY,
    };
    // Nothing kept yet: yesterday.
    assert_eq!(periods(None, None, None, now), [p(D1 + 2 * DAY)]);
    // A day missed: both days, oldest first.
    assert_eq!(
        periods(None, None, Some(D1 + DAY), now),
        [p(D1 + DAY), p(D1 + 2 * DAY)]
    );
    // Up to date: nothing.
    assert!(periods(None, None, Some(D1 + 3 * DAY), now).is_empty());
    // --from-date wins over the timestamp file; a day not over is left for later.
    assert_eq!(
        periods(Some(D1 + 2 * DAY + 7200), Some(now + DAY), Some(D1), now),
        Vec::<Period>::new()
    );
    assert_eq!(
        periods(Some(D1), Some(D1 + 2 * DAY), None, now),
        [p(D1), p(D1 + DAY)]
    );
    // Days the timestamp file says were reported are not sent again, even asked for.
    assert_eq!(
        periods(Some(D1), Some(D1 + 3 * DAY), Some(D1 + 2 * DAY), now),
        [p(D1 + 2 * DAY)]
    );
}

#[test]
fn hours_per_user_group_and_flavor_clipped_to_the_day() {
    let day = Period {
        start: D1,
        end: D1 + DAY,
    };
    let rows = [
        // Ran 2 h inside the day.
        row(
            "alice",
            "vo.a",
            Some("small"),
            D1 + 3600,
            Some(D1 + 3 * 3600),
        ),
        // Started the day before, ended 1 h into the day: 1 h.
        row(
            "alice",
            "vo.a",
            Some("small"),
            D1 - 5 * 3600,
            Some(D1 + 3600),
        ),
        // Still running: counts to the end of the day, 6 h.
        row("alice", "vo.a", Some("big"), D1 + 18 * 3600, None),
        // Another group of the same user: its own metric, 24 h.
        row("alice", "vo.b", Some("small"), D1 - DAY, Some(D1 + 2 * DAY)),
        // Not mapped, or no flavor: not reported.
        row("bob", "vo.a", Some("huge"), D1, Some(D1 + 3600)),
        row("bob", "vo.a", None, D1, Some(D1 + 3600)),
        // Ended before or started after the day: not in it.
        row("carol", "vo.a", Some("small"), D1 - DAY, Some(D1 - 1)),
        row("carol", "vo.a", Some("small"), D1 + DAY, None),
    ];
    let (metrics, unmapped) = day_metrics(&rows, &flavors(), day);
    let got: Vec<(&str, &str, &str, f64)> = metrics
        .iter()
        .map(|m| {
            assert_eq!(m.time_period_start, "2026-12-01T00:00:00Z");
            assert_eq!(m.time_period_end, "2026-12-02T00:00:00Z");
            (
                m.user_id.as_deref().unwrap(),
                m.group_id.as_deref().unwrap(),
                m.metric_definition_id.as_str(),
                m.value,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("alice", "vo.a", "m-big", 6.0),
            ("alice", "vo.a", "m-small", 3.0),
            ("alice", "vo.b", "m-small", 24.0),
        ]
    );
    assert_eq!(unmapped.into_iter().collect::<Vec<_>>(), ["", "huge"]);
}

#[test]
fn a_metric_is_the_json_the_api_takes() {
    let (metrics, _) = day_metrics(
        &[row("alice", "vo.a", Some("small"), D1, Some(D1 + 5400))],
        &flavors(),
        Period {
            start: D1,
            end: D1 + DAY,
        },
    );
    assert_eq!(
        serde_json::to_string(&metrics[0]).unwrap(),
        r#"{"metric_definition_id":"m-small","time_period_start":"2026-12-01T00:00:00Z","time_period_end":"2026-12-02T00:00:00Z","user_id":"alice","group_id":"vo.a","value":1.5}"#
    );
}

#[test]
fn progress_advances_never_back_and_remembers_metrics_of_the_day_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let p = Progress::new(dir.path().join("ts"));
    let day = Period {
        start: D1,
        end: D1 + DAY,
    };
    assert_eq!(p.last_end().unwrap(), None);
    assert!(p.sent_in(day).unwrap().is_empty());
    let (metrics, _) = day_metrics(
        &[
            row("a", "g", Some("small"), D1, Some(D1 + 60)),
            row("b", "g", Some("small"), D1, Some(D1 + 60)),
        ],
        &flavors(),
        day,
    );
    p.mark_sent(&metrics[0].key()).unwrap();
    let sent = p.sent_in(day).unwrap();
    assert!(sent.contains(&metrics[0].key()) && !sent.contains(&metrics[1].key()));
    // Another day's record does not count.
    assert!(
        p.sent_in(Period {
            start: D1 + DAY,
            end: D1 + 2 * DAY
        })
        .unwrap()
        .is_empty()
    );
    p.advance(D1 + DAY).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ts")).unwrap(),
        "2026-12-02T00:00:00Z"
    );
    assert!(p.sent_in(day).unwrap().is_empty());
    // Never moved back (an explicit older --from-date).
    p.advance(D1).unwrap();
    assert_eq!(p.last_end().unwrap(), Some(D1 + DAY));
}

#[test]
fn a_timestamp_file_that_is_not_a_date_is_taken_as_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ts"), "garbage").unwrap();
    assert_eq!(
        Progress::new(dir.path().join("ts")).last_end().unwrap(),
        None
    );
}

#[test]
fn configuration_keys_and_environment_names_are_the_python_tools() {
    let ini = "[default]\nnotebooks_db=/accounting/notebooks.db\n\
               [eosc]\ntoken_url=https://t.example/token\nclient_id=id\nclient_secret=s\n\
               accounting_url=https://a.example\ninstallation_id=inst\ntimeout=5\n\
               timestamp_file=/accounting/eosc-timestamp\n\
               [eosc.flavors]\nsmall-environment-2-vcpu-4-gb-ram=668bdd5988e1d617b217ecb9\n";
    let c = EoscConfig::from_ini_str(ini, |_| None).unwrap();
    assert_eq!(
        c.notebooks_db,
        std::path::Path::new("/accounting/notebooks.db")
    );
    assert_eq!(c.token_url, "https://t.example/token");
    assert_eq!(c.installation_id, "inst");
    assert_eq!(c.timeout, std::time::Duration::from_secs(5));
    assert_eq!(
        c.scopes,
        ["openid", "email", "profile", "voperson_id", "entitlements"]
    );
    assert_eq!(
        c.flavors
            .get("small-environment-2-vcpu-4-gb-ram")
            .map(String::as_str),
        Some("668bdd5988e1d617b217ecb9")
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    c.check_for_sending().unwrap();
    let env = |k: &str| match k {
        "NOTEBOOKS_DB" => Some("/other.db".to_owned()),
        "TOKEN_URL" => Some("http://127.0.0.1:1/token".to_owned()),
        "CLIENT_ID" => Some("env-id".to_owned()),
        "ACCOUNTING_URL" => Some("http://127.0.0.1:2".to_owned()),
        "TIMESTAMP_FILE" => Some(String::new()),
        _ => None,
    };
    let c = EoscConfig::from_ini_str(ini, env).unwrap();
    assert_eq!(c.notebooks_db, std::path::Path::new("/other.db"));
    assert_eq!(c.token_url, "http://127.0.0.1:1/token");
    assert_eq!(c.client_id, "env-id");
    assert_eq!(c.accounting_url.as_str(), "http://127.0.0.1:2/");
    assert_eq!(c.timestamp_file, None);
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn bad_configuration_is_refused_with_the_key() {
    let base = "[default]\nnotebooks_db=/n.db\n";
    for (extra, needle) in [
        ("[eosc]\ntimeout=soon\n", "timeout"),
        ("[eosc]\naccounting_url=ftp://x\n", "accounting_url"),
        ("[eosc.flavors]\nsmall=\n", "small"),
    ] {
        let e = EoscConfig::from_ini_str(&format!("{base}{extra}"), |_| None).unwrap_err();
        assert!(e.to_string().contains(needle), "{extra}: {e}");
    }
    let e = EoscConfig::from_ini_str("", |_| None).unwrap_err();
    assert!(e.to_string().contains("notebooks_db"), "{e}");
    let c = EoscConfig::from_ini_str(base, |_| None).unwrap();
    assert!(c.check_for_sending().is_err());
    assert_eq!(
        c.timestamp_file.as_deref(),
        Some(std::path::Path::new("eosc-accounting.timestamp"))
    );
}

#[test]
fn only_failures_a_retry_can_fix_are_transient() {
    let rejected = |status| Error::Rejected {
        status,
        message: String::new(),
    };
    assert!(rejected(500).is_transient());
    assert!(rejected(503).is_transient());
    assert!(rejected(429).is_transient());
    assert!(!rejected(401).is_transient());
    assert!(!rejected(422).is_transient());
    assert!(Error::Timeout(std::time::Duration::from_secs(1)).is_transient());
    assert!(!Error::Config("x".into()).is_transient());
}
