use super::*;
use crate::error::Error;
use crate::metrics::{Annotations, ByPod, ByUid, PodAnnotations, PodCreated, PodKey, PodUid};
use crate::metrics::{RunningSamples, Usage};

const T0: i64 = 1_700_000_000;
const UID: &str = "3F2A1B4C-1111-2222-3333-444455556666";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_millis(secs * 1000)
}

/// One pod with every answer; `cpu` is its CPU request.
fn joiner(user: &str, flavor: Option<&str>, cpu: f64, last_running: Option<i64>) -> Joiner {
    let mut j = Joiner::new();
    let uid = PodUid(UID.into());
    let key = PodKey {
        namespace: "hub".into(),
        pod: "jupyter-a".into(),
    };
    j.add_pod(&PodCreated {
        uid: uid.clone(),
        key: key.clone(),
        created: T0 as f64,
    });
    j.add_running(&RunningSamples {
        uid: uid.clone(),
        last_running: last_running.map(at),
        running_count: u64::from(last_running.is_some()),
    });
    let mut a = Annotations::new();
    a.insert("hub_jupyter_org_username".into(), user.into());
    a.insert("egi_eu_primary_group".into(), "vo.example".into());
    if let Some(f) = flavor {
        a.insert("egi_eu_flavor".into(), f.into());
    }
    j.add_annotations(&PodAnnotations {
        uid: uid.clone(),
        annotations: a,
    });
    j.add_image(&ByUid {
        uid: uid.clone(),
        value: "img:1".into(),
    });
    if cpu > 0.0 {
        j.add_cpu_request(&ByUid { uid, value: cpu });
    }
    let usage = |value| ByPod {
        key: key.clone(),
        uid: None,
        value,
    };
    j.add_usage(Usage::CpuSeconds, &usage(100.4));
    j.add_usage(Usage::PeakMemoryBytes, &usage(300.0 * 1024.0 * 1024.0));
    j.add_usage(Usage::NetworkReceivedBytes, &usage(5e9));
    j.add_usage(Usage::NetworkTransmittedBytes, &usage(1024.0));
    j
}

#[test]
fn a_row_holds_bytes_raw_names_and_the_flavor() {
    let j = joiner("jürgen", Some("small"), 0.5, Some(T0 + 3600));
    let rows = rows(&j, &RecordConfig::default(), at(T0 + 7200));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.local_id, "3f2a1b4c111122223333444455556666");
    assert_eq!(
        (r.namespace.as_str(), r.machine.as_str()),
        ("hub", "jupyter-a")
    );
    // Not APEL-encoded, unlike the record's GlobalUserName.
    assert_eq!(r.global_user_name.as_deref(), Some("jürgen"));
    assert_eq!(r.flavor.as_deref(), Some("small"));
    assert_eq!(r.fqan.as_deref(), Some("vo.example"));
    assert_eq!(r.status.as_deref(), Some("completed"));
    assert_eq!((r.start_time, r.end_time), (Some(T0), Some(T0 + 3600)));
    assert_eq!(r.wall, 3600.0);
    assert_eq!(r.cpu_duration, 100.0);
    assert_eq!(r.cpu_count, 0.5);
    // Bytes, whatever units the APEL records use.
    assert_eq!(r.memory, 300.0 * 1024.0 * 1024.0);
    assert_eq!(r.network_inbound, 5e9);
    assert_eq!(r.image_id.as_deref(), Some("img:1"));
}

#[test]
fn a_pod_without_cpu_request_still_gets_a_row_with_zero_cores() {
    let j = joiner("a", None, 0.0, Some(T0 + 60));
    // APEL skips it (no default CPU count), the database keeps it, as the Python tool does.
    let rows = rows(&j, &RecordConfig::default(), at(T0 + 60));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].cpu_count, 0.0);
    assert_eq!(rows[0].status.as_deref(), Some("started"));
    assert_eq!(rows[0].end_time, None);
    assert_eq!(rows[0].flavor, None);
    let config = RecordConfig {
        default_cpu_count: Some(2.0),
        ..RecordConfig::default()
    };
    assert_eq!(super::rows(&j, &config, at(T0 + 60))[0].cpu_count, 0.0);
}

#[test]
fn uids_are_stored_as_peewee_stores_uuids() {
    assert_eq!(stored_uid(UID), "3f2a1b4c111122223333444455556666");
    assert_eq!(
        stored_uid("3f2a1b4c111122223333444455556666"),
        "3f2a1b4c111122223333444455556666"
    );
    for other in [
        "uid-1",
        "3f2a1b4c-1111-2222-3333-44445555666z",
        "a-b-c-d-e",
        "",
    ] {
        assert_eq!(stored_uid(other), other);
    }
}

#[test]
fn times_round_trip_as_peewee_text() {
    assert_eq!(format_time(T0).as_deref(), Some("2023-11-14 22:13:20"));
    assert_eq!(parse_time("2023-11-14 22:13:20"), Some(T0));
    assert_eq!(parse_time("2023-11-14 22:13:20.123456"), Some(T0));
    assert_eq!(
        parse_time("2023-11-14"),
        Some(T0 - (22 * 3600 + 13 * 60 + 20))
    );
    assert_eq!(parse_time("yesterday"), None);
}

fn row(id: &str, start: i64, end: Option<i64>) -> VmRow {
    let j = joiner("u", Some("small"), 1.0, Some(T0 + 10));
    let mut r = rows(&j, &RecordConfig::default(), at(T0 + 1000)).remove(0);
    r.local_id = id.into();
    r.start_time = Some(start);
    r.end_time = end;
    r
}

#[test]
fn upserts_replace_rows_by_uid_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notebooks.db");
    let mut db = NotebooksDb::open(&path).unwrap();
    let first = row("a", T0, None);
    assert_eq!(db.upsert(std::slice::from_ref(&first)).unwrap(), 1);
    assert_eq!(db.get("a").unwrap().as_ref(), Some(&first));
    let mut second = row("a", T0, Some(T0 + 50));
    second.status = Some("completed".into());
    db.upsert(&[second.clone(), row("b", T0, None)]).unwrap();
    drop(db);
    // Reopened: the table is kept, one row per uid.
    let db = NotebooksDb::open(&path).unwrap();
    assert_eq!(db.get("a").unwrap(), Some(second));
    assert!(db.get("b").unwrap().is_some());
    assert!(db.get("c").unwrap().is_none());
}

#[test]
fn overlapping_finds_pods_that_may_have_run_in_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = NotebooksDb::open(dir.path().join("n.db")).unwrap();
    let day = 86_400;
    db.upsert(&[
        row("ended-before", T0 - 2 * day, Some(T0 - 1)),
        row("ended-inside", T0 - day, Some(T0 + 10)),
        row("running", T0 - day, None),
        row("inside", T0 + 5, Some(T0 + 50)),
        row("starts-after", T0 + day, None),
    ])
    .unwrap();
    let ids: Vec<String> = db
        .overlapping(T0, T0 + day)
        .unwrap()
        .into_iter()
        .map(|r| r.local_id)
        .collect();
    assert_eq!(ids, ["ended-inside", "inside", "running"]);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notebooks.db");
    std::fs::write(&path, b"not a database, but somebody's data\n").unwrap();
    let e = NotebooksDb::open(&path).unwrap_err();
    assert!(matches!(e, Error::Database { .. }), "{e}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"not a database, but somebody's data\n"
    );
}

#[test]
fn a_vm_table_missing_columns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notebooks.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(r#"CREATE TABLE "vm" ("local_id" TEXT NOT NULL PRIMARY KEY)"#)
        .unwrap();
    let e = NotebooksDb::open(&path).unwrap_err();
    assert!(e.to_string().starts_with("unexpected vm table"), "{e}");
}

#[test]
fn a_failed_upsert_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notebooks.db");
    let mut db = NotebooksDb::open(&path).unwrap();
    // A trigger refusing the second row: the first must not stay either.
    db.conn
        .execute_batch(
            r#"CREATE TRIGGER no_b BEFORE INSERT ON "vm" WHEN NEW."local_id" = 'b'
               BEGIN SELECT RAISE(ABORT, 'refused'); END"#,
        )
        .unwrap();
    let e = db
        .upsert(&[row("a", T0, None), row("b", T0, None)])
        .unwrap_err();
    assert!(matches!(e, Error::Database { .. }), "{e}");
    assert!(db.get("a").unwrap().is_none());
}
