use super::*;
use clap::FromArgMatches;

/// `serve`'s flags from `args` alone: the environment variables are not read, so that a
/// developer's own `HASURA_GRAPHQL_*` settings cannot change what a test sees.
pub(crate) fn serve(args: &[&str]) -> ServeArgs {
    let command =
        ServeArgs::augment_args(clap::Command::new("serve")).mut_args(|arg| arg.env(None));
    let argv = ["serve"].iter().chain(args);
    let matches = command.try_get_matches_from(argv).expect("valid flags");
    ServeArgs::from_arg_matches(&matches).expect("valid flags")
}

#[test]
fn enabled_apis_are_trimmed_and_case_insensitive() {
    let apis = EnabledApis::parse(" PgDump , metrics").unwrap();
    assert!(apis.contains(Api::Pgdump));
    assert!(apis.contains(Api::Metrics));
    assert!(!apis.contains(Api::Config));
}

#[test]
fn unknown_or_empty_api_names_the_accepted_list() {
    for list in ["pgdump,nope", "pgdump,,config", ""] {
        let err = EnabledApis::parse(list).unwrap_err().to_string();
        assert!(
            err.contains("metadata, graphql, pgdump, developer, config, metrics"),
            "{err}"
        );
    }
}

#[test]
fn defaults_match_the_reference() {
    let config = Config::from_args(serve(&[])).unwrap();
    assert_eq!(config.listen.host, "*");
    assert_eq!(config.listen.port, 8080);
    assert!(config.admin_internal_errors);
    assert!(!config.dev_mode);
    assert_eq!(config.log_level, LogLevel::Info);
    assert!(config.enabled_apis.contains(Api::Pgdump));
    assert!(!config.enabled_apis.contains(Api::Metrics));
    assert_eq!(
        config.limits,
        DumpLimits {
            max_concurrent: 4,
            max_queue: 32,
            max_concurrent_cluster: 0,
            timeout: None
        }
    );
    assert_eq!(config.graceful_shutdown_timeout, Duration::from_secs(60));
    assert_eq!(
        config.schema_sync_poll_interval,
        Some(Duration::from_millis(1000))
    );
    let off = Config::from_args(serve(&["--schema-sync-poll-interval", "0"])).unwrap();
    assert_eq!(off.schema_sync_poll_interval, None);
    assert_eq!(config.max_connections, None);
    let config = Config::from_args(serve(&["--max-connections", "300"])).unwrap();
    assert_eq!(config.max_connections, Some(300));
    assert_eq!(config.send_timeout, Duration::from_secs(60));
}

#[test]
fn the_cluster_limit_is_off_by_default_and_bounded() {
    let config = Config::from_args(serve(&["--pg-dump-max-concurrent-cluster", "3"])).unwrap();
    assert_eq!(config.limits.max_concurrent_cluster, 3);
    let command =
        ServeArgs::augment_args(clap::Command::new("serve")).mut_args(|arg| arg.env(None));
    let too_many =
        command.try_get_matches_from(["serve", "--pg-dump-max-concurrent-cluster", "1025"]);
    assert!(too_many.is_err());
}

#[test]
fn upstream_is_an_http_url_with_an_optional_base_path() {
    let of = |url: &str| Config::from_args(serve(&["--upstream", url]));
    let config = of("http://hasura:8080/").unwrap();
    assert_eq!(config.upstream.unwrap().to_string(), "http://hasura:8080/");
    let config = of("http://hasura/base/").unwrap();
    assert_eq!(config.upstream.unwrap().path(), "/base");
    assert_eq!(of("").unwrap().upstream, None);
    for bad in [
        "hasura:8080",
        "https://hasura",
        "http://hasura/?a=1",
        "ftp://x",
    ] {
        let err = format!("{:#}", of(bad).unwrap_err());
        assert!(err.contains("--upstream"), "{bad}: {err}");
    }
}

#[test]
fn boolean_flags_take_an_optional_value() {
    let config =
        Config::from_args(serve(&["--dev-mode", "--admin-internal-errors", "false"])).unwrap();
    assert!(config.dev_mode);
    assert!(!config.admin_internal_errors);
}

#[test]
fn access_key_is_the_fallback_secret() {
    let config = Config::from_args(serve(&["--access-key", "old"])).unwrap();
    assert_eq!(
        config.auth,
        AuthMode::Secret {
            secrets: vec![Secret::new("old")],
            unauthorized_role: None
        }
    );
    let config =
        Config::from_args(serve(&["--access-key", "old", "--admin-secret", "new"])).unwrap();
    assert!(
        matches!(config.auth, AuthMode::Secret { secrets, .. } if secrets == [Secret::new("new")])
    );
}

#[test]
fn empty_admin_secret_is_a_startup_error() {
    for flag in ["--admin-secret", "--access-key"] {
        let err = Config::from_args(serve(&[flag, ""]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is set but empty"), "{err}");
        assert!(err.contains(flag), "{err}");
    }
}

#[test]
fn unauthorized_role_admin_is_a_startup_error() {
    let args = ["--admin-secret", "s", "--unauthorized-role", "admin"];
    let err = Config::from_args(serve(&args)).unwrap_err().to_string();
    assert!(err.contains("must not be admin"), "{err}");
}

#[test]
fn unauthorized_role_without_a_secret_is_a_startup_error() {
    let err = Config::from_args(serve(&["--unauthorized-role", "anonymous"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("Fatal Error: --unauthorized-role (HASURA_GRAPHQL_UNAUTHORIZED_ROLE) requires --admin-secret"),
        "{err}"
    );
    // An empty role is no role.
    assert_eq!(
        Config::from_args(serve(&["--unauthorized-role", ""]))
            .unwrap()
            .auth,
        AuthMode::Open
    );
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let config = Config::from_args(serve(&[
        "--admin-secret",
        "hunter2",
        "--database-url",
        "postgres://u:pw@h/db",
    ]))
    .unwrap();
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("pw@"),
        "{debug}"
    );
}

fn startup_error(args: &[&str]) -> String {
    Config::from_args(serve(args)).unwrap_err().to_string()
}

#[test]
fn hasura_fatal_auth_combinations_stop_startup() {
    let jwt = r#"{"type":"HS256","key":"an-hmac-key-of-32-characters-xx"}"#;
    let cases: [(&[&str], &str); 6] = [
        (
            &["--jwt-secret", jwt],
            "Fatal Error : --jwt-secret (HASURA_GRAPHQL_JWT_SECRET) requires --admin-secret",
        ),
        (
            &["--jwt-secrets", "[]"],
            "Fatal Error : --jwt-secret (HASURA_GRAPHQL_JWT_SECRET) requires --admin-secret",
        ),
        (
            &["--auth-hook", "http://127.0.0.1:1/hook"],
            "Fatal Error : --auth-hook (HASURA_GRAPHQL_AUTH_HOOK) requires --admin-secret",
        ),
        (
            &[
                "--admin-secret",
                "s",
                "--auth-hook",
                "http://h/",
                "--jwt-secret",
                jwt,
            ],
            "Fatal Error: Both webhook and JWT mode cannot be enabled at the same time",
        ),
        (
            &["--auth-hook", "http://h/", "--jwt-secret", jwt],
            "Fatal Error: Both webhook and JWT mode cannot be enabled at the same time",
        ),
        (
            &[
                "--admin-secret",
                "s",
                "--auth-hook",
                "http://h/",
                "--unauthorized-role",
                "anon",
            ],
            "is not allowed when --auth-hook (HASURA_GRAPHQL_AUTH_HOOK) is set",
        ),
    ];
    for (args, expected) in cases {
        let err = startup_error(args);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

#[test]
fn admin_secrets_list_adds_to_the_secret() {
    let config = Config::from_args(serve(&[
        "--admin-secret",
        "a",
        "--admin-secrets",
        r#"["b", "c"]"#,
    ]))
    .unwrap();
    let AuthMode::Secret { secrets, .. } = config.auth else {
        panic!("open");
    };
    assert_eq!(secrets, ["a", "b", "c"].map(Secret::new));
    let config = Config::from_args(serve(&["--admin-secrets", r#"["b"]"#])).unwrap();
    assert!(matches!(config.auth, AuthMode::Secret { .. }));
}

#[test]
fn bad_admin_secrets_list_stops_startup_without_showing_it() {
    for (list, expected) in [
        ("[]", "is set but empty"),
        (r#"["ok", ""]"#, "holds an empty secret"),
        ("", "must be a JSON list"),
        ("hunter2", "must be a JSON list"),
        (r#"{"a":"hunter2"}"#, "must be a JSON list"),
    ] {
        let err = startup_error(&["--admin-secrets", list]);
        assert!(err.contains(expected), "{list}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn unhonoured_auth_variables_are_found() {
    let declared = [
        "HASURA_GRAPHQL_ADMIN_SECRET",
        "HASURA_GRAPHQL_METRICS_SECRET",
    ];
    let found = |vars: &[&'static str]| unhonoured_auth_variable(vars.iter().copied(), &declared);
    assert_eq!(found(&["PATH", "HASURA_GRAPHQL_ADMIN_SECRET"]), None);
    assert_eq!(found(&["HASURA_GRAPHQL_SERVER_PORT", "JWT_SECRET"]), None);
    for var in [
        "HASURA_GRAPHQL_JWT_SECRET_X",
        "HASURA_GRAPHQL_AUTH_HOOK_TIMEOUT",
        "HASURA_GRAPHQL_CORS_ALLOW",
        "HASURA_GRAPHQL_DEFAULT_ROLE",
        "HASURA_GRAPHQL_ADMIN_SECRETS_FILE",
    ] {
        assert_eq!(found(&["HASURA_GRAPHQL_ADMIN_SECRET", var]), Some(var));
    }
    // Every auth and CORS variable of Hasura's own is declared.
    let declared = ServeArgs::variables();
    let declared: Vec<&str> = declared.iter().map(String::as_str).collect();
    let hasura = [
        "HASURA_GRAPHQL_ADMIN_SECRET",
        "HASURA_GRAPHQL_ADMIN_SECRETS",
        "HASURA_GRAPHQL_ACCESS_KEY",
        "HASURA_GRAPHQL_UNAUTHORIZED_ROLE",
        "HASURA_GRAPHQL_JWT_SECRET",
        "HASURA_GRAPHQL_JWT_SECRETS",
        "HASURA_GRAPHQL_AUTH_HOOK",
        "HASURA_GRAPHQL_AUTH_HOOK_MODE",
        "HASURA_GRAPHQL_AUTH_HOOK_SEND_REQUEST_BODY",
        "HASURA_GRAPHQL_CORS_DOMAIN",
        "HASURA_GRAPHQL_DISABLE_CORS",
        "HASURA_GRAPHQL_WS_READ_COOKIE",
        // The client's, in a shell that also starts the server.
        "HASURA_GRAPHQL_CERTIFICATE_AUTHORITY",
    ];
    assert_eq!(unhonoured_auth_variable(hasura, &declared), None);
}

#[test]
fn invalid_cors_domain_and_hook_mode_stop_startup() {
    let err = startup_error(&["--cors-domain", "localhost:3000"]);
    assert!(err.contains("invalid domain: 'localhost:3000'"), "{err}");
    let err = startup_error(&["--auth-hook-mode", "PUT"]);
    assert!(err.contains("expected GET or POST"), "{err}");
}
