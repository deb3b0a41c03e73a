//! Authentication and CORS as a Hasura deployment configures them: the startup rules that keep
//! a server from opening by accident, admin secret rotation, and CORS answers.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::support::{http, pgdump_api, post_dump, serve_app as serve, Server, TestDb};

/// Starts `serve` with `envs`; whether it kept running (for a few seconds) and its stderr.
fn run_serve(envs: &[(&str, &str)]) -> (bool, String) {
    use std::io::Read;
    let pg_dump = crate::support::cluster().pg_dump();
    let mut child = pgdump_api()
        .arg("serve")
        .args(["--server-host", "127.0.0.1", "--server-port", "0"])
        .arg("--pg-dump-path")
        .arg(pg_dump)
        .env(
            "HASURA_GRAPHQL_DATABASE_URL",
            "postgres://u:pw@127.0.0.1:1/db",
        )
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let stopped = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break !status.success();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (!stopped, stderr)
}

const JWT: &str = r#"{"type":"HS256","key":"an-hmac-key-of-at-least-32-characters"}"#;
const HOOK: &str = "http://127.0.0.1:1/hook";

/// Every configuration Hasura refuses to start with, and those that would leave pgdump-api
/// open or ignore a setting: each stops startup with a message naming it, and no secret.
#[test]
fn every_fatal_auth_configuration_stops_startup() {
    let secret = ("HASURA_GRAPHQL_ADMIN_SECRET", "s3cret");
    let jwt = ("HASURA_GRAPHQL_JWT_SECRET", JWT);
    let hook = ("HASURA_GRAPHQL_AUTH_HOOK", HOOK);
    let role = ("HASURA_GRAPHQL_UNAUTHORIZED_ROLE", "anonymous");
    let requires = " requires --admin-secret (HASURA_GRAPHQL_ADMIN_SECRET) or --access-key \
                    (HASURA_GRAPHQL_ACCESS_KEY) to be set";
    let jwt_alone = format!("Fatal Error : --jwt-secret (HASURA_GRAPHQL_JWT_SECRET){requires}");
    let hook_alone = format!("Fatal Error : --auth-hook (HASURA_GRAPHQL_AUTH_HOOK){requires}");
    let role_alone = format!(
        "Fatal Error: --unauthorized-role (HASURA_GRAPHQL_UNAUTHORIZED_ROLE){requires} and is \
         not allowed when --auth-hook (HASURA_GRAPHQL_AUTH_HOOK) is set"
    );
    let both = "Fatal Error: Both webhook and JWT mode cannot be enabled at the same time";
    let cases: Vec<(Vec<(&str, &str)>, String)> = vec![
        (vec![jwt], jwt_alone.clone()),
        (vec![("HASURA_GRAPHQL_JWT_SECRETS", "[]")], jwt_alone),
        (vec![hook], hook_alone),
        (vec![role], role_alone.clone()),
        (vec![secret, hook, role], role_alone),
        (vec![jwt, hook], both.to_owned()),
        (vec![secret, jwt, hook], both.to_owned()),
        (
            vec![("HASURA_GRAPHQL_ADMIN_SECRET", "")],
            "is set but empty".to_owned(),
        ),
        (
            vec![("HASURA_GRAPHQL_ADMIN_SECRETS", "[]")],
            "is set but empty".to_owned(),
        ),
        (
            vec![("HASURA_GRAPHQL_ADMIN_SECRETS", "s3cret")],
            "must be a JSON list of strings".to_owned(),
        ),
        (
            vec![secret, ("HASURA_GRAPHQL_UNAUTHORIZED_ROLE", "admin")],
            "must not be admin".to_owned(),
        ),
        (
            vec![secret, ("HASURA_GRAPHQL_JWT_SECRET_FILE", "/run/jwt")],
            "HASURA_GRAPHQL_JWT_SECRET_FILE is set, but pgdump-api does not support it".to_owned(),
        ),
        (
            vec![secret, ("HASURA_GRAPHQL_CORS_DOMAIN", "localhost:3000")],
            "invalid domain: 'localhost:3000'".to_owned(),
        ),
        (
            vec![
                secret,
                (
                    "HASURA_GRAPHQL_JWT_SECRET",
                    r#"{"type":"HS256","key":"short"}"#,
                ),
            ],
            "Key size too small; should be atleast 32 characters".to_owned(),
        ),
        (
            vec![secret, ("HASURA_GRAPHQL_AUTH_HOOK_MODE", "PUT"), hook],
            "expected GET or POST".to_owned(),
        ),
    ];
    for (envs, expected) in cases {
        let (running, stderr) = run_serve(&envs);
        assert!(!running, "{envs:?} started");
        assert!(stderr.contains(&expected), "{envs:?}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{envs:?}: {stderr}");
        assert!(!stderr.contains("an-hmac-key"), "{envs:?}: {stderr}");
    }
}

/// `HASURA_GRAPHQL_ADMIN_SECRETS` lists secrets for rotation: each of them and the single
/// secret are admin; anything else is refused.
#[tokio::test]
async fn admin_secrets_list_lets_every_listed_secret_dump() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url)
        .secret("single")
        .env("HASURA_GRAPHQL_ADMIN_SECRETS", r#"["old-one", "new-one"]"#)
        .start();
    let body = r#"{"opts":["--schema-only"]}"#;
    for secret in ["single", "old-one", "new-one"] {
        let reply = post_dump(&server, body, &[("x-hasura-admin-secret", secret)]).await;
        assert_eq!(reply.status, 200, "{secret}: {}", reply.text());
    }
    for wrong in ["old", "new-on", "", "[\"old-one\"]"] {
        let reply = post_dump(&server, body, &[("x-hasura-admin-secret", wrong)]).await;
        assert_eq!(reply.status, 401, "{wrong}: {}", reply.text());
    }
    server.wait_http_logs(7).await;
    assert!(server.logs().iter().all(|line| !line.contains("old-one")));
}

/// A request with headers, answered.
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = http().request(method, server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The CORS headers of an allowed origin, Hasura's.
fn assert_cors(response: &reqwest::Response, origin: &str) {
    let expected = [
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
        (
            "access-control-allow-methods",
            "GET,POST,PUT,PATCH,DELETE,OPTIONS",
        ),
        (
            "access-control-expose-headers",
            "X-Hasura-Query-Cache-Key,X-Hasura-Query-Family-Cache-Key,Warning,X-Pg-Dump-Version",
        ),
    ];
    for (name, value) in expected {
        assert_eq!(header(response, name), Some(value), "{name}");
    }
}

fn assert_no_cors(response: &reqwest::Response) {
    let cors: Vec<_> = response
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "{cors:?}");
}

/// A browser's preflight: the origin, the method and the headers it will send.
fn preflight(origin: &str) -> [(&str, &str); 3] {
    [
        ("origin", origin),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "content-type,x-hasura-admin-secret",
        ),
    ]
}

/// By default (`*`) every origin is echoed: the preflight is a 204 with Hasura's headers, and
/// the answers that follow, dumps and errors alike, carry the CORS headers.
#[tokio::test]
async fn cors_by_default_answers_preflight_and_marks_every_answer() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url).secret("s3cret").start();
    let origin = "https://console.example.com:8443";
    let reply = send(
        &server,
        Method::OPTIONS,
        "/v1alpha1/pg_dump",
        &preflight(origin),
    )
    .await;
    assert_eq!(reply.status(), 204);
    assert_cors(&reply, origin);
    assert_eq!(header(&reply, "access-control-max-age"), Some("1728000"));
    assert_eq!(
        header(&reply, "access-control-allow-headers"),
        Some("content-type,x-hasura-admin-secret")
    );
    assert!(reply.text().await.unwrap().is_empty());

    let admin = [("origin", origin), ("x-hasura-admin-secret", "s3cret")];
    let unparsed = send(&server, Method::POST, "/v1alpha1/pg_dump", &admin).await;
    assert_eq!(unparsed.status(), 400, "an empty body does not parse");
    assert_cors(&unparsed, origin);
    let dump = http()
        .post(server.url("/v1alpha1/pg_dump"))
        .body(r#"{"opts":["--schema-only"]}"#)
        .header("origin", origin)
        .header("x-hasura-admin-secret", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(dump.status(), 200);
    assert_cors(&dump, origin);
    assert!(dump.headers().contains_key("x-pg-dump-version"));
    let denied = send(
        &server,
        Method::POST,
        "/v1alpha1/pg_dump",
        &[("origin", origin), ("x-hasura-admin-secret", "wrong")],
    )
    .await;
    assert_eq!(denied.status(), 401);
    assert_cors(&denied, origin);
    let missing = send(&server, Method::GET, "/nowhere", &[("origin", origin)]).await;
    assert_eq!(missing.status(), 404);
    assert_cors(&missing, origin);
    // Without an Origin nothing changes.
    let plain = send(&server, Method::OPTIONS, "/v1alpha1/pg_dump", &[]).await;
    assert_eq!(plain.status(), 405);
    assert_no_cors(&plain);
}

/// A list of origins: listed ones and one-label wildcard subdomains are allowed (scheme and
/// port included); any other origin gets no CORS headers and its preflight is not answered.
#[tokio::test]
async fn cors_domain_list_allows_listed_and_wildcard_origins_only() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env(
            "HASURA_GRAPHQL_CORS_DOMAIN",
            "http://localhost:3000, https://*.example.com",
        )
        .start();
    for origin in ["http://localhost:3000", "https://app.example.com"] {
        let reply = send(
            &server,
            Method::OPTIONS,
            "/v1alpha1/pg_dump",
            &preflight(origin),
        )
        .await;
        assert_eq!(reply.status(), 204, "{origin}");
        assert_cors(&reply, origin);
        let denied = send(
            &server,
            Method::POST,
            "/v1alpha1/pg_dump",
            &[("origin", origin)],
        )
        .await;
        assert_eq!(denied.status(), 401, "{origin}");
        assert_cors(&denied, origin);
    }
    for origin in [
        "http://localhost:3001",
        "https://localhost:3000",
        "https://a.b.example.com",
        "https://example.com",
        "http://app.example.com",
        "https://evil.com",
    ] {
        let reply = send(
            &server,
            Method::OPTIONS,
            "/v1alpha1/pg_dump",
            &preflight(origin),
        )
        .await;
        assert_eq!(reply.status(), 405, "{origin}");
        assert_no_cors(&reply);
        let denied = send(
            &server,
            Method::POST,
            "/v1alpha1/pg_dump",
            &[("origin", origin)],
        )
        .await;
        assert_eq!(denied.status(), 401, "{origin}");
        assert_no_cors(&denied);
    }
}

/// `HASURA_GRAPHQL_DISABLE_CORS`: no CORS headers for any origin, even with a domain list.
#[tokio::test]
async fn disabled_cors_sends_no_cors_headers() {
    let db = TestDb::new().await;
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env("HASURA_GRAPHQL_DISABLE_CORS", "true")
        .env("HASURA_GRAPHQL_CORS_DOMAIN", "http://localhost:3000")
        .start();
    let origin = "http://localhost:3000";
    let reply = send(
        &server,
        Method::OPTIONS,
        "/v1alpha1/pg_dump",
        &preflight(origin),
    )
    .await;
    assert_eq!(reply.status(), 405);
    assert_no_cors(&reply);
    let denied = send(
        &server,
        Method::POST,
        "/v1alpha1/pg_dump",
        &[("origin", origin)],
    )
    .await;
    assert_eq!(denied.status(), 401);
    assert_no_cors(&denied);
}

// ---------------------------------------------------------------------------------------------
// JWT: tokens signed by the openssl command, not by the server's JWT library.

mod mint {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::{json, Value};

    /// Runs openssl with `args`, `input` on its stdin; its stdout.
    pub fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut child = Command::new("openssl")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    pub fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A private key and its public PEM.
    pub struct KeyPair {
        pub private: PathBuf,
        pub public_pem: String,
    }

    /// Generates a key: `rsa`, `ec` (P-256) or `ed25519`.
    pub fn key(dir: &Path, kind: &str) -> KeyPair {
        let private = dir.join(format!("{kind}-{}.pem", uuid::Uuid::new_v4()));
        let path = private.to_str().unwrap();
        let args: &[&str] = match kind {
            "rsa" => &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            "ec" => &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            _ => &["genpkey", "-algorithm", "ED25519"],
        };
        let mut all = args.to_vec();
        all.extend(["-out", path]);
        openssl(&all, b"");
        let public_pem = openssl(&["pkey", "-in", path, "-pubout"], b"");
        KeyPair {
            private,
            public_pem: String::from_utf8(public_pem).unwrap(),
        }
    }

    /// An RSA public key as a JWK with `kid`.
    pub fn rsa_jwk(key: &KeyPair, kid: &str) -> Value {
        let text = openssl(
            &[
                "rsa",
                "-in",
                key.private.to_str().unwrap(),
                "-modulus",
                "-noout",
            ],
            b"",
        );
        let text = String::from_utf8(text).unwrap();
        let hex = text.trim().strip_prefix("Modulus=").unwrap();
        let modulus: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
               "n": b64(&modulus), "e": "AQAB"})
    }

    /// How a token is signed.
    pub enum Signer<'a> {
        Hmac(&'a str),
        Rsa(&'a KeyPair),
        Ec(&'a KeyPair),
        Ed(&'a KeyPair),
        /// `alg: none`, no signature.
        Unsigned,
    }

    /// A compact JWT of `claims`, with `kid` in its header when given.
    pub fn token(signer: &Signer, kid: Option<&str>, claims: &Value) -> String {
        let alg = match signer {
            Signer::Hmac(_) => "HS256",
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
            Signer::Unsigned => "none",
        };
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match signer {
            Signer::Hmac(secret) => openssl(
                &[
                    "dgst",
                    "-sha256",
                    "-mac",
                    "HMAC",
                    "-macopt",
                    &format!("key:{secret}"),
                    "-binary",
                ],
                input.as_bytes(),
            ),
            Signer::Rsa(key) => openssl(
                &[
                    "dgst",
                    "-sha256",
                    "-binary",
                    "-sign",
                    key.private.to_str().unwrap(),
                ],
                input.as_bytes(),
            ),
            Signer::Ec(key) => der_to_raw(&openssl(
                &[
                    "dgst",
                    "-sha256",
                    "-binary",
                    "-sign",
                    key.private.to_str().unwrap(),
                ],
                input.as_bytes(),
            )),
            Signer::Ed(key) => {
                let file = key.private.with_extension("msg");
                std::fs::write(&file, input.as_bytes()).unwrap();
                openssl(
                    &[
                        "pkeyutl",
                        "-sign",
                        "-rawin",
                        "-inkey",
                        key.private.to_str().unwrap(),
                        "-in",
                        file.to_str().unwrap(),
                    ],
                    b"",
                )
            }
            Signer::Unsigned => Vec::new(),
        };
        format!("{input}.{}", b64(&signature))
    }

    /// An ECDSA signature from DER (`SEQUENCE { r, s }`) to JOSE's 64 bytes.
    fn der_to_raw(der: &[u8]) -> Vec<u8> {
        let mut at = 2;
        if der[1] & 0x80 != 0 {
            at += usize::from(der[1] & 0x7f);
        }
        let mut raw = Vec::new();
        for _ in 0..2 {
            assert_eq!(der[at], 0x02, "an INTEGER");
            let len = usize::from(der[at + 1]);
            let int = &der[at + 2..at + 2 + len];
            let int = &int[int.len().saturating_sub(32)..];
            raw.extend(std::iter::repeat_n(0u8, 32 - int.len()));
            raw.extend_from_slice(int);
            at += 2 + len;
        }
        raw
    }

    /// Seconds since the epoch, shifted by `delta`.
    pub fn now(delta: i64) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        now + delta
    }

    /// Claims with Hasura's namespace: `allowed` roles, `default` role, and `extra` claims.
    pub fn claims(allowed: &[&str], default: &str, extra: Value) -> Value {
        let mut claims = json!({
            "sub": "1234",
            "iat": now(-10),
            "exp": now(600),
            "https://hasura.io/jwt/claims": {
                "x-hasura-allowed-roles": allowed,
                "x-hasura-default-role": default,
            }
        });
        if let Value::Object(extra) = extra {
            for (key, value) in extra {
                claims[key] = value;
            }
        }
        claims
    }
}

use mint::{claims, now, token, Signer};
use serde_json::{json, Value};

const SCHEMA_ONLY: &str = r#"{"opts":["--schema-only"]}"#;
const HMAC_KEY: &str = "an-hmac-key-of-at-least-32-characters";

async fn dump_with(server: &Server, headers: &[(&str, &str)]) -> crate::support::Reply {
    post_dump(server, SCHEMA_ONLY, headers).await
}

/// Asserts an error answer: status, code and the words.
fn assert_refused(reply: &crate::support::Reply, status: u16, code: &str, error: &str) {
    let text = reply.text();
    let start = &text[..text.len().min(300)];
    assert_eq!(reply.status, status, "expected {error:?}: {start}");
    let body = reply.json();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["error"], error, "{body}");
}

/// How many dumps the server started, from its metrics.
async fn dumps_started(server: &Server) -> u64 {
    let text = http()
        .get(server.url("/v1/metrics"))
        .header("x-hasura-admin-secret", "s3cret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|line| line.contains("dumps_started") && line.contains("source=\"default\""))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// An HS256 secret with audience and issuer: an admin token dumps; every other token class
/// gets Hasura's error, and none of them starts a pg_dump.
#[tokio::test]
async fn jwt_admin_token_dumps_and_every_bad_token_gets_hasuras_error() {
    let db = TestDb::new().await;
    let config = json!({"type": "HS256", "key": HMAC_KEY, "audience": ["pgdump", "other"],
                        "issuer": "https://issuer.example"});
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .args(["--enabled-apis", "pgdump,metrics"])
        .env("HASURA_GRAPHQL_JWT_SECRET", &config.to_string())
        .start();
    let good = json!({"aud": "pgdump", "iss": "https://issuer.example"});
    let hmac = Signer::Hmac(HMAC_KEY);
    let admin = token(
        &hmac,
        None,
        &claims(&["admin", "user"], "admin", good.clone()),
    );
    let reply = dump_with(&server, &[("authorization", &bearer(&admin))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // A user may ask for admin only when admin is among its allowed roles.
    let user = token(
        &hmac,
        None,
        &claims(&["admin", "user"], "user", good.clone()),
    );
    let reply = dump_with(
        &server,
        &[
            ("authorization", &bearer(&user)),
            ("x-hasura-role", "admin"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(dumps_started(&server).await, 2);

    let not_admin = "You have to be an admin to access this endpoint";
    let invalid = |why: &str| format!("Could not verify JWT: {why}");
    let mut expired = claims(&["admin"], "admin", good.clone());
    expired["exp"] = json!(now(-60));
    let mut early = claims(&["admin"], "admin", good.clone());
    early["nbf"] = json!(now(600));
    let mut future = claims(&["admin"], "admin", good.clone());
    future["iat"] = json!(now(600));
    let wrong_aud = claims(
        &["admin"],
        "admin",
        json!({"aud": "else", "iss": "https://issuer.example"}),
    );
    let no_aud = claims(
        &["admin"],
        "admin",
        json!({"iss": "https://issuer.example"}),
    );
    let wrong_iss = claims(
        &["admin"],
        "admin",
        json!({"aud": "pgdump", "iss": "https://evil"}),
    );
    let admin_claims = claims(&["admin"], "admin", good.clone());
    let other_key = Signer::Hmac("another-hmac-key-of-at-least-32-chars");
    let mut tampered = token(&hmac, None, &claims(&["user"], "user", good.clone()));
    let forged = token(&hmac, None, &admin_claims);
    let forged_payload = forged.split('.').nth(1).unwrap().to_owned();
    let parts: Vec<&str> = tampered.split('.').collect();
    tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    let no_namespace = json!({"aud": "pgdump", "iss": "https://issuer.example", "exp": now(60)});
    let no_default = json!({"aud": "pgdump", "iss": "https://issuer.example",
        "https://hasura.io/jwt/claims": {"x-hasura-allowed-roles": ["admin"]}});
    type Case = (Vec<(&'static str, String)>, u16, &'static str, String);
    let auth = |token: String| vec![("authorization", bearer(&token))];
    let cases: Vec<Case> = vec![
        (
            auth(token(&hmac, None, &claims(&["user"], "user", good.clone()))),
            400,
            "access-denied",
            not_admin.to_owned(),
        ),
        (
            vec![
                (
                    "authorization",
                    bearer(&token(
                        &hmac,
                        None,
                        &claims(&["user"], "user", good.clone()),
                    )),
                ),
                ("x-hasura-role", "admin".to_owned()),
            ],
            400,
            "access-denied",
            "Your requested role is not in allowed roles".to_owned(),
        ),
        (
            auth(token(&hmac, None, &expired)),
            400,
            "invalid-jwt",
            invalid("JWTExpired"),
        ),
        (
            auth(token(&hmac, None, &early)),
            400,
            "invalid-jwt",
            invalid("JWTNotYetValid"),
        ),
        (
            auth(token(&hmac, None, &future)),
            400,
            "invalid-jwt",
            invalid("JWTIssuedAtFuture"),
        ),
        (
            auth(token(&hmac, None, &wrong_aud)),
            400,
            "invalid-jwt",
            invalid("JWTNotInAudience"),
        ),
        (
            auth(token(&hmac, None, &no_aud)),
            400,
            "invalid-jwt",
            invalid("JWTNotInAudience"),
        ),
        (
            auth(token(&hmac, None, &wrong_iss)),
            400,
            "invalid-jwt",
            invalid("JWTNotInIssuer"),
        ),
        (
            auth(token(&other_key, None, &admin_claims)),
            400,
            "invalid-jwt",
            invalid("JWSError JWSInvalidSignature"),
        ),
        (
            auth(tampered),
            400,
            "invalid-jwt",
            invalid("JWSError JWSInvalidSignature"),
        ),
        (
            auth(token(&hmac, None, &no_namespace)),
            400,
            "jwt-invalid-claims",
            "claims key: 'https://hasura.io/jwt/claims' not found".to_owned(),
        ),
        (
            auth(token(&hmac, None, &no_default)),
            400,
            "jwt-missing-role-claims",
            "JWT claim does not contain \"x-hasura-default-role\"".to_owned(),
        ),
        (
            vec![("authorization", format!("Token {admin}"))],
            400,
            "invalid-headers",
            "Malformed Authorization header".to_owned(),
        ),
        (
            vec![],
            400,
            "invalid-headers",
            "Missing 'Authorization' or 'Cookie' header in JWT authentication mode".to_owned(),
        ),
        (
            vec![("x-hasura-admin-secret", "wrong".to_owned())],
            401,
            "access-denied",
            "invalid \"x-hasura-admin-secret\"/\"x-hasura-access-key\"".to_owned(),
        ),
    ];
    for (headers, status, code, error) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = dump_with(&server, &headers).await;
        assert_refused(&reply, *status, code, error);
    }
    // `alg: none` is not a token.
    let reply = dump_with(
        &server,
        &[(
            "authorization",
            &bearer(&token(&Signer::Unsigned, None, &admin_claims)),
        )],
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["code"], "invalid-jwt");
    // The admin secret still works beside JWTs.
    let reply = dump_with(&server, &[("x-hasura-admin-secret", "s3cret")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        dumps_started(&server).await,
        3,
        "a refused token started a pg_dump"
    );
}

/// RS256, ES256 and Ed25519 keys (PEM) in a list of secrets told apart by issuer, the RSA
/// one as algorithm confusion's target: its public key used as an HMAC secret is refused.
#[tokio::test]
async fn jwt_public_keys_verify_and_algorithm_confusion_is_refused() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let rsa = mint::key(dir.path(), "rsa");
    let ec = mint::key(dir.path(), "ec");
    let ed = mint::key(dir.path(), "ed25519");
    let secrets = json!([
        {"type": "RS256", "key": rsa.public_pem, "issuer": "rsa"},
        {"type": "ES256", "key": ec.public_pem, "issuer": "ec"},
        {"type": "Ed25519", "key": ed.public_pem, "issuer": "ed"},
    ]);
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env("HASURA_GRAPHQL_JWT_SECRETS", &secrets.to_string())
        .start();
    for (signer, issuer) in [
        (Signer::Rsa(&rsa), "rsa"),
        (Signer::Ec(&ec), "ec"),
        (Signer::Ed(&ed), "ed"),
    ] {
        let admin = token(
            &signer,
            None,
            &claims(&["admin"], "admin", json!({"iss": issuer})),
        );
        let reply = dump_with(&server, &[("authorization", &bearer(&admin))]).await;
        assert_eq!(reply.status, 200, "{issuer}: {}", reply.text());
        // Signed by one key, presented as another's issuer.
        let other = if issuer == "rsa" { "ec" } else { "rsa" };
        let wrong = token(
            &signer,
            None,
            &claims(&["admin"], "admin", json!({"iss": other})),
        );
        let reply = dump_with(&server, &[("authorization", &bearer(&wrong))]).await;
        assert_eq!(reply.status, 400, "{issuer}: {}", reply.text());
        assert_eq!(reply.json()["code"], "invalid-jwt", "{issuer}");
    }
    let confused = token(
        &Signer::Hmac(&rsa.public_pem),
        None,
        &claims(&["admin"], "admin", json!({"iss": "rsa"})),
    );
    let reply = dump_with(&server, &[("authorization", &bearer(&confused))]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["code"], "invalid-jwt");
    // Two secrets could verify a token without an issuer: Hasura's ambiguity error.
    let ambiguous = token(
        &Signer::Rsa(&rsa),
        None,
        &claims(&["admin"], "admin", json!({})),
    );
    let reply = dump_with(&server, &[("authorization", &bearer(&ambiguous))]).await;
    assert_refused(
        &reply,
        400,
        "invalid-headers",
        "Could not verify JWT: Multiple JWTs found",
    );
}

/// The token from a cookie, with the claims where `claims_namespace_path` says, stringified;
/// and from a custom header with a `claims_map`; the unauthorized role without a token.
#[tokio::test]
async fn jwt_header_claims_path_format_and_map() {
    let db = TestDb::new().await;
    let cookie = json!({"type": "HS256", "key": HMAC_KEY,
        "header": {"type": "Cookie", "name": "jwt"},
        "claims_namespace_path": "$.app.hasura", "claims_format": "stringified_json"});
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env("HASURA_GRAPHQL_JWT_SECRET", &cookie.to_string())
        .env("HASURA_GRAPHQL_UNAUTHORIZED_ROLE", "anonymous")
        .start();
    let hasura = json!({"x-hasura-allowed-roles": ["admin"], "x-hasura-default-role": "admin"});
    let claims = json!({"exp": now(60), "app": {"hasura": hasura.to_string()}});
    let jwt = token(&Signer::Hmac(HMAC_KEY), None, &claims);
    let reply = dump_with(&server, &[("cookie", &format!("theme=dark; jwt={jwt}"))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let unstringified = json!({"exp": now(60), "app": {"hasura": hasura}});
    let jwt = token(&Signer::Hmac(HMAC_KEY), None, &unstringified);
    let reply = dump_with(&server, &[("cookie", &format!("jwt={jwt}"))]).await;
    assert_refused(
        &reply,
        400,
        "jwt-invalid-claims",
        "expecting a string when claims_format is stringified_json",
    );
    // No token: the unauthorized role, which is not admin.
    let reply = dump_with(&server, &[]).await;
    assert_refused(
        &reply,
        400,
        "access-denied",
        "You have to be an admin to access this endpoint",
    );
    drop(server);

    let mapped = json!({"type": "HS256", "key": HMAC_KEY,
    "header": {"type": "CustomHeader", "name": "X-Auth-Token"},
    "claims_map": {
        "x-hasura-allowed-roles": {"path": "$.roles"},
        "x-hasura-default-role": {"path": "$.roles[0]"},
        "x-hasura-user-id": {"path": "$.sub", "default": "nobody"}
    }});
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env("HASURA_GRAPHQL_JWT_SECRET", &mapped.to_string())
        .start();
    let jwt = token(
        &Signer::Hmac(HMAC_KEY),
        None,
        &json!({"roles": ["admin", "user"]}),
    );
    let reply = dump_with(&server, &[("x-auth-token", &jwt)]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let jwt = token(&Signer::Hmac(HMAC_KEY), None, &json!({"roles": ["user"]}));
    let reply = dump_with(&server, &[("x-auth-token", &jwt)]).await;
    assert_refused(
        &reply,
        400,
        "access-denied",
        "You have to be an admin to access this endpoint",
    );
    let jwt = token(&Signer::Hmac(HMAC_KEY), None, &json!({"sub": "x"}));
    let reply = dump_with(&server, &[("x-auth-token", &jwt)]).await;
    assert_refused(
        &reply,
        400,
        "jwt-missing-role-claims",
        "JWT claim does not contain \"x-hasura-allowed-roles\"",
    );
    // The Authorization header means nothing to this configuration.
    let reply = dump_with(&server, &[("authorization", &bearer(&jwt))]).await;
    assert_refused(
        &reply,
        400,
        "invalid-headers",
        "Missing 'Authorization' or 'Cookie' header in JWT authentication mode",
    );
}

// ---------------------------------------------------------------------------------------------
// Loopback servers the tests control: a JWK set, an auth webhook.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A JWK set server: what it serves, and how often it was asked.
struct Jwks {
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    url: String,
}

async fn jwks_server(set: Value, cache_control: &'static str) -> Jwks {
    let shared = Arc::new(Mutex::new(set));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, counted) = (Arc::clone(&shared), Arc::clone(&fetches));
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (served, counted) = (Arc::clone(&served), Arc::clone(&counted));
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let body = served.lock().unwrap().to_string();
                (
                    [
                        ("cache-control", cache_control),
                        ("content-type", "application/json"),
                    ],
                    body,
                )
            }
        }),
    );
    let url = format!("{}/jwks.json", serve(app).await);
    Jwks {
        set: shared,
        fetches,
        url,
    }
}

/// Keys from a `jwk_url`: a rotated key (new `kid`) is fetched without a restart, an
/// unknown `kid` is refused, and the set is fetched again when its `max-age` has passed.
#[tokio::test]
async fn jwks_rotation_is_picked_up_without_restart() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (mint::key(dir.path(), "rsa"), mint::key(dir.path(), "rsa"));
    let jwks = jwks_server(json!({"keys": [mint::rsa_jwk(&first, "one")]}), "max-age=2").await;
    let config = json!({"jwk_url": jwks.url});
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env("HASURA_GRAPHQL_JWT_SECRET", &config.to_string())
        .start();
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "fetched at startup");
    let admin = claims(&["admin"], "admin", json!({}));
    let jwt = token(&Signer::Rsa(&first), Some("one"), &admin);
    let reply = dump_with(&server, &[("authorization", &bearer(&jwt))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    *jwks.set.lock().unwrap() = json!({"keys": [mint::rsa_jwk(&second, "two")]});
    let rotated = token(&Signer::Rsa(&second), Some("two"), &admin);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = dump_with(&server, &[("authorization", &bearer(&rotated))]).await;
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.json()["code"], "invalid-jwt", "{}", reply.text());
        assert!(std::time::Instant::now() < deadline, "{}", reply.text());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let unknown = token(&Signer::Rsa(&second), Some("three"), &admin);
    let reply = dump_with(&server, &[("authorization", &bearer(&unknown))]).await;
    assert_refused(
        &reply,
        400,
        "invalid-jwt",
        "Could not verify JWT: JWSError NoUsableKeys",
    );
    // The old key left the set: its tokens are refused once the set was fetched again.
    let reply = dump_with(&server, &[("authorization", &bearer(&jwt))]).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    // max-age=2: a request after it fetches the set again.
    let before = jwks.fetches.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = dump_with(&server, &[("authorization", &bearer(&rotated))]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(jwks.fetches.load(Ordering::SeqCst) > before);
}

/// A JWK set that cannot be fetched at startup stops it.
#[test]
fn unreachable_jwk_url_stops_startup() {
    let config = json!({"jwk_url": "http://127.0.0.1:1/jwks.json"}).to_string();
    let (running, stderr) = run_serve(&[
        ("HASURA_GRAPHQL_ADMIN_SECRET", "s3cret"),
        ("HASURA_GRAPHQL_JWT_SECRET", &config),
    ]);
    assert!(!running);
    assert!(
        stderr.contains("could not fetch the JWK set from http://127.0.0.1:1/jwks.json"),
        "{stderr}"
    );
}

/// The webhook's decision from the caller's Authorization header, in either mode; `POST`
/// bodies must hold the headers and a null `request`.
async fn hook_server() -> String {
    async fn decide(authorization: Option<String>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let json = |value: Value| {
            ([("content-type", "application/json")], value.to_string()).into_response()
        };
        match authorization.as_deref() {
            Some("Bearer admin") => {
                json(json!({"X-Hasura-Role": "admin", "X-Hasura-User-Id": "1"}))
            }
            Some("Bearer user") => json(json!({"x-hasura-role": "user"})),
            Some("Bearer norole") => json(json!({"x-hasura-user-id": "1"})),
            Some("Bearer garbage") => (axum::http::StatusCode::OK, "not json").into_response(),
            Some("Bearer boom") => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            Some("Bearer slow") => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                json(json!({"x-hasura-role": "admin"}))
            }
            _ => axum::http::StatusCode::UNAUTHORIZED.into_response(),
        }
    }
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::get(|headers: axum::http::HeaderMap| async move {
            // Hasura leaves these out of what it forwards.
            assert!(headers.get("content-type").is_none());
            let authorization = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            decide(authorization).await
        })
        .post(|body: String| async move {
            let body: Value = serde_json::from_str(&body).unwrap();
            assert!(body["request"].is_null(), "{body}");
            let authorization = body["headers"]["authorization"].as_str().map(str::to_owned);
            decide(authorization).await
        }),
    );
    format!("{}/hook", serve(app).await)
}

/// The auth webhook in GET and POST modes: allow, deny, errors and a timeout.
#[tokio::test]
async fn auth_hook_allows_denies_and_fails_as_hasura() {
    let db = TestDb::new().await;
    let hook = hook_server().await;
    for mode in ["GET", "POST"] {
        let server = Server::builder(&db.url)
            .secret("s3cret")
            .env("HASURA_GRAPHQL_AUTH_HOOK", &hook)
            .env("HASURA_GRAPHQL_AUTH_HOOK_MODE", mode)
            .env("HASURA_GRAPHQL_AUTH_HOOK_TIMEOUT", "1")
            .start();
        let reply = dump_with(&server, &[("authorization", "Bearer admin")]).await;
        assert_eq!(reply.status, 200, "{mode}: {}", reply.text());
        let cases: [(&str, u16, &str, &str); 7] = [
            (
                "Bearer user",
                400,
                "access-denied",
                "You have to be an admin to access this endpoint",
            ),
            (
                "Bearer nope",
                401,
                "access-denied",
                "Authentication hook unauthorized this request",
            ),
            (
                "Bearer boom",
                500,
                "unexpected",
                "Invalid response from authorization hook",
            ),
            (
                "Bearer slow",
                500,
                "unexpected",
                "webhook authentication request failed",
            ),
            (
                "Bearer norole",
                400,
                "invalid-params",
                "\"x-hasura-role\" not found in session variables",
            ),
            (
                "",
                401,
                "access-denied",
                "Authentication hook unauthorized this request",
            ),
            ("Bearer garbage", 500, "unexpected", ""),
        ];
        for (authorization, status, code, error) in cases {
            let headers: Vec<(&str, &str)> = match authorization {
                "" => vec![],
                value => vec![("authorization", value)],
            };
            let reply = dump_with(&server, &headers).await;
            if error.is_empty() {
                assert_eq!(
                    reply.status,
                    status,
                    "{mode} {authorization}: {}",
                    reply.text()
                );
                let text = reply.json()["error"].as_str().unwrap().to_owned();
                assert!(
                    text.starts_with("Invalid response from authorization hook: "),
                    "{text}"
                );
            } else {
                assert_refused(&reply, status, code, error);
            }
        }
        // The admin secret is checked first, without asking the hook.
        let reply = dump_with(
            &server,
            &[
                ("x-hasura-admin-secret", "s3cret"),
                ("authorization", "Bearer nope"),
            ],
        )
        .await;
        assert_eq!(reply.status, 200, "{mode}: {}", reply.text());
    }
}

/// A flood of requests asks the webhook a bounded number at a time; those that cannot get a
/// turn within the hook's timeout are told so (503), and every request gets an answer.
#[tokio::test]
async fn a_flood_of_requests_asks_the_hook_a_few_at_a_time() {
    let db = TestDb::new().await;
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (counting, highest) = (Arc::clone(&now), Arc::clone(&most));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::get(move || {
            let (now, most) = (Arc::clone(&counting), Arc::clone(&highest));
            async move {
                let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(at_once, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(400)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                (
                    [("content-type", "application/json")],
                    json!({"x-hasura-role": "user"}).to_string(),
                )
            }
        }),
    );
    let hook = format!("{}/hook", serve(app).await);
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env("HASURA_GRAPHQL_AUTH_HOOK", &hook)
        .env("HASURA_GRAPHQL_AUTH_HOOK_TIMEOUT", "1")
        .start();
    let requests = (0..300).map(|_| dump_with(&server, &[("authorization", "Bearer x")]));
    let replies = futures_util::future::join_all(requests).await;
    let (mut judged, mut busy) = (0, 0);
    for reply in &replies {
        match reply.status {
            400 => {
                assert_refused(
                    reply,
                    400,
                    "access-denied",
                    "You have to be an admin to access this endpoint",
                );
                judged += 1;
            }
            _ => {
                assert_refused(
                    reply,
                    503,
                    "unexpected",
                    "too many requests are waiting for the authentication webhook",
                );
                busy += 1;
            }
        }
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 64, "{most} calls to the hook at once");
    // 64 at a time, 0.4 s each, 1 s to wait for a turn: two rounds judged, the rest turned away.
    assert!(
        judged >= 64 && busy > 0,
        "{judged} judged, {busy} turned away"
    );
    // And the server goes on serving.
    let reply = dump_with(&server, &[("x-hasura-admin-secret", "s3cret")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// Requests the webhook keeps waiting never take the last connections: with a hook that never
/// answers and every connection of the cap asked for by bearer-token callers, a caller with
/// the admin secret still dumps at once, and the callers past the limit are told to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_hangs_never_locks_out_the_admin_secret() {
    let db = TestDb::new().await;
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(120)).await;
            ""
        }),
    );
    let hook = format!("{}/hook", serve(app).await);
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env("HASURA_GRAPHQL_AUTH_HOOK", &hook)
        .env("HASURA_GRAPHQL_AUTH_HOOK_TIMEOUT", "60")
        .args(["--max-connections", "16"])
        .start();
    // More than the cap asks: 8 wait on the hook, the rest are turned away at once.
    let waiting: Vec<_> = (0..24)
        .map(|_| {
            let url = server.url("/v1alpha1/pg_dump");
            tokio::spawn(async move {
                let sent = http().post(url).header("authorization", "Bearer x");
                match sent.body(SCHEMA_ONLY).send().await {
                    Ok(response) => Some(response.status().as_u16()),
                    Err(_) => None,
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    let reply = dump_with(&server, &[("x-hasura-admin-secret", "s3cret")]).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    // Eight wait on the hook; the others were told to retry, or, at the cap, closed before
    // their request was read (idle connections are shed first).
    let on_the_hook = waiting
        .iter()
        .filter(|request| !request.is_finished())
        .count();
    assert_eq!(on_the_hook, 8, "bearer requests waiting on the hook");
    let mut told_to_retry = 0;
    for request in waiting.into_iter().filter(|request| request.is_finished()) {
        match request.await.unwrap() {
            Some(503) => told_to_retry += 1,
            None => {}
            other => panic!("a bearer request answered {other:?} while the hook hangs"),
        }
    }
    assert!(told_to_retry > 0, "no request was told to retry");
}

/// The dump page's endpoints take the same credentials as the dump: a JWT admin may list the
/// sources, a JWT user may not.
#[tokio::test]
async fn page_endpoints_accept_a_jwt_admin() {
    let db = TestDb::new().await;
    let config = json!({"type": "HS256", "key": HMAC_KEY});
    let server = Server::builder(&db.url)
        .secret("s3cret")
        .env("HASURA_GRAPHQL_JWT_SECRET", &config.to_string())
        .start();
    let hmac = Signer::Hmac(HMAC_KEY);
    for (role, status) in [("admin", 200), ("user", 400)] {
        let token = token(&hmac, None, &claims(&[role], role, json!({})));
        let response = http()
            .get(server.url("/v1alpha1/pg_dump/sources"))
            .header("authorization", bearer(&token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{role}");
    }
}
