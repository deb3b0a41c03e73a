//! What a source holds, for choosing what to dump: its schemas, and in each its tables, views,
//! sequences and functions, with the planner's row estimates and on-disk sizes. Read in one
//! read-only transaction under a statement timeout, so a browsing user can neither change the
//! database nor keep it busy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::SimpleQueryMessage;

use crate::conninfo::ConnInfo;
use crate::server_version;

/// How many catalog reads a server runs at once: a page left refreshing, or a script, must
/// not take the database's sessions from Hasura and pg_dump.
pub(crate) const CONCURRENT_READS: usize = 4;

/// How long the catalog query may run, and how long it may wait for a lock.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
const LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// The schemas pg_dump never dumps (and `pg_temp_N` / `pg_toast_temp_N`).
const SYSTEM_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
     AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%'";

/// A source's dumpable objects, by schema (in name order).
#[derive(Debug, Serialize)]
pub(crate) struct Catalog {
    pub schemas: Vec<Schema>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Schema {
    pub name: String,
    pub tables: Vec<Relation>,
    pub views: Vec<Relation>,
    pub sequences: Vec<Relation>,
    pub functions: Vec<Function>,
}

/// A table, view or sequence.
#[derive(Debug, Serialize)]
pub(crate) struct Relation {
    pub name: String,
    /// `table`, `partitioned table`, `foreign table`, `view`, `materialized view`, `sequence`.
    pub kind: &'static str,
    /// The planner's estimate (`pg_class.reltuples`); absent when never analysed or not a
    /// table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Bytes on disk with indexes and TOAST, from the planner's page counts (as of the last
    /// VACUUM, ANALYZE or CREATE INDEX): read from the catalog alone, so that a table locked by a
    /// migration does not hold the catalog up, as `pg_total_relation_size` would. Absent for
    /// views.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Function {
    pub name: String,
    /// The argument types, as `pg_get_function_identity_arguments` writes them.
    pub arguments: String,
    /// `function`, `procedure`, `aggregate` or `window`.
    pub kind: &'static str,
}

/// Why the catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogError {
    #[error("could not connect to the database: {0}")]
    Connect(String),
    #[error("could not read the database's catalog: {0}")]
    Query(String),
    #[error("reading the database's catalog took longer than {0:?}")]
    Timeout(Duration),
}

/// Reads the catalog of the database `conn` names.
pub(crate) async fn read(conn: &ConnInfo) -> Result<Catalog, CatalogError> {
    let limit = STATEMENT_TIMEOUT + Duration::from_secs(15);
    tokio::time::timeout(limit, query(conn))
        .await
        .map_err(|_| CatalogError::Timeout(STATEMENT_TIMEOUT))?
}

async fn query(conn: &ConnInfo) -> Result<Catalog, CatalogError> {
    let client = server_version::connect(conn)
        .await
        .map_err(CatalogError::Connect)?;
    let sql = format!(
        "BEGIN TRANSACTION READ ONLY;
         SET LOCAL statement_timeout = {statement};
         SET LOCAL lock_timeout = {lock};
         SELECT n.nspname FROM pg_namespace n WHERE {SYSTEM_SCHEMAS} ORDER BY 1;
         SELECT n.nspname, c.relname, c.relkind::text,
                CASE WHEN c.reltuples >= 0 AND c.relkind IN ('r', 'm', 'f')
                     THEN c.reltuples::bigint END,
                CASE WHEN c.relkind IN ('r', 'm', 'S', 'p') THEN
                     (c.relpages
                      + COALESCE((SELECT t.relpages FROM pg_class t
                                   WHERE t.oid = c.reltoastrelid), 0)
                      + COALESCE((SELECT sum(i.relpages) FROM pg_index x
                                   JOIN pg_class i ON i.oid = x.indexrelid
                                   WHERE x.indrelid = c.oid), 0))::bigint
                     * current_setting('block_size')::bigint END
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND NOT c.relispartition
            AND {SYSTEM_SCHEMAS}
          ORDER BY 1, 2;
         SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind::text
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE {SYSTEM_SCHEMAS}
          ORDER BY 1, 2, 3;
         COMMIT;",
        statement = STATEMENT_TIMEOUT.as_millis(),
        lock = LOCK_TIMEOUT.as_millis(),
    );
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|err| CatalogError::Query(server_version::describe(&err)))?;
    Ok(assemble(&messages))
}

/// Builds the catalog from the three result sets, which arrive in order, each ended by its
/// command-complete message.
fn assemble(messages: &[SimpleQueryMessage]) -> Catalog {
    let mut schemas: BTreeMap<String, Schema> = BTreeMap::new();
    let mut set = 0;
    for message in messages {
        let row = match message {
            SimpleQueryMessage::Row(row) => row,
            SimpleQueryMessage::CommandComplete(_) => {
                set += 1;
                continue;
            }
            _ => continue,
        };
        let text = |i: usize| row.get(i).unwrap_or_default().to_owned();
        let number = |i: usize| row.get(i).and_then(|value| value.parse::<u64>().ok());
        // Result sets: 0 BEGIN, 1 and 2 SET, 3 schemas, 4 relations, 5 functions.
        match set {
            3 => {
                let name = text(0);
                schemas.entry(name.clone()).or_insert_with(|| Schema {
                    name,
                    ..Schema::default()
                });
            }
            4 => {
                let Some(schema) = schemas.get_mut(&text(0)) else {
                    continue;
                };
                let relation = |kind| Relation {
                    name: text(1),
                    kind,
                    rows: number(3),
                    bytes: number(4),
                };
                match row.get(2).unwrap_or_default() {
                    "r" => schema.tables.push(relation("table")),
                    "p" => schema.tables.push(relation("partitioned table")),
                    "f" => schema.tables.push(relation("foreign table")),
                    "v" => schema.views.push(relation("view")),
                    "m" => schema.views.push(relation("materialized view")),
                    _ => schema.sequences.push(relation("sequence")),
                }
            }
            5 => {
                let Some(schema) = schemas.get_mut(&text(0)) else {
                    continue;
                };
                let kind = match row.get(3).unwrap_or_default() {
                    "p" => "procedure",
                    "a" => "aggregate",
                    "w" => "window",
                    _ => "function",
                };
                schema.functions.push(Function {
                    name: text(1),
                    arguments: text(2),
                    kind,
                });
            }
            _ => {}
        }
    }
    Catalog {
        schemas: schemas.into_values().collect(),
    }
}
