//! The HTTP side of the client: one `POST /v1alpha1/pg_dump` to any server that speaks the
//! PG Dump API, its error answers made readable, and its body streamed into a writer chunk by
//! chunk. A body that ends early — the connection closed before the terminating chunk, or a
//! gzip stream cut short — is an error, never the end of a dump.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Response, Url};
use serde::Serialize;

use super::args::ConnectArgs;
use super::error::{Rejected, Transport, WriteFailed};
use super::progress::Progress;

/// How much of an error answer is read; the rest is not needed to explain it.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The request body of `POST /v1alpha1/pg_dump`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct DumpRequest {
    pub opts: Vec<String>,
    pub clean_output: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A server that speaks the PG Dump API, with the headers every request carries.
pub(super) struct Endpoint {
    client: reqwest::Client,
    url: Url,
}

impl Endpoint {
    /// Prepares requests to `--endpoint` with the admin secret and the extra headers.
    pub(super) fn new(args: &ConnectArgs) -> anyhow::Result<Endpoint> {
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
    pub(super) async fn pg_dump(&self, request: &DumpRequest) -> anyhow::Result<Response> {
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
        Err(read_rejected(response).await?.into())
    }
}

impl Endpoint {
    /// One call to the metadata API (`ENDPOINT/v1/metadata`): its status and JSON answer
    /// (`null` when the answer is not JSON).
    pub(super) async fn metadata(
        &self,
        call: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), String> {
        let mut url = self.url.clone();
        let base = url.path().trim_end_matches("/v1alpha1/pg_dump").to_owned();
        url.set_path(&format!("{base}/v1/metadata"));
        let response = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(call.to_string())
            .send()
            .await
            .map_err(|err| format!("could not reach the server: {err}"))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|err| err.to_string())?;
        Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
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
pub(super) async fn copy_body(
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

/// Reads (a bounded part of) an error answer.
async fn read_rejected(mut response: Response) -> anyhow::Result<Rejected> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::args::parse_endpoint;

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
    }
}
