//! Every PostgreSQL server from 12 to 18, each dumped through one pgdump-api by the matching
//! pg_dump (the same major, else the nearest newer one), configured through a Hasura
//! `databases.yaml`; and the clear error when no installed pg_dump fits.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::support::postgres::{cluster_of, Cluster};
use crate::support::{Server, TestDb, REFERENCE_SCHEMA};

/// The servers and pg_dumps of `scripts/postgres-matrix`, fetched on first use.
pub(crate) struct Matrix {
    pub(crate) servers: Vec<(u32, PathBuf)>,
    pub(crate) pg_dumps: Vec<(u32, PathBuf)>,
}

pub(crate) fn matrix() -> Matrix {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-matrix");
    let output = Command::new(&script)
        .output()
        .expect("run scripts/postgres-matrix");
    assert!(
        output.status.success(),
        "scripts/postgres-matrix failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut matrix = Matrix {
        servers: Vec::new(),
        pg_dumps: Vec::new(),
    };
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let mut words = line.splitn(3, ' ');
        let (Some(kind), Some(major), Some(path)) = (words.next(), words.next(), words.next())
        else {
            panic!("bad manifest line {line:?}");
        };
        let entry = (major.parse().unwrap(), PathBuf::from(path));
        match kind {
            "server" => matrix.servers.push(entry),
            "pg_dump" => matrix.pg_dumps.push(entry),
            _ => panic!("bad manifest line {line:?}"),
        }
    }
    matrix.servers.sort();
    matrix
}

/// Starts the clusters of `servers` in parallel.
fn clusters(servers: &[(u32, PathBuf)]) -> Vec<(u32, &'static Cluster)> {
    std::thread::scope(|scope| {
        let started: Vec<_> = servers
            .iter()
            .map(|(major, bin)| scope.spawn(move || (*major, cluster_of(bin))))
            .collect();
        started
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    })
}

/// Runs `args` with `pg_dump` against `url`, and cleans the output as the server does, so
/// that the event triggers that cleaning drops do not count.
fn cleaned_dump(pg_dump: &Path, args: &[&str], url: &str) -> String {
    let output = Command::new(pg_dump).args(args).arg(url).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(pgdump_api::clean::clean(&output.stdout)).unwrap()
}

#[tokio::test]
async fn every_server_from_12_to_18_is_dumped_by_its_own_or_the_nearest_newer_pg_dump() {
    let matrix = matrix();
    let majors: Vec<u32> = matrix.servers.iter().map(|(major, _)| *major).collect();
    assert_eq!(majors, (12..=18).collect::<Vec<_>>());
    let clusters = clusters(&matrix.servers);

    // One source per server, in a metadata directory's databases.yaml, the URL of the first
    // through {from_env: …} as Hasura projects usually have it.
    let mut yaml = String::new();
    let mut sources = Vec::new();
    for (major, cluster) in &clusters {
        let db = TestDb::new_on(cluster).await;
        db.client()
            .await
            .batch_execute(REFERENCE_SCHEMA)
            .await
            .unwrap();
        let url = if *major == 12 {
            "\n        from_env: PG12_DATABASE_URL".to_owned()
        } else {
            format!(" {}", db.url)
        };
        yaml.push_str(&format!(
            "- name: pg{major}\n  kind: postgres\n  configuration:\n    connection_info:\n      database_url:{url}\n      isolation_level: read-committed\n      use_prepared_statements: true\n  tables: \"!include pg{major}/tables/tables.yaml\"\n"
        ));
        sources.push((*major, *cluster, db));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("databases.yaml");
    std::fs::write(&file, &yaml).unwrap();

    let mut server =
        Server::builder_with_sources(&file).env("PG12_DATABASE_URL", &sources[0].2.url);
    for (_, pg_dump) in &matrix.pg_dumps {
        server = server.pg_dump(pg_dump);
    }
    let server = server.start();

    for (major, cluster, db) in &sources {
        let body = json!({
            "opts": ["-O", "-x", "--schema-only", "--schema", "public"],
            "clean_output": true,
            "source": format!("pg{major}"),
        });
        let reply = crate::support::dump_json(&server, body).await;
        assert_eq!(reply.status, 200, "PostgreSQL {major}: {}", reply.text());
        let used: u32 = reply
            .header("x-pg-dump-version")
            .expect("X-Pg-Dump-Version")
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let expected = matrix
            .pg_dumps
            .iter()
            .map(|(m, _)| *m)
            .filter(|m| m >= major)
            .min()
            .unwrap();
        assert_eq!(used, expected, "pg_dump used for PostgreSQL {major}");

        // The cleaned SQL replays through a non-psql client into an empty database of the
        // same server, and gives the same schema, Hasura's event triggers aside.
        let target = TestDb::new_on(cluster).await;
        target
            .client()
            .await
            .batch_execute(&reply.text())
            .await
            .unwrap_or_else(|err| {
                panic!("PostgreSQL {major}: replay failed: {err}\n{}", reply.text())
            });
        let pg_dump = &matrix.pg_dumps.iter().find(|(m, _)| *m == used).unwrap().1;
        let args = ["-O", "-x", "--schema-only", "--schema", "public"];
        assert_eq!(
            cleaned_dump(pg_dump, &args, &target.url),
            cleaned_dump(pg_dump, &args, &db.url),
            "PostgreSQL {major}"
        );
    }
}

#[tokio::test]
async fn a_server_newer_than_every_pg_dump_is_a_clear_error() {
    let matrix = matrix();
    let pg17 = &matrix
        .servers
        .iter()
        .find(|(major, _)| *major == 17)
        .unwrap()
        .1;
    let cluster = cluster_of(pg17);
    let db = TestDb::new_on(cluster).await;
    let pg_dump_15 = &matrix
        .pg_dumps
        .iter()
        .find(|(major, _)| *major == 15)
        .unwrap()
        .1;
    let server = Server::builder(&db.url).pg_dump(pg_dump_15).start();
    let reply = crate::support::dump_json(&server, json!({"opts": ["--schema-only"]})).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    let body = reply.json();
    assert_eq!(body["code"], "pg-dump-version-mismatch");
    assert_eq!(body["path"], "$");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("PostgreSQL 17."), "{message}");
    assert!(message.contains("15."), "{message}");
    assert!(message.contains("install pg_dump 17 or newer"), "{message}");
}
