//! [`NotebooksDb`]: the SQLite file (IO only; rows are built in the parent module).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{SCHEMA, VmRow, format_time, parse_time};
use crate::error::{Error, Result};

/// How long a write waits for another writer (a concurrent EOSC job reading) to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Every column a row sets, in [`SCHEMA`] order; the constant ones are written as the Python
/// tool's model defaults them (0 or NULL).
const UPSERT: &str = concat!(
    r#"INSERT INTO "vm" ("local_id", "namespace", "machine", "local_user_id", "local_group_id", "#,
    r#""global_user_name", "fqan", "status", "start_time", "end_time", "suspend_duration", "#,
    r#""wall", "cpu_duration", "cpu_count", "network_type", "network_inbound", "#,
    r#""network_outbound", "memory", "disk", "storage_record", "image_id", "benchmark_type", "#,
    r#""benchmark", "public_ip_count", "flavor") "#,
    "VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?11, ?12, NULL, ?13, ?14, ?15, 0, ",
    "NULL, ?16, NULL, NULL, 0, ?17) ",
    r#"ON CONFLICT ("local_id") DO UPDATE SET "namespace" = excluded."namespace", "#,
    r#""machine" = excluded."machine", "local_user_id" = excluded."local_user_id", "#,
    r#""local_group_id" = excluded."local_group_id", "#,
    r#""global_user_name" = excluded."global_user_name", "fqan" = excluded."fqan", "#,
    r#""status" = excluded."status", "start_time" = excluded."start_time", "#,
    r#""end_time" = excluded."end_time", "suspend_duration" = excluded."suspend_duration", "#,
    r#""wall" = excluded."wall", "cpu_duration" = excluded."cpu_duration", "#,
    r#""cpu_count" = excluded."cpu_count", "network_type" = excluded."network_type", "#,
    r#""network_inbound" = excluded."network_inbound", "#,
    r#""network_outbound" = excluded."network_outbound", "memory" = excluded."memory", "#,
    r#""disk" = excluded."disk", "storage_record" = excluded."storage_record", "#,
    r#""image_id" = excluded."image_id", "benchmark_type" = excluded."benchmark_type", "#,
    r#""benchmark" = excluded."benchmark", "public_ip_count" = excluded."public_ip_count", "#,
    r#""flavor" = excluded."flavor""#
);

const SELECT: &str = concat!(
    r#"SELECT "local_id", "namespace", "machine", "local_group_id", "global_user_name", "fqan", "#,
    r#""status", "start_time", "end_time", "wall", "cpu_duration", "cpu_count", "#,
    r#""network_inbound", "network_outbound", "memory", "image_id", "flavor" FROM "vm""#
);

/// The columns of [`SCHEMA`].
const COLUMNS: [&str; 25] = [
    "local_id",
    "namespace",
    "machine",
    "local_user_id",
    "local_group_id",
    "global_user_name",
    "fqan",
    "status",
    "start_time",
    "end_time",
    "suspend_duration",
    "wall",
    "cpu_duration",
    "cpu_count",
    "network_type",
    "network_inbound",
    "network_outbound",
    "memory",
    "disk",
    "storage_record",
    "image_id",
    "benchmark_type",
    "benchmark",
    "public_ip_count",
    "flavor",
];

/// The notebooks database, open. Not `Sync`: one run at a time uses it.
#[derive(Debug)]
pub struct NotebooksDb {
    pub(super) conn: Connection,
    path: PathBuf,
}

fn db_error(action: &'static str, path: &Path, e: rusqlite::Error) -> Error {
    Error::Database {
        action,
        path: path.to_owned(),
        source: Box::new(e),
    }
}

impl NotebooksDb {
    /// Opens (creating if missing) the database at `path` and its `vm` table. A file that
    /// is not SQLite, or whose `vm` table lacks a column of [`SCHEMA`], is refused here,
    /// before any run writes anything.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let err = |action| move |e| db_error(action, path, e);
        let conn = Connection::open(path).map_err(err("cannot open notebooks database"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(err("cannot configure notebooks database"))?;
        conn.execute_batch(SCHEMA)
            .map_err(err("cannot create the vm table in notebooks database"))?;
        // Every column this tool reads or writes must be there (an older or foreign table).
        // Not a trial SELECT: SQLite reads an unknown double-quoted name as a string.
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('vm')")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(err("cannot read the vm table of notebooks database"))?;
        if let Some(missing) = COLUMNS.iter().find(|c| !columns.iter().any(|n| n == *c)) {
            return Err(Error::Database {
                action: "unexpected vm table in notebooks database",
                path: path.to_owned(),
                source: format!("no column {missing:?}").into(),
            });
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts or replaces `rows` (by `local_id`) in one transaction: all or none.
    pub fn upsert(&mut self, rows: &[VmRow]) -> Result<usize> {
        let path = self.path.clone();
        let err = |action| {
            let path = path.clone();
            move |e| db_error(action, &path, e)
        };
        let tx = self
            .conn
            .transaction()
            .map_err(err("cannot start a transaction in notebooks database"))?;
        {
            let mut stmt = tx
                .prepare(UPSERT)
                .map_err(err("cannot prepare the upsert in notebooks database"))?;
            for r in rows {
                stmt.execute(params![
                    r.local_id,
                    r.namespace,
                    r.machine,
                    r.local_group_id,
                    r.global_user_name,
                    r.fqan,
                    r.status,
                    r.start_time.and_then(format_time),
                    r.end_time.and_then(format_time),
                    r.wall,
                    r.cpu_duration,
                    r.cpu_count,
                    r.network_inbound,
                    r.network_outbound,
                    r.memory,
                    r.image_id,
                    r.flavor,
                ])
                .map_err(err("cannot write a row to notebooks database"))?;
            }
        }
        tx.commit()
            .map_err(err("cannot commit to notebooks database"))?;
        Ok(rows.len())
    }

    /// The row of `local_id` (as stored), if any.
    pub fn get(&self, local_id: &str) -> Result<Option<VmRow>> {
        let err = |action| move |e| db_error(action, &self.path, e);
        self.conn
            .query_row(
                &format!(r#"{SELECT} WHERE "local_id" = ?1"#),
                [local_id],
                read_row,
            )
            .optional()
            .map_err(err("cannot read notebooks database"))
    }

    /// The rows of pods that may have run in `[start, end)` (epoch seconds): started before
    /// `end` (or with no start) and not ended before `start`. Ordered by `local_id`.
    pub fn overlapping(&self, start: i64, end: i64) -> Result<Vec<VmRow>> {
        let err = |action| move |e| db_error(action, &self.path, e);
        let bound =
            |t: i64| format_time(t).ok_or_else(|| Error::Config(format!("time {t} out of range")));
        let (start, end) = (bound(start)?, bound(end)?);
        let mut stmt = self
            .conn
            .prepare(&format!(
                r#"{SELECT} WHERE ("start_time" IS NULL OR "start_time" < ?2) AND ("end_time" IS NULL OR "end_time" >= ?1) ORDER BY "local_id""#
            ))
            .map_err(err("cannot query notebooks database"))?;
        let rows = stmt
            .query_map([start, end], read_row)
            .map_err(err("cannot query notebooks database"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err("cannot read notebooks database"))?;
        Ok(rows)
    }
}

/// A row as written by this tool or the Python one: numbers may be stored as integers or
/// reals (or be NULL), times as peewee's text.
fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<VmRow> {
    let num =
        |i: usize| -> rusqlite::Result<f64> { Ok(row.get::<_, Option<f64>>(i)?.unwrap_or(0.0)) };
    let time = |i: usize| -> rusqlite::Result<Option<i64>> {
        Ok(row
            .get::<_, Option<String>>(i)?
            .as_deref()
            .and_then(parse_time))
    };
    Ok(VmRow {
        local_id: row.get(0)?,
        namespace: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
        machine: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
        local_group_id: row.get(3)?,
        global_user_name: row.get(4)?,
        fqan: row.get(5)?,
        status: row.get(6)?,
        start_time: time(7)?,
        end_time: time(8)?,
        wall: num(9)?,
        cpu_duration: num(10)?,
        cpu_count: num(11)?,
        network_inbound: num(12)?,
        network_outbound: num(13)?,
        memory: num(14)?,
        image_id: row.get(15)?,
        flavor: row.get(16)?,
    })
}
