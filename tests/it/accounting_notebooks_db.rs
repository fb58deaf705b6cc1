//! `notebooks_db`: an accounting run against the real Prometheus writes the SQLite file the
//! Python tool writes, read back by peewee with the tool's `VM` model (from the
//! `.peers/peewee` venv that `.ci/install-peers` makes): same table DDL, one row per pod
//! uid, upserted by each run. The `accounting` binary writes it when `NOTEBOOKS_DB` is set,
//! leaves it alone in a dry run, and an unusable file fails the run before anything is
//! delivered.

use std::path::{Path, PathBuf};
use std::process::Command;

use egi_accounting::apel::{self, Limits};
use egi_accounting::config::Config;
use egi_accounting::job;
use egi_accounting::notebooks_db::NotebooksDb;
use egi_accounting::prometheus::PrometheusSource;
use egi_accounting::spool::WriterSink;
use egi_test_harness::Prometheus;
use egi_test_harness::synthetic::Params;
use serde_json::Value;

use crate::helpers::example_bin;
use crate::helpers::{sample_path, sample_text};

/// The Python tool's model, as its `model.py` declares the fields (types, nullability,
/// primary key), and a reader printing every row as JSON, plus the DDL peewee makes for it.
const READER: &str = r#"
import json, sys
import peewee
from peewee import CharField, DateTimeField, FloatField, IntegerField, UUIDField

db = peewee.SqliteDatabase(None)

class VM(peewee.Model):
    class Meta:
        database = db
    namespace = CharField()
    local_id = UUIDField(primary_key=True)
    machine = CharField()
    local_user_id = CharField(null=True)
    local_group_id = CharField(null=True)
    global_user_name = CharField(null=True)
    fqan = CharField(null=True)
    status = CharField(null=True)
    start_time = DateTimeField(null=True)
    end_time = DateTimeField(null=True)
    suspend_duration = FloatField(default=0, null=True)
    wall = FloatField(default=0, null=True)
    cpu_duration = FloatField(default=0, null=True)
    cpu_count = FloatField(default=0, null=True)
    network_type = CharField(null=True)
    network_inbound = FloatField(default=0, null=True)
    network_outbound = FloatField(default=0, null=True)
    memory = FloatField(default=0, null=True)
    disk = FloatField(default=0, null=True)
    storage_record = CharField(null=True)
    image_id = CharField(null=True)
    benchmark_type = CharField(null=True)
    benchmark = CharField(null=True)
    public_ip_count = IntegerField(default=0, null=True)
    flavor = CharField(null=True)

fresh, ours = sys.argv[1], sys.argv[2]
db.init(fresh)
db.create_tables([VM])
ddl = lambda: db.execute_sql("select sql from sqlite_master where name = 'vm'").fetchone()[0]
expected = ddl()
db.close()
db.init(ours)
rows = []
for vm in VM.select().order_by(VM.local_id):
    row = {}
    for name in VM._meta.sorted_field_names:
        v = getattr(vm, name)
        row[name] = v if v is None or isinstance(v, (int, float, str)) else str(v)
    row["local_id_type"] = type(vm.local_id).__name__
    row["start_time_type"] = type(vm.start_time).__name__
    rows.append(row)
print(json.dumps({"expected_ddl": expected, "ddl": ddl(), "rows": rows}))
"#;

/// The peewee venv's Python.
fn peewee_python() -> PathBuf {
    let peers = std::env::var_os("EGI_PEERS_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.peers"),
        PathBuf::from,
    );
    let python = peers.join("peewee/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run .ci/install-peers (peewee venv)",
        python.display()
    );
    python
}

/// What peewee reads from `db`: the DDL it would create, the file's, and the rows.
fn read_with_peewee(db: &Path) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("reader.py");
    std::fs::write(&script, READER).unwrap();
    let out = Command::new(peewee_python())
        .arg(&script)
        .arg(dir.path().join("fresh.db"))
        .arg(db)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "peewee reader: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reader JSON")
}

fn rows(read: &Value) -> &Vec<Value> {
    read["rows"].as_array().expect("rows")
}

fn row<'a>(read: &'a Value, machine: &str) -> &'a Value {
    rows(read)
        .iter()
        .find(|r| r["machine"] == machine)
        .unwrap_or_else(|| panic!("no row for {machine}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn accounting_writes_the_notebooks_db_that_the_python_model_reads() {
    let params = Params::sample();
    let prometheus = Prometheus::backfill(&sample_text()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("notebooks.db");
    let ini = format!(
        "[default]\nnotebooks_db={}\n[prometheus]\nurl={}\n",
        db_path.display(),
        prometheus.url()
    );
    let config = Config::from_ini_str(&ini, |_| None).unwrap();
    assert_eq!(config.notebooks_db.as_deref(), Some(db_path.as_path()));
    let source = PrometheusSource::new(config.prometheus.clone()).unwrap();
    let mut db = NotebooksDb::open(config.notebooks_db.as_ref().unwrap()).unwrap();

    // First run five hours before the end of the history, then at its end: the second
    // run upserts (updates the pods seen again, adds the new ones).
    let mut first = WriterSink::new(Vec::new(), "buffer");
    let early = params.end - 5 * 3600;
    let early_report = job::run_with_db(
        &source,
        &config.window(egi_accounting::metrics::Timestamp::from_millis(
            early * 1000,
        )),
        &config.records,
        Limits::default(),
        &mut first,
        &mut db,
    )
    .await
    .expect("first run");
    let after_first = read_with_peewee(&db_path);
    let first_rows = rows(&after_first).len();
    assert!(first_rows >= early_report.records, "{first_rows}");

    let mut sink = WriterSink::new(Vec::new(), "buffer");
    let report = job::run_with_db(
        &source,
        &config.window(egi_accounting::metrics::Timestamp::from_millis(
            params.end * 1000,
        )),
        &config.records,
        Limits::default(),
        &mut sink,
        &mut db,
    )
    .await
    .expect("second run");
    drop(db);
    let read = read_with_peewee(&db_path);

    // The very table peewee creates for the model.
    assert_eq!(read["ddl"], read["expected_ddl"]);
    // One row per pod uid, whatever the runs saw twice.
    let all = rows(&read);
    let mut ids: Vec<&str> = all
        .iter()
        .map(|r| r["local_id"].as_str().unwrap())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), all.len());
    assert!(
        all.len() >= report.records && all.len() >= first_rows,
        "{}",
        all.len()
    );

    // Each APEL record of the last run has its row, with the same figures (bytes: the
    // default units are cASO's, so compare what does not depend on them).
    let text = String::from_utf8(sink.into_inner()).unwrap();
    let records: Vec<apel::ParsedRecord> = text
        .split("\nAPEL-cloud-message: v0.4\n")
        .enumerate()
        .flat_map(|(i, m)| {
            let m = if i == 0 {
                m.to_owned()
            } else {
                format!("APEL-cloud-message: v0.4\n{m}")
            };
            apel::parse_message(&m).expect("a valid message")
        })
        .collect();
    assert_eq!(records.len(), report.records);
    for r in &records {
        let get = |k: &str| r.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let uuid = get("VMUUID").unwrap().replace('-', "");
        let db_row = all
            .iter()
            .find(|x| x["local_id"].as_str().unwrap().replace('-', "") == uuid)
            .unwrap_or_else(|| panic!("no row for {uuid}"));
        assert_eq!(db_row["local_id_type"], "UUID", "{db_row}");
        assert_eq!(db_row["start_time_type"], "datetime", "{db_row}");
        assert_eq!(
            Some(db_row["machine"].as_str().unwrap()),
            get("MachineName")
        );
        assert_eq!(Some(db_row["status"].as_str().unwrap()), get("Status"));
        assert_eq!(
            db_row["wall"].as_f64(),
            get("WallDuration").and_then(|v| v.parse().ok())
        );
        assert_eq!(db_row["fqan"].as_str(), get("FQAN"));
        assert_eq!(db_row["public_ip_count"], 0);
        assert_eq!(db_row["local_user_id"], Value::Null);
        if get("Status") == Some("started") {
            assert_eq!(db_row["end_time"], Value::Null, "{db_row}");
        }
    }
    // Raw user names and the flavor annotation, as the EOSC job reads them.
    assert_eq!(row(&read, "jupyter-alice")["flavor"], "large");
    assert_eq!(row(&read, "jupyter-zo-c3-ab")["global_user_name"], "zoë");
    assert_eq!(row(&read, "jupyter-zo-c3-ab")["flavor"], "small");
    // Memory in bytes, as the Python tool stores it, not the APEL record's MB.
    assert!(
        all.iter()
            .any(|r| r["memory"].as_f64().unwrap() > 1024.0 * 1024.0),
        "{all:#?}"
    );
}

fn run_accounting(bin: &Path, spool: &Path, db: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(bin);
    for var in [
        "VERBOSE",
        "SITENAME",
        "PROMETHEUS_URL",
        "RANGE",
        "FILTER",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--snapshot")
        .arg(sample_path())
        .args(extra)
        .env("APEL_SPOOL", spool)
        .env("NOTEBOOKS_DB", db)
        .output()
        .expect("the accounting binary runs")
}

fn spool_files(spool: &Path) -> usize {
    walk(spool)
}

fn walk(p: &Path) -> usize {
    match std::fs::read_dir(p) {
        Ok(entries) => entries
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() { walk(&path) } else { 1 }
            })
            .sum(),
        Err(_) => 0,
    }
}

#[test]
fn the_accounting_binary_writes_notebooks_db_and_fails_whole_on_a_bad_file() {
    let bin = example_bin("accounting");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");

    // A dry run prints the messages and leaves the database alone.
    let db = dir.path().join("notebooks.db");
    let out = run_accounting(&bin, &spool, &db, &["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!db.exists());

    let out = run_accounting(&bin, &spool, &db, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = read_with_peewee(&db);
    assert!(!rows(&read).is_empty());
    assert_eq!(read["ddl"], read["expected_ddl"]);
    let delivered = spool_files(&spool);
    assert!(delivered > 0);

    // Not a database: a permanent failure (1) before anything is delivered, file untouched.
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, "somebody's notes\n").unwrap();
    let out = run_accounting(&bin, &spool, &bad, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("notebooks database"));
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), "somebody's notes\n");
    assert_eq!(spool_files(&spool), delivered);
}
