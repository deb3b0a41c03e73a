//! PostgreSQL connection strings, split into what may appear on pg_dump's command line and the
//! password, which must not: anything in argv is readable by every local user through
//! `/proc/PID/cmdline`, so the password travels in pg_dump's environment instead. The same
//! goes for `sslpassword` (the client key's passphrase), libpq's other secret parameter.
//!
//! Both libpq forms are understood: URIs (`postgres://user:pw@host/db?sslmode=require`) and
//! keyword/value strings (`host=h password='p w'`). Everything but the password is passed on
//! unchanged.

use std::fmt;

use percent_encoding::percent_decode_str;

/// A connection string with its password held apart.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ConnInfo {
    public: String,
    password: Option<Vec<u8>>,
    ssl_password: Option<String>,
    /// Every parameter but the secrets, decoded, in order (`host`, `port` may be comma lists).
    params: Vec<(String, String)>,
}

impl ConnInfo {
    /// Splits `conninfo` into its password-free form and the password. A URI whose user
    /// name or password cannot be what was meant (an unencoded `@` or `/` in it) is refused,
    /// since libpq would read part of the password as the host or database name, and that
    /// part would reach pg_dump's command line and the logs.
    pub(crate) fn parse(conninfo: &str) -> Result<ConnInfo, UnencodedUserinfo> {
        let conninfo = conninfo.trim();
        if conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://") {
            check_userinfo(conninfo)?;
            Ok(parse_uri(conninfo))
        } else {
            Ok(parse_keywords(conninfo))
        }
    }

    /// A connection from keyword/value parameters (the password kept apart).
    pub(crate) fn from_params(params: Vec<(String, String)>, password: Option<String>) -> ConnInfo {
        ConnInfo {
            public: keyword_string(&params),
            password: password.map(String::into_bytes),
            ssl_password: None,
            params,
        }
    }

    /// The last value given for `key` (libpq: the last one wins).
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The connection string without its password: safe for argv and logs.
    pub(crate) fn public(&self) -> &str {
        &self.public
    }

    /// The password, for pg_dump's `PGPASSWORD`.
    pub(crate) fn password(&self) -> Option<&[u8]> {
        self.password.as_deref()
    }

    /// The client key's passphrase (`sslpassword`), which has no environment variable.
    pub(crate) fn ssl_password(&self) -> Option<&str> {
        self.ssl_password.as_deref()
    }

    /// Replaces every occurrence of a secret in `text` (e.g. pg_dump's stderr) by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        let password = self.password.as_deref().map(String::from_utf8_lossy);
        let secrets = [password.as_deref(), self.ssl_password.as_deref()];
        secrets
            .into_iter()
            .flatten()
            .filter(|secret| !secret.is_empty())
            .fold(text.to_owned(), |text, secret| text.replace(secret, "***"))
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("public", &self.public)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ssl_password", &self.ssl_password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A connection URI whose user name or password holds a character that must be
/// percent-encoded there. The message names no part of the URI: it may be the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the connection URI has {what}: a user name or password that holds `@`, `/`, `?` or `:` \
     must be percent-encoded (`@` as %40, `/` as %2F, `?` as %3F, `:` as %3A)"
)]
pub(crate) struct UnencodedUserinfo {
    what: &'static str,
}

/// Refuses the URIs that libpq would split inside the password: more than one `@` before the
/// first `/` (the password holds `@`), or an `@` after it, before any `?` (the password holds
/// `/`). Either way libpq would take the rest of the password for the host or the database
/// name. A database name holding `@` must then be encoded too, which libpq accepts.
fn check_userinfo(uri: &str) -> Result<(), UnencodedUserinfo> {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let before_query = rest.split('?').next().unwrap_or(rest);
    let (authority, path) =
        before_query.split_at(before_query.find('/').unwrap_or(before_query.len()));
    let ats = authority.matches('@').count();
    if ats > 1 {
        return Err(UnencodedUserinfo {
            what: "more than one `@` before the host",
        });
    }
    if path.contains('@') {
        return Err(UnencodedUserinfo {
            what: "an `@` after a `/`",
        });
    }
    Ok(())
}

/// `scheme://[user[:password]@]hosts[/dbname][?params]`, as libpq reads it: the user part
/// ends at the first `@` before any `/`, the password starts at its first `:`.
fn parse_uri(uri: &str) -> ConnInfo {
    let scheme_end = uri.find("://").map_or(0, |i| i + 3);
    let (scheme, rest) = uri.split_at(scheme_end);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let mut password = None;
    let mut ssl_password = None;
    let mut params = Vec::new();
    let mut public = String::from(scheme);
    let after_user = match rest[..authority_end].find('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = match userinfo.split_once(':') {
                Some((user, pw)) => {
                    password = Some(decode(pw));
                    user
                }
                None => userinfo,
            };
            if !user.is_empty() {
                params.push(("user".to_owned(), decode_text(user)));
            }
            public.push_str(user);
            public.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    let (path, query) = match after_user.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (after_user, None),
    };
    public.push_str(path);
    let (hosts, dbname) = path.split_once('/').unwrap_or((path, ""));
    params.extend(host_params(hosts));
    if !dbname.is_empty() {
        params.push(("dbname".to_owned(), decode_text(dbname)));
    }
    if let Some(query) = query {
        let mut kept = Vec::new();
        for param in query.split('&') {
            match param.split_once('=') {
                Some((key, value)) if decode(key) == b"password" => password = Some(decode(value)),
                Some((key, value)) if decode(key) == b"sslpassword" => {
                    ssl_password = Some(decode_text(value));
                }
                Some((key, value)) => {
                    params.push((decode_text(key), decode_text(value)));
                    kept.push(param);
                }
                None => kept.push(param),
            }
        }
        if !kept.is_empty() {
            public.push('?');
            public.push_str(&kept.join("&"));
        }
    }
    ConnInfo {
        public,
        password,
        ssl_password,
        params,
    }
}

/// `h1:5432,[::1]:5433,h3` → `host=h1,::1,h3` and `port=5432,5433,` (libpq's comma lists).
fn host_params(hosts: &str) -> Vec<(String, String)> {
    if hosts.is_empty() {
        return Vec::new();
    }
    let (mut names, mut ports) = (Vec::new(), Vec::new());
    for spec in hosts.split(',') {
        let (name, port) = match spec.strip_prefix('[').and_then(|v6| v6.split_once(']')) {
            Some((name, rest)) => (name, rest.strip_prefix(':').unwrap_or("")),
            None => spec.split_once(':').unwrap_or((spec, "")),
        };
        names.push(decode_text(name));
        ports.push(decode_text(port));
    }
    let mut params = vec![("host".to_owned(), names.join(","))];
    if ports.iter().any(|port| !port.is_empty()) {
        params.push(("port".to_owned(), ports.join(",")));
    }
    params
}

fn decode_text(text: &str) -> String {
    String::from_utf8_lossy(&decode(text)).into_owned()
}

fn decode(text: &str) -> Vec<u8> {
    percent_decode_str(text).collect()
}

/// `key = value` pairs separated by white space; values may be single-quoted, and `\` escapes
/// the next character either way.
fn parse_keywords(conninfo: &str) -> ConnInfo {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut password = None;
    let mut ssl_password = None;
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        // A key without `=` is malformed; keep it so that pg_dump reports the problem.
        let has_value = chars.next_if_eq(&'=').is_some();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                match c {
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        }
        if key == "password" && has_value {
            password = Some(value.into_bytes());
        } else if key == "sslpassword" && has_value {
            ssl_password = Some(value);
        } else {
            pairs.push((key, value));
        }
    }
    ConnInfo {
        public: keyword_string(&pairs),
        password,
        ssl_password,
        params: pairs,
    }
}

/// `key='value' …`, quoted so that any value survives.
fn keyword_string(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(key, value)| {
            let value = value.replace('\\', "\\\\").replace('\'', "\\'");
            format!("{key}='{value}'")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(conninfo: &str) -> (String, Option<String>) {
        let info = ConnInfo::parse(conninfo).unwrap();
        let password = info
            .password()
            .map(|p| String::from_utf8(p.to_vec()).unwrap());
        (info.public().to_owned(), password)
    }

    #[test]
    fn uri_password_moves_out_and_everything_else_stays() {
        let cases = [
            (
                "postgres://alice:s3cret@db.example:5433/app?sslmode=require&application_name=x",
                "postgres://alice@db.example:5433/app?sslmode=require&application_name=x",
                Some("s3cret"),
            ),
            (
                "postgresql://alice:p%40ss%3Aw%2Fd@h/db",
                "postgresql://alice@h/db",
                Some("p@ss:w/d"),
            ),
            ("postgresql://alice@h/db", "postgresql://alice@h/db", None),
            (
                "postgresql:///db?host=/tmp/sock",
                "postgresql:///db?host=/tmp/sock",
                None,
            ),
            (
                "postgresql://h1:5432,h2:5433/db?target_session_attrs=read-write",
                "postgresql://h1:5432,h2:5433/db?target_session_attrs=read-write",
                None,
            ),
            (
                "postgresql://u@h/db?password=pw&sslmode=verify-full&sslrootcert=/ca.pem",
                "postgresql://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem",
                Some("pw"),
            ),
            ("postgresql://u:pw@h", "postgresql://u@h", Some("pw")),
            ("postgresql://:pw@h/db", "postgresql://@h/db", Some("pw")),
            ("postgres://u:@h/db", "postgres://u@h/db", Some("")),
        ];
        for (input, public, password) in cases {
            assert_eq!(
                split(input),
                (public.to_owned(), password.map(str::to_owned)),
                "{input}"
            );
        }
    }

    #[test]
    fn keyword_password_moves_out_and_values_are_requoted() {
        assert_eq!(
            split("host=/var/run/pg port = 5433 dbname='my db' password='it\\'s secret' sslmode=disable"),
            (
                "host='/var/run/pg' port='5433' dbname='my db' sslmode='disable'".to_owned(),
                Some("it's secret".to_owned())
            )
        );
        assert_eq!(
            split("dbname=app user=a\\ b"),
            ("dbname='app' user='a b'".to_owned(), None)
        );
    }

    #[test]
    fn sslpassword_moves_out_too() {
        let info = ConnInfo::parse("postgres://u:pw@h/db?sslpassword=k3y&sslmode=require").unwrap();
        assert_eq!(info.public(), "postgres://u@h/db?sslmode=require");
        assert_eq!(info.ssl_password(), Some("k3y"));
        assert!(!format!("{info:?}").contains("k3y"));
        assert_eq!(info.redact("pw and k3y"), "*** and ***");
        let info = ConnInfo::parse("host=h sslpassword='a b' dbname=d").unwrap();
        assert_eq!(info.public(), "host='h' dbname='d'");
        assert_eq!(info.ssl_password(), Some("a b"));
    }

    #[test]
    fn debug_and_redact_hide_the_password() {
        let info = ConnInfo::parse("postgres://u:topsecret@h/db").unwrap();
        assert!(!format!("{info:?}").contains("topsecret"));
        assert_eq!(
            info.redact("FATAL: bad password topsecret"),
            "FATAL: bad password ***"
        );
    }

    #[test]
    fn password_with_unencoded_at_or_slash_is_refused_without_naming_it() {
        for (uri, secret) in [
            ("postgres://u:Zq9@Wk4@h/db", "Wk4"),
            ("postgres://u:Zq9/Wk4@h/db", "Wk4"),
            (
                "postgresql://u:Zq9/Wk4/Xv7@h:5432/db?sslmode=require",
                "Xv7",
            ),
            ("postgres://u:Zq9@Wk4/Xv7@h/db", "Xv7"),
        ] {
            let err = ConnInfo::parse(uri).unwrap_err().to_string();
            assert!(err.contains("must be percent-encoded"), "{uri}: {err}");
            for part in ["Zq9", secret] {
                assert!(!err.contains(part), "{uri}: {err}");
            }
        }
        // Encoded, and `@` or `/` in the query, are fine.
        for uri in [
            "postgres://u:p%40ss%2F@h/db",
            "postgres://u@h/db?options=-c%20x=1&application_name=a@b/c",
            "postgresql:///db?host=/tmp/sock",
            "postgres://h/db",
        ] {
            assert!(ConnInfo::parse(uri).is_ok(), "{uri}");
        }
    }
}
