//! The server-version probe reads connection strings on its own, without libpq: what it does
//! not honour (a password file, a service file) must still give a working dump, by pg_dump,
//! which does. The newest installed pg_dump runs then, not the one the server's version
//! would have picked.

use std::os::unix::fs::PermissionsExt;

use crate::matrix::matrix;
use crate::support::postgres::PASSWORD;
use crate::support::server::ServerBuilder;
use crate::support::{cluster, post_dump, Server, TestDb};

const SCHEMA: &str = "CREATE TABLE probed (id int PRIMARY KEY);";

/// The test cluster's pg_dump, which matches its server, and a newer one from the matrix.
fn with_a_newer_pg_dump(server: ServerBuilder) -> ServerBuilder {
    let newer = matrix()
        .pg_dumps
        .into_iter()
        .find(|(major, _)| *major == 17)
        .expect("pg_dump 17 in the matrix")
        .1;
    server.pg_dump(cluster().pg_dump()).pg_dump(newer)
}

/// The probe cannot log in, so the newest pg_dump runs, and it logs why.
async fn assert_dump_works_without_the_probe(server: &Server) {
    let reply = post_dump(server, r#"{"opts":["--schema-only"]}"#, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("CREATE TABLE public.probed"));
    let used = reply.header("x-pg-dump-version").unwrap();
    assert!(
        used.starts_with("17."),
        "the newest pg_dump runs, not {used}"
    );
    let warned = server.logs().iter().any(|line| {
        line.contains("could not learn the server version; running the newest pg_dump")
    });
    assert!(warned, "{:?}", server.logs());
    assert!(server.logs().iter().all(|line| !line.contains(PASSWORD)));
}

fn private_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test]
async fn password_from_a_passfile_reaches_pg_dump() {
    let db = TestDb::with(SCHEMA).await;
    let dir = tempfile::tempdir().unwrap();
    let port = cluster().port;
    let passfile = private_file(
        dir.path(),
        "pgpass",
        &format!("127.0.0.1:{port}:{}:postgres:{PASSWORD}\n", db.name),
    );
    let url = format!(
        "postgres://postgres@127.0.0.1:{port}/{}?passfile={}",
        db.name,
        passfile.display()
    );
    let server = with_a_newer_pg_dump(Server::builder(&url)).start();
    assert_dump_works_without_the_probe(&server).await;
}

#[tokio::test]
async fn connection_from_a_service_file_reaches_pg_dump() {
    let db = TestDb::with(SCHEMA).await;
    let dir = tempfile::tempdir().unwrap();
    let service_file = private_file(
        dir.path(),
        "pg_service.conf",
        &format!(
            "[probed]\nhost=127.0.0.1\nport={}\ndbname={}\nuser=postgres\npassword={PASSWORD}\n",
            cluster().port,
            db.name
        ),
    );
    let server = with_a_newer_pg_dump(Server::builder("service=probed"))
        .env("PGSERVICEFILE", service_file.to_str().unwrap())
        .start();
    assert_dump_works_without_the_probe(&server).await;
}
