//! CORS as Hasura does it: which origins may call cross-origin (`HASURA_GRAPHQL_CORS_DOMAIN`,
//! `HASURA_GRAPHQL_DISABLE_CORS`), the preflight answer, and the headers added to every other
//! answer for an allowed origin, errors included.
//!
//! tower-http's CORS layer does not fit: it answers a preflight with 200 rather than Hasura's
//! 204, answers preflights of refused origins itself, and adds `Vary`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Which origins get CORS headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cors {
    /// `HASURA_GRAPHQL_DISABLE_CORS`: none; requests pass through untouched.
    Disabled,
    /// `*`: every origin.
    AllowAll,
    /// A list: exact origins (`scheme://host[:port]`) and wildcards (`scheme://*.host[:port]`).
    Origins {
        exact: Vec<String>,
        wildcards: Vec<Domain>,
    },
}

/// An origin cut into its parts, as Hasura compares wildcard domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Domain {
    /// With its `://`.
    scheme: String,
    /// For a wildcard, the host after `*.`.
    host: String,
    port: Option<u32>,
}

/// Methods named in `Access-Control-Allow-Methods`.
const METHODS: &str = "GET,POST,PUT,PATCH,DELETE,OPTIONS";
/// Headers a browser may read: Hasura's, and the pg_dump version of a dump.
const EXPOSE: &str =
    "X-Hasura-Query-Cache-Key,X-Hasura-Query-Family-Cache-Key,Warning,X-Pg-Dump-Version";
/// Seconds a preflight answer may be cached (20 days, as Hasura).
const MAX_AGE: &str = "1728000";

impl Cors {
    /// The policy of `--cors-domain` and `--disable-cors`.
    pub(crate) fn parse(domains: Option<&str>, disabled: bool) -> Result<Cors, String> {
        if disabled {
            return Ok(Cors::Disabled);
        }
        let domains = domains.unwrap_or("*");
        if domains == "*" {
            return Ok(Cors::AllowAll);
        }
        let mut exact = Vec::new();
        let mut wildcards = Vec::new();
        for item in domains.split(',').map(str::trim) {
            let invalid = || {
                format!(
                    "invalid domain: '{item}'. All domains should have scheme + (optional \
                     wildcard) host + (optional port)"
                )
            };
            let (scheme, rest) = split_scheme(item).ok_or_else(invalid)?;
            match rest.strip_prefix("*.") {
                Some(rest) => {
                    let (host, port) = split_port(rest).ok_or_else(invalid)?;
                    wildcards.push(Domain { scheme, host, port });
                }
                None => {
                    let (host, port) = split_port(rest).ok_or_else(invalid)?;
                    exact.push(Domain { scheme, host, port }.to_string());
                }
            }
        }
        Ok(Cors::Origins { exact, wildcards })
    }

    /// Whether `origin` gets CORS headers.
    fn allows(&self, origin: &str) -> bool {
        match self {
            Cors::Disabled => false,
            Cors::AllowAll => true,
            Cors::Origins { exact, wildcards } => {
                exact.iter().any(|allowed| allowed == origin)
                    || wildcard_parts(origin).is_some_and(|parts| wildcards.contains(&parts))
            }
        }
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// `scheme://` and the rest; a scheme is letters, digits, `+`, `.` and `-`.
fn split_scheme(text: &str) -> Option<(String, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '+' | '.' | '-'));
    valid.then(|| (format!("{scheme}://"), rest))
}

/// The host and the port after its first `:`, if any (digits only; what follows them is
/// ignored, as Hasura's parser does).
fn split_port(text: &str) -> Option<(String, Option<u32>)> {
    let Some((host, port)) = text.split_once(':') else {
        return Some((text.to_owned(), None));
    };
    if host.is_empty() {
        return None;
    }
    let digits: String = port.chars().take_while(char::is_ascii_digit).collect();
    let port = digits.parse().ok()?;
    Some((host.to_owned(), Some(port)))
}

/// An origin's parts with its first host label dropped, to compare with wildcards:
/// `https://a.example.com` is `https://` + `example.com`. An empty first label
/// (`https://.example.com`, which no browser sends) matches no wildcard.
fn wildcard_parts(origin: &str) -> Option<Domain> {
    let (scheme, rest) = split_scheme(origin)?;
    let (label, rest) = rest.split_once('.')?;
    if label.is_empty() {
        return None;
    }
    let (host, port) = split_port(rest)?;
    Some(Domain { scheme, host, port })
}

/// The middleware: a preflight from an allowed origin is answered here (204); any other
/// request from an allowed origin gets the CORS headers on its answer, whatever it is.
pub(crate) async fn layer(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let Some(origin) = origin.filter(|origin| {
        origin
            .to_str()
            .is_ok_and(|origin_text| cors.allows(origin_text))
    }) else {
        return next.run(request).await;
    };
    if request.method() == Method::OPTIONS {
        return preflight(origin, request.headers());
    }
    let mut response = next.run(request).await;
    add_headers(response.headers_mut(), origin);
    response
}

/// The answer to a preflight request.
fn preflight(origin: HeaderValue, request: &HeaderMap) -> Response {
    let requested = request
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static(""));
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    add_headers(headers, origin);
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE),
    );
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain charset=UTF-8"),
    );
    response
}

/// The headers every answer to an allowed origin carries.
fn add_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    let fixed: [(HeaderName, &'static str); 3] = [
        (header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"),
        (header::ACCESS_CONTROL_ALLOW_METHODS, METHODS),
        (header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE),
    ];
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_star_allow_every_origin() {
        assert_eq!(Cors::parse(None, false), Ok(Cors::AllowAll));
        assert_eq!(Cors::parse(Some("*"), false), Ok(Cors::AllowAll));
        assert_eq!(Cors::parse(Some("*"), true), Ok(Cors::Disabled));
        assert!(!Cors::Disabled.allows("http://a.com"));
    }

    #[test]
    fn listed_origins_match_by_scheme_host_and_port() {
        let cors = Cors::parse(
            Some("http://localhost:3000, https://app.example.com,https://*.example.org, myapp+x://*.local:8443"),
            false,
        )
        .unwrap();
        for (origin, allowed) in [
            ("http://localhost:3000", true),
            ("http://localhost:3001", false),
            ("https://localhost:3000", false),
            ("https://app.example.com", true),
            ("https://app.example.com:443", false),
            ("http://app.example.com", false),
            ("https://a.example.org", true),
            ("https://a.b.example.org", false),
            ("https://example.org", false),
            ("https://.example.org", false),
            ("https://a.example.org:8080", false),
            ("myapp+x://dev.local:8443", true),
            ("myapp+x://dev.local", false),
            ("null", false),
            ("", false),
        ] {
            assert_eq!(cors.allows(origin), allowed, "{origin}");
        }
    }

    #[test]
    fn malformed_domains_name_themselves() {
        for bad in [
            "localhost:3000",
            "http://a.com,",
            "://a.com",
            "http://a.com:x",
            "*",
        ] {
            let list = format!("http://ok.com,{bad}");
            let err = Cors::parse(Some(&list), false).unwrap_err();
            assert!(err.starts_with("invalid domain: '"), "{err}");
            assert!(err.contains("All domains should have scheme"), "{err}");
        }
    }
}
