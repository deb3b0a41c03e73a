//! A pg_dump never outlives its server: started through the launcher step of the same binary,
//! it is killed by the kernel when the server dies, even by SIGKILL — and it is not killed
//! while the server lives, however long it waits.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{
    cluster, eventually, lock_articles, pg_dump_children, pgdump_api, send_raw,
    sessions_waiting_on_a_lock, spawn_dump, Server, TestDb, REFERENCE_SCHEMA,
};

/// The pids of processes named pg_dump whose command line names `db`, whoever their parent.
fn pg_dumps_of(db: &TestDb) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let dir = Path::new("/proc").join(pid.to_string());
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if comm.trim_end() == "pg_dump" && String::from_utf8_lossy(&cmdline).contains(&db.name) {
            found.push(pid);
        }
    }
    found
}

/// The sessions in `db` other than `admin`'s own and `except`.
async fn other_sessions(admin: &tokio_postgres::Client, db: &TestDb, except: i32) -> Vec<String> {
    let rows = admin
        .query(
            "SELECT format('%s %s %s: %s', pid, application_name, state, query) \
             FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND pid <> $2",
            &[&db.name, &except],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

#[tokio::test]
async fn server_killed_with_sigkill_leaves_no_pg_dump_or_session() {
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let admin = db.client().await;
    let lock = lock_articles(&db).await;
    let holder: i32 = lock
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let server = Server::builder(&db.url).start();
    let _client = send_raw(&server, r#"{"opts":[]}"#);
    eventually("a pg_dump child of the server", || {
        !pg_dump_children(server.pid()).is_empty()
    })
    .await;
    sessions_waiting_on_a_lock(&admin, &db, 1).await;
    let status = Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let processes = pg_dumps_of(&db);
        let sessions = other_sessions(&admin, &db, holder).await;
        if processes.is_empty() && sessions.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after the server's SIGKILL: pg_dump processes {processes:?}, sessions \
             {sessions:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still locked: pg_dump went because the server did, not because it finished.
    assert!(!lock.is_closed());
}

#[tokio::test]
async fn a_dump_waiting_longer_than_the_blocking_pools_keep_alive_is_not_killed() {
    // Tokio's blocking-pool threads end after 10 s idle; were pg_dump spawned from one, its
    // death signal would fire then. It is spawned from a thread that lives with the server.
    let db = TestDb::with(REFERENCE_SCHEMA).await;
    let admin = db.client().await;
    let lock = lock_articles(&db).await;
    let server = Server::builder(&db.url).start();
    let request = spawn_dump(&server);
    sessions_waiting_on_a_lock(&admin, &db, 1).await;
    let before = pg_dump_children(server.pid());
    assert_eq!(before.len(), 1, "{before:?}");
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(pg_dump_children(server.pid()), before);
    drop(lock);
    let (status, _, body) = request.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("CREATE TABLE public.articles"), "{body}");
}

/// The binary's hidden launcher step, for `pg_dump --version`, with `parent` as the parent it
/// expects.
fn launch_pg_dump_version(parent: u32, pg_dump: &Path) -> std::process::Output {
    pgdump_api()
        .args(["__exec-pg-dump", "--parent", &parent.to_string(), "--"])
        .arg(pg_dump)
        .arg("--version")
        .output()
        .unwrap()
}

#[test]
fn a_launcher_whose_parent_is_gone_does_not_run_pg_dump() {
    let pg_dump = cluster().pg_dump();
    let not_parent = if std::process::id() == 1 { 2 } else { 1 };
    let output = launch_pg_dump_version(not_parent, &pg_dump);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(output.stdout.is_empty(), "pg_dump ran");
    assert!(stderr.contains("is gone"), "{stderr}");
    // With its real parent, it becomes pg_dump.
    let output = launch_pg_dump_version(std::process::id(), &pg_dump);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("pg_dump (PostgreSQL)"));
    // pg_dump missing: one line saying so, and the status of a command not found.
    let output = launch_pg_dump_version(std::process::id(), Path::new("/nonexistent/pg_dump"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(127), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("could not start /nonexistent/pg_dump"),
        "{stderr}"
    );
}

#[test]
fn the_launcher_is_not_in_the_help() {
    let output = pgdump_api().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(!help.contains("exec-pg-dump"), "{help}");
}
