//! The HTTP side of the client: one `POST /v1alpha1/pg_dump` to any server that speaks the
//! PG Dump API, its error answers made readable, and its body streamed into a writer chunk by
//! chunk. A body that ends early — the connection closed before the terminating chunk, or a
//! gzip stream cut short — is an error, never the end of a dump.

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use anyhow::Context;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Response, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use super::args::ConnectArgs;
use super::progress::Progress;
use super::Transport;

/// How much of an error answer is read; the rest is not needed to explain it.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The request body of `POST /v1alpha1/pg_dump`.
#[derive(Debug, Clone, Serialize)]
pub struct DumpRequest {
    pub opts: Vec<String>,
    pub clean_output: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A server that speaks the PG Dump API, with the headers every request carries.
pub struct Endpoint {
    client: reqwest::Client,
    url: Url,
}

impl Endpoint {
    /// Prepares requests to `--endpoint` with the admin secret and the extra headers.
    pub fn new(args: &ConnectArgs) -> anyhow::Result<Endpoint> {
        let mut headers = HeaderMap::new();
        if let Some(secret) = &args.admin_secret {
            let mut value = HeaderValue::from_str(secret.expose())
                .context("the admin secret is not a valid HTTP header value")?;
            value.set_sensitive(true);
            headers.insert("x-hasura-admin-secret", value);
        }
        for (name, value) in &args.headers {
            headers.insert(name.clone(), value.clone());
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("pgdump-api/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            // A redirect would carry the admin secret to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            // A dump may stay silent for long (pg_dump waiting for a lock); keepalives tell a
            // quiet server from a vanished one.
            .tcp_keepalive(Duration::from_secs(30))
            .tcp_keepalive_interval(Duration::from_secs(10))
            .tcp_keepalive_retries(6)
            .build()
            .context("could not set up the HTTP client")?;
        let url = endpoint_url(&args.endpoint);
        Ok(Endpoint { client, url })
    }

    /// Sends the request and returns the response once its status says a dump follows.
    pub async fn pg_dump(&self, request: &DumpRequest) -> anyhow::Result<Response> {
        let body = serde_json::to_vec(request).expect("a dump request serialises");
        let response = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| Transport::new("could not reach the server", err))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(Rejected::read(response).await?.into())
    }
}

/// `ENDPOINT/v1alpha1/pg_dump`, keeping any path prefix the endpoint has.
fn endpoint_url(endpoint: &Url) -> Url {
    let mut url = endpoint.clone();
    let path = format!("{}/v1alpha1/pg_dump", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url
}

/// Streams the response body into `out`, showing progress; returns the number of bytes.
pub async fn copy_body(
    mut response: Response,
    out: &mut impl Write,
    progress: &Progress,
) -> anyhow::Result<u64> {
    let mut total = 0u64;
    progress.receiving();
    loop {
        let chunk = response.chunk().await.map_err(|err| {
            Transport::new(
                format!("the response ended after {total} bytes, before the dump was complete"),
                err,
            )
        })?;
        let Some(chunk) = chunk else {
            break;
        };
        out.write_all(&chunk).map_err(WriteFailed)?;
        total += chunk.len() as u64;
        progress.advance(chunk.len() as u64);
    }
    out.flush().map_err(WriteFailed)?;
    Ok(total)
}

/// Writing the dump failed on our side.
#[derive(Debug, thiserror::Error)]
#[error("could not write the dump")]
pub struct WriteFailed(#[source] pub io::Error);

/// The server answered with an error status: what it said, readably.
#[derive(Debug)]
pub struct Rejected {
    pub status: StatusCode,
    pub code: Option<String>,
    pub error: Option<String>,
    pub internal: Option<String>,
    /// The body, when it is not a JSON error (a proxy's HTML page, say).
    pub other: Option<String>,
    pub location: Option<String>,
}

impl Rejected {
    /// Reads (a bounded part of) an error answer.
    async fn read(mut response: Response) -> anyhow::Result<Rejected> {
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_LIMIT {
            let chunk = response.chunk().await.map_err(|err| {
                Transport::new(format!("could not read the server's {status} answer"), err)
            })?;
            match chunk {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        Ok(Rejected::from_body(status, &body, location))
    }

    /// Picks `code`, `error` and `internal` out of a Hasura-shaped JSON error.
    pub fn from_body(status: StatusCode, body: &[u8], location: Option<String>) -> Rejected {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let field = |name: &str| -> Option<String> {
            match json.as_ref()?.get(name)? {
                Value::Null => None,
                Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            }
        };
        let (code, error, internal) = (field("code"), field("error"), field("internal"));
        let other = (code.is_none() && error.is_none())
            .then(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let mut end = text.len().min(500);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text[..end].to_owned()
            })
            .filter(|text| !text.is_empty());
        Rejected {
            status,
            code,
            error,
            internal,
            other,
            location,
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server rejected the request: HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, ", code {code:?}")?;
        }
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        if let Some(other) = &self.other {
            write!(f, ": {other}")?;
        }
        if let Some(location) = self
            .location
            .as_ref()
            .filter(|_| self.status.is_redirection())
        {
            write!(f, " (redirected to {location})")?;
        }
        // Shown when it adds to `error` (pg_dump's stderr often is the error itself).
        let internal = self.internal.as_deref().map(str::trim_end);
        if let Some(internal) = internal.filter(|i| Some(*i) != self.error.as_deref()) {
            write!(f, "\ninternal: {internal}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejected {}

/// Reads `Name: value` into a header.
pub fn parse_header(input: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = input
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {input:?}"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name {:?}", name.trim()))?;
    let mut value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid value for header {name}"))?;
    // It may be a credential (Authorization, a cookie): keep it out of Debug output.
    value.set_sensitive(true);
    Ok((name, value))
}

/// Reads an `http://` or `https://` URL.
pub fn parse_endpoint(input: &str) -> Result<Url, String> {
    let url = Url::parse(input).map_err(|err| format!("{err}"))?;
    match url.scheme() {
        "http" | "https" if url.has_host() => Ok(url),
        _ => Err("expected an http:// or https:// URL".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_keeps_its_path_prefix() {
        for (endpoint, url) in [
            (
                "http://localhost:8080",
                "http://localhost:8080/v1alpha1/pg_dump",
            ),
            (
                "https://h.example/hasura/",
                "https://h.example/hasura/v1alpha1/pg_dump",
            ),
            ("http://h/x?y=1", "http://h/x/v1alpha1/pg_dump"),
        ] {
            assert_eq!(
                endpoint_url(&parse_endpoint(endpoint).unwrap()).as_str(),
                url
            );
        }
        assert!(parse_endpoint("localhost:8080").is_err());
        assert!(parse_endpoint("ftp://h").is_err());
    }

    #[test]
    fn headers_are_name_colon_value() {
        let (name, value) = parse_header("X-Hasura-Role: admin").unwrap();
        assert_eq!(name, "x-hasura-role");
        assert_eq!(value, "admin");
        let (_, value) = parse_header("Authorization:Bearer a:b").unwrap();
        assert_eq!(value, "Bearer a:b");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn hasura_errors_read_well() {
        let body = br#"{"error":"error while executing pg_dump","path":"$","code":"unexpected","internal":"pg_dump: error: boom\n"}"#;
        let rejected = Rejected::from_body(StatusCode::INTERNAL_SERVER_ERROR, body, None);
        assert_eq!(
            rejected.to_string(),
            "the server rejected the request: HTTP 500 Internal Server Error, code \"unexpected\": \
             error while executing pg_dump\ninternal: pg_dump: error: boom"
        );
        // pg_dump's stderr that only repeats the error is not shown twice.
        let body = br#"{"error":"pg_dump: error: no match","path":"$","code":"not-found","internal":"pg_dump: error: no match\n"}"#;
        let rejected = Rejected::from_body(StatusCode::BAD_REQUEST, body, None);
        assert!(!rejected.to_string().contains("internal"), "{rejected}");
        let rejected =
            Rejected::from_body(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>\n", None);
        assert_eq!(
            rejected.to_string(),
            "the server rejected the request: HTTP 502 Bad Gateway: <html>bad gateway</html>"
        );
        let rejected = Rejected::from_body(
            StatusCode::MOVED_PERMANENTLY,
            b"",
            Some("https://h/".into()),
        );
        assert_eq!(
            rejected.to_string(),
            "the server rejected the request: HTTP 301 Moved Permanently (redirected to https://h/)"
        );
    }
}
