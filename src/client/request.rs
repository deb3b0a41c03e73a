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
use super::project::Settings;

/// The header that ties a response to the server's log line.
const REQUEST_ID: &str = "x-request-id";

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
    /// Hasura's metadata API on the same server (`ENDPOINT/v1/metadata`).
    metadata_url: Url,
}

impl Endpoint {
    /// Prepares requests to the resolved endpoint with the admin secret, the extra headers
    /// and the TLS settings.
    pub(super) fn new(settings: &Settings, args: &ConnectArgs) -> anyhow::Result<Endpoint> {
        let mut headers = HeaderMap::new();
        if let Some(secret) = &settings.admin_secret {
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
            .tcp_keepalive_retries(6);
        let client = tls(client, settings)?
            .build()
            .context("could not set up the HTTP client")?;
        Ok(Endpoint {
            client,
            url: settings.url.clone(),
            metadata_url: settings.metadata_url.clone(),
        })
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

/// Trusts what the user's machine trusts — the system's root certificates — and the
/// `certificate_authority` file; or, with `insecure_skip_tls_verify`, any certificate, said
/// loudly on stderr. Without any system root (a bare container) the built-in Mozilla roots
/// stand in.
fn tls(
    client: reqwest::ClientBuilder,
    settings: &Settings,
) -> anyhow::Result<reqwest::ClientBuilder> {
    if settings.insecure_skip_tls_verify {
        if settings.url.scheme() == "https" {
            let _ = writeln!(
                std::io::stderr(),
                "pgdump-api: WARNING: insecure_skip_tls_verify is set: the server's TLS \
                 certificate is NOT verified, so anyone on the network path can pose as {} \
                 and read the admin secret and the dump",
                settings.url.host_str().unwrap_or("the server")
            );
        }
        return Ok(client.danger_accept_invalid_certs(true));
    }
    let mut roots = Vec::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate that does not parse is skipped, as the system's TLS does.
        if let Ok(cert) = reqwest::Certificate::from_der(&cert) {
            roots.push(cert);
        }
    }
    let system_roots = !roots.is_empty();
    if let Some(path) = &settings.certificate_authority {
        let pem = std::fs::read(path).with_context(|| {
            format!(
                "could not read the certificate authority {}",
                path.display()
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
        roots.extend(certs);
    }
    let mut client = client.tls_built_in_root_certs(!system_roots);
    for cert in roots {
        client = client.add_root_certificate(cert);
    }
    Ok(client)
}

impl Endpoint {
    /// One call to the metadata API (`ENDPOINT/v1/metadata`): its status and JSON answer
    /// (`null` when the answer is not JSON).
    pub(super) async fn metadata(
        &self,
        call: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), String> {
        let response = self
            .client
            .post(self.metadata_url.clone())
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

/// Streams the response body into `out`, showing progress; returns the number of bytes.
pub(super) async fn copy_body(
    mut response: Response,
    out: &mut impl Write,
    progress: &Progress,
) -> anyhow::Result<u64> {
    let mut total = 0u64;
    let request_id = request_id(&response);
    progress.receiving();
    loop {
        let chunk = response.chunk().await.map_err(|err| {
            Transport::new(
                format!(
                    "the response ended after {total} bytes, before the dump was complete{}",
                    request_id.as_deref().map(see_log).unwrap_or_default()
                ),
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

/// The server's id of this request, to find it in the server's log.
fn request_id(response: &Response) -> Option<String> {
    response
        .headers()
        .get(REQUEST_ID)
        .map(|id| String::from_utf8_lossy(id.as_bytes()).into_owned())
}

/// Where to look for why a response was cut short.
fn see_log(request_id: &str) -> String {
    format!(" [request id {request_id}: the server's log says why]")
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
    let mut rejected = Rejected::from_body(status, &body, location);
    rejected.request_id = request_id(&response);
    Ok(rejected)
}
