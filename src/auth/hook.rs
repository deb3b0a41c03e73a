//! The authentication webhook as Hasura calls it (`HASURA_GRAPHQL_AUTH_HOOK`): `GET` with the
//! client's headers, or `POST` with `{"headers": …, "request": …}`; the role is the
//! `X-Hasura-Role` of the hook's answer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::AuthError;

/// Calls to the hook in flight at once; more wait for a turn (within the hook's timeout), so
/// that a flood of requests costs a waiting future each, not a connection to the hook.
const CONCURRENT_CALLS: usize = 64;
/// How often a webhook too slow for its callers is warned about.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// The most of a hook's answer that is read: session variables are a small JSON object.
const MAX_ANSWER: usize = 64 * 1024;

/// Client headers never forwarded to a `GET` hook (Hasura's list).
const IGNORED: [&str; 14] = [
    "content-length",
    "content-md5",
    "user-agent",
    "host",
    "origin",
    "referer",
    "accept",
    "accept-encoding",
    "accept-language",
    "accept-datetime",
    "cache-control",
    "connection",
    "dnt",
    "content-type",
];

/// A configured webhook.
#[derive(Debug)]
pub(crate) struct AuthHook {
    url: reqwest::Url,
    post: bool,
    send_request_body: bool,
    client: reqwest::Client,
    timeout: Duration,
    turns: Semaphore,
    /// Requests turned away since the last warning, and when that was: one warning per
    /// [`WARN_EVERY`], however many are turned away.
    turned_away: Mutex<(u64, Option<Instant>)>,
}

impl PartialEq for AuthHook {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for AuthHook {}

fn failed(message: impl Into<String>) -> AuthError {
    AuthError::Refused {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "unexpected",
        message: message.into(),
    }
}

impl AuthHook {
    /// The hook at `url`, called with `method` (`GET` or `POST`) within `timeout`.
    pub(crate) fn new(
        url: &str,
        post: bool,
        send_request_body: bool,
        timeout: Duration,
    ) -> Result<AuthHook, String> {
        let url = reqwest::Url::parse(url).map_err(|err| format!("invalid URL: {err}"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| err.to_string())?;
        Ok(AuthHook {
            url,
            post,
            send_request_body,
            client,
            timeout,
            turns: Semaphore::new(CONCURRENT_CALLS),
            turned_away: Mutex::new((0, None)),
        })
    }

    /// Counts a request that got no turn, and warns at most once per [`WARN_EVERY`].
    fn turned_away(&self) {
        let mut turned_away = self
            .turned_away
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (count, last) = &mut *turned_away;
        *count += 1;
        if last.is_some_and(|last| last.elapsed() < WARN_EVERY) {
            return;
        }
        tracing::warn!(target: "webhook-log", url = %self.url, turned_away = *count,
            in_flight = CONCURRENT_CALLS,
            "requests got no turn at the authentication webhook within its timeout: it is \
             answering too slowly for the requests waiting on it");
        *turned_away = (0, Some(Instant::now()));
    }

    /// The caller's role, as the hook decides it.
    pub(crate) async fn role(&self, headers: &HeaderMap) -> Result<String, AuthError> {
        let Ok(Ok(_turn)) = tokio::time::timeout(self.timeout, self.turns.acquire()).await else {
            self.turned_away();
            return Err(AuthError::Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "unexpected",
                message: "too many requests are waiting for the authentication webhook".to_owned(),
            });
        };
        let request = self.request(headers);
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::error!(target: "webhook-log", url = %self.url, %error,
                    "the authentication webhook could not be reached");
                return Err(failed("webhook authentication request failed"));
            }
        };
        let status = response.status();
        let body = match read_capped(response).await {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(target: "webhook-log", url = %self.url, %error,
                    "the authentication webhook's answer could not be read");
                return Err(failed("webhook authentication request failed"));
            }
        };
        match status.as_u16() {
            200 => {}
            401 => {
                return Err(AuthError::Refused {
                    status: StatusCode::UNAUTHORIZED,
                    code: "access-denied",
                    message: "Authentication hook unauthorized this request".to_owned(),
                })
            }
            other => {
                tracing::error!(target: "webhook-log", url = %self.url, status = other,
                    "the authentication webhook answered neither 200 nor 401");
                return Err(failed("Invalid response from authorization hook"));
            }
        }
        session_role(&body)
    }

    /// The call to the hook for a request with `headers`: `POST` with them in a JSON body, or
    /// `GET` with them as headers (less Hasura's list).
    fn request(&self, headers: &HeaderMap) -> reqwest::RequestBuilder {
        if self.post {
            let mut sent = Map::new();
            for (name, value) in headers {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                sent.insert(name.as_str().to_owned(), Value::String(value));
            }
            let mut body = Map::new();
            body.insert("headers".to_owned(), Value::Object(sent));
            if self.send_request_body {
                // This API has no GraphQL request to show the hook.
                body.insert("request".to_owned(), Value::Null);
            }
            self.client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(Value::Object(body).to_string())
        } else {
            let mut forwarded = reqwest::header::HeaderMap::new();
            for (name, value) in headers {
                if !IGNORED.contains(&name.as_str()) {
                    forwarded.append(name.clone(), value.clone());
                }
            }
            self.client.get(self.url.clone()).headers(forwarded)
        }
    }
}

/// The role in the session variables of a hook's 200 answer.
fn session_role(body: &[u8]) -> Result<String, AuthError> {
    let variables: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|err| failed(format!("Invalid response from authorization hook: {err}")))?;
    let role = variables
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(super::ROLE_HEADER))
        .map(|(_, value)| value);
    match role {
        Some(Value::String(role)) if !role.is_empty() => Ok(role.clone()),
        Some(Value::String(_)) | None => Err(AuthError::Refused {
            status: StatusCode::BAD_REQUEST,
            code: "invalid-params",
            message: "\"x-hasura-role\" not found in session variables".to_owned(),
        }),
        Some(_) => Err(failed(
            "Invalid response from authorization hook: x-hasura-role must be a string",
        )),
    }
}

/// A hook's answer, refused beyond [`MAX_ANSWER`] bytes.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("an answer longer than {MAX_ANSWER} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
