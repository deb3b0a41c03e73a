//! The client inside a Hasura project, as the Hasura CLI runs there: settings from
//! `config.yaml` and `.env` only (no flags), the config v2 and v3 layouts, the CLI's
//! precedence, and an HTTPS endpoint whose certificate a test CA signed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::support::{Server, TestDb};

const SECRET: &str = "project-s3cret";

const SCHEMA: &str = r#"
CREATE TABLE public.authors (id int PRIMARY KEY, name text);
INSERT INTO public.authors VALUES (1, 'Ann');
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Orders" (id int PRIMARY KEY);
CREATE SCHEMA "a,b";
CREATE TABLE "a,b".t (id int PRIMARY KEY);
CREATE SCHEMA other;
CREATE TABLE other.hidden (id int PRIMARY KEY);
"#;

/// The client run in `dir` with `args`, without the test's own HASURA_GRAPHQL_* settings.
fn run_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = crate::support::pgdump_api();
    command
        .args(args)
        .current_dir(dir)
        // The system's roots, unless a test names them.
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .envs(envs.iter().copied())
        .stdin(Stdio::null());
    command.output().expect("run pgdump-api")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn expect(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The one file or directory in `dir` (a migration's, a seed's), by its path.
fn only_entry(dir: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.into_iter().next().unwrap()
}

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

#[tokio::test]
async fn v3_project_reads_config_yaml_and_env_file() {
    let db = TestDb::with(SCHEMA).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    // The endpoint in config.yaml, the secret in .env, as `hasura init` projects keep them.
    let config = format!(
        "version: 3\nendpoint: http://{}\nmetadata_directory: metadata\n",
        server.addr
    );
    let dir = project(&[
        ("config.yaml", &config),
        (
            ".env",
            &format!("# secrets\nHASURA_GRAPHQL_ADMIN_SECRET={SECRET}\n"),
        ),
    ]);
    let sub = dir.path().join("metadata");
    std::fs::create_dir(&sub).unwrap();

    let migrate = run_in(
        &sub,
        &["migrate", "create", "init", "--from-server", "-q"],
        &[],
    );
    expect(&migrate, 0);
    let up = only_entry(&dir.path().join("migrations/default")).join("up.sql");
    assert_eq!(text(&migrate.stdout).trim(), up.display().to_string());
    let sql = std::fs::read_to_string(&up).unwrap();
    assert!(sql.contains("CREATE TABLE public.authors"), "{sql}");

    let seed = run_in(
        &sub,
        &["seed", "create", "authors", "--from-table", "authors", "-q"],
        &[],
    );
    expect(&seed, 0);
    let seed = only_entry(&dir.path().join("seeds/default"));
    assert!(
        seed.display().to_string().ends_with("_authors.sql"),
        "{}",
        seed.display()
    );
    let sql = std::fs::read_to_string(&seed).unwrap();
    assert!(sql.contains("INSERT INTO public.authors"), "{sql}");
}

#[tokio::test]
async fn v2_project_has_no_database_directory() {
    let db = TestDb::with(SCHEMA).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    // config v2: the secret in config.yaml, the endpoint (without a scheme) in .env, and
    // migrations and seeds where config.yaml says.
    let config = format!(
        "version: 2\nadmin_secret: {SECRET}\nmigrations_directory: db/migrations\n\
         seeds_directory: db/seeds\nendpoint: http://127.0.0.1:1\n"
    );
    let dir = project(&[
        ("config.yaml", &config),
        (
            ".env",
            &format!("HASURA_GRAPHQL_ENDPOINT={}\n", server.addr),
        ),
    ]);

    let migrate = run_in(
        dir.path(),
        &["migrate", "create", "init", "--from-server", "-q"],
        &[],
    );
    expect(&migrate, 0);
    let migration = only_entry(&dir.path().join("db/migrations"));
    assert!(
        migration.join("up.sql").is_file(),
        "{}",
        migration.display()
    );
    assert!(migration
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("_init"));

    let seed = run_in(
        dir.path(),
        &["seed", "create", "rows", "--from-table", "authors", "-q"],
        &[],
    );
    expect(&seed, 0);
    let seed = only_entry(&dir.path().join("db/seeds"));
    assert!(seed.is_file(), "{}", seed.display());
}

/// Flag, then environment, then `.env`, then config.yaml: each level hides the next.
#[tokio::test]
async fn settings_follow_the_hasura_clis_precedence() {
    let db = TestDb::with(SCHEMA).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let config = format!(
        "version: 3\nendpoint: http://{}\nadmin_secret: from-config\n",
        server.addr
    );
    let dir = project(&[
        ("config.yaml", &config),
        (".env", "HASURA_GRAPHQL_ADMIN_SECRET=from-dotenv\n"),
        (
            "prod.env",
            &format!("HASURA_GRAPHQL_ADMIN_SECRET={SECRET}\n"),
        ),
    ]);
    let dump = ["dump", "-q", "--", "--schema-only"];
    // .env beats config.yaml: its (wrong) secret is the one sent.
    let output = run_in(dir.path(), &dump, &[]);
    expect(&output, 3);
    // --envfile names another file.
    let with_envfile = [&dump[..1], &["--envfile", "prod.env"], &dump[1..]].concat();
    expect(&run_in(dir.path(), &with_envfile, &[]), 0);
    // The environment beats .env.
    let env = [("HASURA_GRAPHQL_ADMIN_SECRET", SECRET)];
    expect(&run_in(dir.path(), &dump, &env), 0);
    // A flag beats the environment.
    let with_flag = [&dump[..1], &["--admin-secret", "from-flag"], &dump[1..]].concat();
    let output = run_in(dir.path(), &with_flag, &env);
    expect(&output, 3);
    // The error names the request, to find it in the server's log.
    let stderr = text(&output.stderr);
    let logs = server.wait_http_logs(4).await;
    let id = logs.last().unwrap()["detail"]["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(stderr.contains(&format!("[request id {id}]")), "{stderr}");
}

#[tokio::test]
async fn schema_flag_takes_a_comma_list() {
    let db = TestDb::with(SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let dir = project(&[("config.yaml", "version: 3\n")]);
    let endpoint = server.addr.to_string();
    let args = [
        "migrate",
        "create",
        "two",
        "--from-server",
        "-q",
        "--endpoint",
        &endpoint,
        "--schema",
        "public,Sales",
        "--schema",
        "\"a,b\"",
    ];
    let output = run_in(dir.path(), &args, &[]);
    expect(&output, 0);
    let sql = std::fs::read_to_string(text(&output.stdout).trim()).unwrap();
    assert!(sql.contains("CREATE TABLE public.authors"), "{sql}");
    assert!(sql.contains("CREATE TABLE \"Sales\".\"Orders\""), "{sql}");
    assert!(sql.contains("CREATE TABLE \"a,b\".t"), "{sql}");
    assert!(!sql.contains("hidden"), "{sql}");
}

#[tokio::test]
async fn dump_to_a_file_ends_with_a_summary() {
    let db = TestDb::with(SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let dir = project(&[]);
    let endpoint = server.addr.to_string();
    let args = [
        "dump",
        "-o",
        "out.sql",
        "--endpoint",
        &endpoint,
        "--",
        "--schema-only",
    ];
    let output = run_in(dir.path(), &args, &[]);
    expect(&output, 0);
    let size = std::fs::metadata(dir.path().join("out.sql")).unwrap().len();
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("pgdump-api: wrote out.sql (")
            && stderr.contains(&format!("({size} bytes) in ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A test CA and a certificate it signed for localhost and 127.0.0.1, made with openssl.
struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                text(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=pgdump-api test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"],
                &ec[..],
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        TestCa { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Serves TLS with the signed certificate on a new port and forwards each connection,
    /// decrypted, to `backend`; returns the port.
    async fn proxy(&self, backend: std::net::SocketAddr) -> u16 {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(self.path("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to do.
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut plain = TcpStream::connect(backend).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        port
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_signed_by_a_private_ca() {
    let db = TestDb::with(SCHEMA).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let ca = TestCa::new();
    let port = ca.proxy(server.addr).await;
    let config =
        format!("version: 3\nendpoint: https://localhost:{port}\nadmin_secret: {SECRET}\n");
    let dir = project(&[("config.yaml", &config)]);
    std::fs::copy(ca.path("ca.pem"), dir.path().join("ca.pem")).unwrap();
    let run = |envs: Vec<(&'static str, String)>| {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let dump = ["dump", "-q", "--", "--schema-only", "--table", "authors"];
            run_in(&dir, &dump, &envs)
        })
    };

    // Not trusted by anything: refused before anything is sent (exit 4).
    let output = run(vec![]).await.unwrap();
    expect(&output, 4);
    assert!(
        text(&output.stderr).contains("could not reach"),
        "{}",
        text(&output.stderr)
    );

    // certificate_authority in config.yaml, relative to the project.
    let with_ca = format!("{config}certificate_authority: ca.pem\n");
    std::fs::write(dir.path().join("config.yaml"), with_ca).unwrap();
    let output = run(vec![]).await.unwrap();
    expect(&output, 0);
    assert!(text(&output.stdout).contains("CREATE TABLE public.authors"));
    std::fs::write(dir.path().join("config.yaml"), &config).unwrap();

    // The system's roots: an internal CA the OS trusts (rustls-native-certs reads
    // SSL_CERT_FILE as OpenSSL does).
    let ca_file = ca.path("ca.pem").display().to_string();
    expect(&run(vec![("SSL_CERT_FILE", ca_file)]).await.unwrap(), 0);

    // insecure_skip_tls_verify: works, and says loudly what it gives away.
    let insecure = ("HASURA_GRAPHQL_INSECURE_SKIP_TLS_VERIFY", "true".to_owned());
    let output = run(vec![insecure]).await.unwrap();
    expect(&output, 0);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("WARNING: insecure_skip_tls_verify") && stderr.contains("NOT verified"),
        "{stderr}"
    );
}

/// As the Hasura CLI: the first of `admin_secrets` (a JSON list, also from
/// HASURA_GRAPHQL_ADMIN_SECRETS) before `admin_secret`, whatever level each comes from.
#[tokio::test]
async fn admin_secrets_first_entry_is_sent() {
    let db = TestDb::with(SCHEMA).await;
    let server = Server::builder(&db.url).secret(SECRET).start();
    let config = format!(
        "version: 3\nendpoint: http://{}\nadmin_secret: wrong\nadmin_secrets: '[\"{SECRET}\", \"other\"]'\n",
        server.addr
    );
    let dir = project(&[("config.yaml", &config)]);
    let dump = ["dump", "-q", "--", "--schema-only"];
    let env = [("HASURA_GRAPHQL_ADMIN_SECRET", "wrong-too")];
    expect(&run_in(dir.path(), &dump, &env), 0);
    // The environment's list beats config.yaml's.
    let env = [("HASURA_GRAPHQL_ADMIN_SECRETS", r#"["nope"]"#)];
    expect(&run_in(dir.path(), &dump, &env), 3);
    // A list that is not one is a clear error before any request.
    let env = [("HASURA_GRAPHQL_ADMIN_SECRETS", "nope")];
    let output = run_in(dir.path(), &dump, &env);
    expect(&output, 1);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("HASURA_GRAPHQL_ADMIN_SECRETS (environment)"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
}

/// A config v1 project: `dump` works there; `migrate` says why it does not, and writes nothing.
#[tokio::test]
async fn config_v1_project_dumps_but_makes_no_migration() {
    let db = TestDb::with(SCHEMA).await;
    let server = Server::builder(&db.url).start();
    let config = format!("endpoint: http://{}\n", server.addr);
    let dir = project(&[("config.yaml", &config)]);
    expect(
        &run_in(dir.path(), &["dump", "-q", "--", "--schema-only"], &[]),
        0,
    );
    let migrate = run_in(
        dir.path(),
        &["migrate", "create", "init", "--from-server"],
        &[],
    );
    expect(&migrate, 1);
    let stderr = text(&migrate.stderr);
    assert!(stderr.contains("config v1"), "{stderr}");
    assert!(!dir.path().join("migrations").exists());
}
