//! JWT authentication as Hasura does it (`HASURA_GRAPHQL_JWT_SECRET`, `…_SECRETS`): the
//! configuration object, where the token is read from, its verification (by `jsonwebtoken`),
//! the Hasura claims and the role. Keys come from the configuration or from a JWK set URL,
//! cached as its `Cache-Control`/`Expires` say and fetched again for an unknown `kid`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{AuthError, ROLE_HEADER};

/// Where Hasura's claims sit in a token when the configuration does not say.
const DEFAULT_NAMESPACE: &str = "https://hasura.io/jwt/claims";
const ALLOWED_ROLES: &str = "x-hasura-allowed-roles";
const DEFAULT_ROLE: &str = "x-hasura-default-role";
/// How long a JWK set fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// An unknown `kid` fetches the JWK set again at most this often.
const REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// Every configured JWT secret.
#[derive(Debug)]
pub(crate) struct JwtAuth {
    configs: Vec<JwtConfig>,
}

impl PartialEq for JwtAuth {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for JwtAuth {}

/// One JWT secret: Hasura's configuration object.
#[derive(Debug)]
struct JwtConfig {
    keys: Keys,
    audience: Option<Vec<String>>,
    issuer: Option<String>,
    claims: Claims,
    allowed_skew: u64,
    location: Location,
}

/// The verification keys of one secret.
#[derive(Debug)]
enum Keys {
    Fixed(Vec<Key>),
    Url(JwkSource),
}

/// A key and the algorithms it verifies.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, {:?})", self.kid, self.algorithms)
    }
}

/// Where the token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Authorization,
    Cookie(String),
    /// Lower case.
    Header(String),
}

/// Where Hasura's claims are in the token.
#[derive(Debug)]
enum Claims {
    Namespace {
        at: Namespace,
        stringified: bool,
    },
    /// `claims_map`: each claim from a JSON path of the token (with a default) or a value.
    Map(Vec<(String, MapEntry)>),
}

#[derive(Debug)]
enum Namespace {
    Key(String),
    Path { text: String, path: Vec<Step> },
}

#[derive(Debug)]
enum MapEntry {
    Path {
        path: Vec<Step>,
        default: Option<Value>,
    },
    Value(Value),
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A JWK set fetched from a URL, cached.
#[derive(Debug)]
struct JwkSource {
    url: String,
    client: reqwest::Client,
    cache: tokio::sync::Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    keys: Arc<Vec<Key>>,
    /// `None`: valid until an unknown `kid` is seen.
    expires: Option<Instant>,
    fetched: Option<Instant>,
}

/// A refusal with Hasura's status, code and words.
fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> AuthError {
    AuthError::Refused {
        status,
        code,
        message: message.into(),
    }
}

fn invalid_jwt(why: impl std::fmt::Display) -> AuthError {
    refused(
        StatusCode::BAD_REQUEST,
        "invalid-jwt",
        format!("Could not verify JWT: {why}"),
    )
}

fn invalid_headers(message: &str) -> AuthError {
    refused(StatusCode::BAD_REQUEST, "invalid-headers", message)
}

fn invalid_claims(message: impl Into<String>) -> AuthError {
    refused(StatusCode::BAD_REQUEST, "jwt-invalid-claims", message)
}

impl JwtAuth {
    /// Parses `--jwt-secret` (one object) and `--jwt-secrets` (a list of them).
    pub(crate) fn parse(single: Option<&str>, list: Option<&str>) -> Result<JwtAuth, String> {
        let mut configs = Vec::new();
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|err| err.to_string())?;
        if let Some(text) = single.filter(|text| !text.is_empty()) {
            let value: Value = serde_json::from_str(text).map_err(|_| {
                "--jwt-secret / HASURA_GRAPHQL_JWT_SECRET is not a JSON object".to_owned()
            })?;
            configs.push(
                JwtConfig::parse(&value, &client)
                    .map_err(|err| format!("--jwt-secret / HASURA_GRAPHQL_JWT_SECRET: {err}"))?,
            );
        }
        if let Some(text) = list.filter(|text| !text.is_empty()) {
            let name = "--jwt-secrets / HASURA_GRAPHQL_JWT_SECRETS";
            let Ok(Value::Array(values)) = serde_json::from_str(text) else {
                return Err(format!("{name} is not a JSON list of objects"));
            };
            if values.is_empty() {
                return Err(format!("{name} is an empty list"));
            }
            for (index, value) in values.iter().enumerate() {
                configs.push(
                    JwtConfig::parse(value, &client)
                        .map_err(|err| format!("{name}, item {index}: {err}"))?,
                );
            }
        }
        Ok(JwtAuth { configs })
    }

    /// Fetches every JWK set once, so that a wrong URL stops startup.
    pub(crate) async fn prepare(&self) -> Result<(), String> {
        for config in &self.configs {
            if let Keys::Url(source) = &config.keys {
                let mut cache = source.cache.lock().await;
                source.refresh(&mut cache).await?;
            }
        }
        Ok(())
    }

    /// The caller's role from its token; `Ok(None)` when no token was sent.
    pub(crate) async fn role(&self, headers: &HeaderMap) -> Result<Option<String>, AuthError> {
        let mut matches = Vec::new();
        let mut wrong_issuer = false;
        for config in &self.configs {
            for token in config.location.tokens(headers)? {
                match (&config.issuer, unverified_issuer(&token)) {
                    (Some(expected), Some(issuer)) if *expected != issuer => wrong_issuer = true,
                    _ => matches.push((config, token)),
                }
            }
        }
        let (config, token) = match matches.len() {
            0 if wrong_issuer => return Err(invalid_jwt("JWTNotInIssuer")),
            0 => return Ok(None),
            1 => matches.remove(0),
            _ => return Err(invalid_headers("Could not verify JWT: Multiple JWTs found")),
        };
        let claims = config.verify(&token).await?;
        let hasura = config.claims.hasura(&claims)?;
        let allowed: Vec<String> = match hasura.get(ALLOWED_ROLES) {
            None => return Err(missing_claim(ALLOWED_ROLES)),
            Some(value) => serde_json::from_value(value.clone()).map_err(|err| {
                invalid_claims(format!(
                    "invalid \"{ALLOWED_ROLES}\"; should be a list of roles: {err}"
                ))
            })?,
        };
        let default: String = match hasura.get(DEFAULT_ROLE) {
            None => return Err(missing_claim(DEFAULT_ROLE)),
            Some(value) => serde_json::from_value(value.clone()).map_err(|err| {
                invalid_claims(format!(
                    "invalid \"{DEFAULT_ROLE}\"; should be a single role name: {err}"
                ))
            })?,
        };
        let requested = headers
            .get(ROLE_HEADER)
            .and_then(|role| role.to_str().ok())
            .map(str::trim)
            .filter(|role| !role.is_empty())
            .map(str::to_owned)
            .unwrap_or(default);
        if !allowed.contains(&requested) {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "access-denied",
                "Your requested role is not in allowed roles",
            ));
        }
        Ok(Some(requested))
    }
}

fn missing_claim(claim: &str) -> AuthError {
    refused(
        StatusCode::BAD_REQUEST,
        "jwt-missing-role-claims",
        format!("JWT claim does not contain \"{claim}\""),
    )
}

/// The `iss` of a token, read without verifying it (to pick its configuration).
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

impl Location {
    fn parse(value: Option<&Value>) -> Result<Location, String> {
        let Some(value) = value else {
            return Ok(Location::Authorization);
        };
        let name = || {
            value["name"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| "header: \"name\" must be a string".to_owned())
        };
        match value["type"].as_str() {
            Some("Authorization") => Ok(Location::Authorization),
            Some("Cookie") => Ok(Location::Cookie(name()?)),
            Some("CustomHeader") => Ok(Location::Header(name()?.to_ascii_lowercase())),
            _ => Err(
                "header: expected 'type' is 'Authorization' or 'Cookie' or 'CustomHeader'"
                    .to_owned(),
            ),
        }
    }

    /// The tokens found at this location.
    fn tokens(&self, headers: &HeaderMap) -> Result<Vec<String>, AuthError> {
        let mut tokens = Vec::new();
        match self {
            Location::Authorization => {
                for value in headers.get_all(header::AUTHORIZATION) {
                    let text = value.to_str().unwrap_or_default();
                    let words: Vec<&str> = text.split_ascii_whitespace().collect();
                    match words.as_slice() {
                        ["Bearer", token] => tokens.push((*token).to_owned()),
                        _ => return Err(invalid_headers("Malformed Authorization header")),
                    }
                }
            }
            Location::Cookie(name) => {
                for value in headers.get_all(header::COOKIE) {
                    let text = value.to_str().unwrap_or_default();
                    for pair in text.split(';') {
                        if let Some((key, value)) = pair.trim().split_once('=') {
                            if key.trim() == name {
                                tokens.push(value.trim().trim_matches('"').to_owned());
                            }
                        }
                    }
                }
            }
            Location::Header(name) => {
                for value in headers.get_all(name.as_str()) {
                    tokens.push(value.to_str().unwrap_or_default().to_owned());
                }
            }
        }
        Ok(tokens)
    }
}

impl JwtConfig {
    fn parse(value: &Value, client: &reqwest::Client) -> Result<JwtConfig, String> {
        let Value::Object(object) = value else {
            return Err("expected a JSON object".to_owned());
        };
        let string = |name: &str| -> Result<Option<String>, String> {
            match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(format!("\"{name}\" must be a string")),
            }
        };
        let keys = match (object.get("key"), string("jwk_url")?) {
            (None, None) => return Err("key and jwk_url both cannot be empty".to_owned()),
            (Some(_), Some(_)) => return Err("key, jwk_url both cannot be present".to_owned()),
            (Some(_), None) => {
                let key = string("key")?.unwrap_or_default();
                let kind = string("type")?.ok_or("\"type\" is required with \"key\"")?;
                Keys::Fixed(vec![
                    fixed_key(&kind, &key).map_err(|err| format!("Invalid JWK: {err}"))?
                ])
            }
            (None, Some(url)) => {
                reqwest::Url::parse(&url).map_err(|err| format!("invalid jwk_url: {err}"))?;
                Keys::Url(JwkSource {
                    url,
                    client: client.clone(),
                    cache: tokio::sync::Mutex::new(Cached::default()),
                })
            }
        };
        let audience = match object.get("audience") {
            None | Some(Value::Null) => None,
            Some(Value::String(one)) => Some(vec![one.clone()]),
            Some(value) => Some(
                serde_json::from_value(value.clone())
                    .map_err(|_| "\"audience\" must be a string or a list of strings")?,
            ),
        };
        let allowed_skew = match object.get("allowed_skew") {
            None | Some(Value::Null) => 0,
            Some(value) => value
                .as_f64()
                .filter(|skew| *skew >= 0.0)
                .ok_or("\"allowed_skew\" must be a number of seconds")?
                .ceil() as u64,
        };
        let stringified = match string("claims_format")?.as_deref() {
            None | Some("json") => false,
            Some("stringified_json") => true,
            Some(other) => {
                return Err(format!(
                    "claims_format {other:?}: expected \"json\" or \"stringified_json\""
                ))
            }
        };
        let claims = match object.get("claims_map") {
            Some(Value::Object(map)) => Claims::Map(claims_map(map)?),
            Some(_) => return Err("\"claims_map\" must be an object".to_owned()),
            None => {
                let at = match (
                    string("claims_namespace")?,
                    string("claims_namespace_path")?,
                ) {
                    (Some(_), Some(_)) => {
                        return Err(
                            "claims_namespace and claims_namespace_path both cannot be set"
                                .to_owned(),
                        )
                    }
                    (None, Some(text)) => Namespace::Path {
                        path: json_path(&text).map_err(|err| {
                            format!("invalid JSON path claims_namespace_path error: {err}")
                        })?,
                        text,
                    },
                    (Some(key), None) => Namespace::Key(key),
                    (None, None) => Namespace::Key(DEFAULT_NAMESPACE.to_owned()),
                };
                Claims::Namespace { at, stringified }
            }
        };
        Ok(JwtConfig {
            keys,
            audience,
            issuer: string("issuer")?,
            claims,
            allowed_skew,
            location: Location::parse(object.get("header"))?,
        })
    }

    /// The verified claims of `token`.
    async fn verify(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|err| invalid_jwt(describe(&err)))?;
        let candidates: Vec<Key> = match &self.keys {
            Keys::Fixed(keys) => keys.clone(),
            Keys::Url(source) => source.keys_for(header.kid.as_deref()).await.to_vec(),
        };
        let candidates: Vec<&Key> = candidates
            .iter()
            .filter(|key| match (&header.kid, &key.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                _ => true,
            })
            .filter(|key| key.algorithms.contains(&header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(invalid_jwt(match &self.keys {
                Keys::Fixed(_) => format!(
                    "JWSError (AlgorithmMismatch \"{:?} does not match the configured key\")",
                    header.alg
                ),
                Keys::Url(_) => "JWSError NoUsableKeys".to_owned(),
            }));
        }
        let mut last = None;
        for key in candidates {
            let mut validation = Validation::new(header.alg);
            validation.algorithms = key.algorithms.clone();
            validation.required_spec_claims.clear();
            validation.leeway = self.allowed_skew;
            validation.validate_nbf = true;
            // Stricter than Hasura: a configured audience or issuer must be in the token.
            match &self.audience {
                Some(audience) => {
                    validation.set_audience(audience);
                    validation.required_spec_claims.insert("aud".to_owned());
                }
                None => validation.validate_aud = false,
            }
            if let Some(issuer) = &self.issuer {
                validation.set_issuer(&[issuer]);
                validation.required_spec_claims.insert("iss".to_owned());
            }
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs();
                    let issued = data.claims.get("iat").and_then(Value::as_f64);
                    if issued.is_some_and(|iat| iat > (now + self.allowed_skew) as f64) {
                        return Err(invalid_jwt("JWTIssuedAtFuture"));
                    }
                    return Ok(data.claims);
                }
                Err(err) => last = Some(err),
            }
        }
        Err(invalid_jwt(describe(&last.expect("a key was tried"))))
    }
}

/// A verification failure in the words of Hasura's JOSE library.
fn describe(err: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "JWTExpired".to_owned(),
        ErrorKind::ImmatureSignature => "JWTNotYetValid".to_owned(),
        ErrorKind::InvalidAudience => "JWTNotInAudience".to_owned(),
        ErrorKind::InvalidIssuer => "JWTNotInIssuer".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => "JWTNotInAudience".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => "JWTNotInIssuer".to_owned(),
        ErrorKind::InvalidSignature => "JWSError JWSInvalidSignature".to_owned(),
        ErrorKind::InvalidAlgorithm => {
            "JWSError (AlgorithmMismatch \"the token's algorithm does not match the key\")"
                .to_owned()
        }
        other => format!("JWSError (CompactDecodeError \"{other:?}\")"),
    }
}

/// The key of a `type` + `key` configuration.
fn fixed_key(kind: &str, key: &str) -> Result<Key, String> {
    let pem_error = |err: jsonwebtoken::errors::Error| format!("Could not decode PEM: {err}");
    let (key, algorithms) = match kind {
        "HS256" | "HS384" | "HS512" => {
            let bits: usize = kind[2..].parse().expect("a number");
            if key.len() < bits / 8 {
                return Err(format!(
                    "Key size too small; should be atleast {} characters",
                    bits / 8
                ));
            }
            (DecodingKey::from_secret(key.as_bytes()), HMAC.to_vec())
        }
        "RS256" | "RS384" | "RS512" => (
            DecodingKey::from_rsa_pem(key.as_bytes()).map_err(pem_error)?,
            RSA.to_vec(),
        ),
        "ES256" | "ES384" => (
            DecodingKey::from_ec_pem(key.as_bytes()).map_err(pem_error)?,
            vec![Algorithm::ES256, Algorithm::ES384],
        ),
        "Ed25519" => (
            DecodingKey::from_ed_pem(key.as_bytes()).map_err(pem_error)?,
            vec![Algorithm::EdDSA],
        ),
        "ES512" => return Err("Key type: ES512 is not supported by pgdump-api".to_owned()),
        other => return Err(format!("Key type: {other} is not supported")),
    };
    Ok(Key {
        kid: None,
        key,
        algorithms,
    })
}

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The key of one JWK of a set; `None` for one that cannot verify (a private key's use, an
/// unsupported curve).
fn jwk_key(jwk: &Jwk) -> Option<Key> {
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let mut algorithms = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA.to_vec(),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
        AlgorithmParameters::OctetKey(_) => HMAC.to_vec(),
    };
    if let Some(alg) = jwk
        .common
        .key_algorithm
        .and_then(|alg| alg.to_string().parse::<Algorithm>().ok())
    {
        algorithms.retain(|known| *known == alg);
    }
    (!algorithms.is_empty()).then(|| Key {
        kid: jwk.common.key_id.clone(),
        key,
        algorithms,
    })
}

impl JwkSource {
    /// The keys to try for a token with `kid`: the cached ones, fetched again when they
    /// expired or do not know `kid`. A failed fetch is logged and the cached keys kept.
    async fn keys_for(&self, kid: Option<&str>) -> Arc<Vec<Key>> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let expired = cache.expires.is_some_and(|expires| now >= expires);
        let unknown =
            kid.is_some_and(|kid| !cache.keys.iter().any(|key| key.kid.as_deref() == Some(kid)));
        let may_refetch = cache
            .fetched
            .is_none_or(|fetched| now.duration_since(fetched) >= REFETCH_INTERVAL);
        if expired || (unknown && may_refetch) {
            if let Err(error) = self.refresh(&mut cache).await {
                tracing::warn!(target: "jwk-refresh-log", url = %self.url, %error,
                    "could not fetch the JWK set; keeping the keys fetched before");
            }
        }
        Arc::clone(&cache.keys)
    }

    /// Fetches the set into `cache`.
    async fn refresh(&self, cache: &mut Cached) -> Result<(), String> {
        cache.fetched = Some(Instant::now());
        let failed = |err: &dyn std::fmt::Display| {
            format!("could not fetch the JWK set from {}: {err}", self.url)
        };
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|err| failed(&err))?;
        if !response.status().is_success() {
            return Err(failed(&format!("status {}", response.status())));
        }
        let lifetime = lifetime(response.headers());
        let body = response.bytes().await.map_err(|err| failed(&err))?;
        let set: Value = serde_json::from_slice(&body).map_err(|err| failed(&err))?;
        let Some(Value::Array(keys)) = set.get("keys") else {
            return Err(failed(&"no \"keys\" list"));
        };
        let keys: Vec<Key> = keys
            .iter()
            .filter_map(|key| serde_json::from_value::<Jwk>(key.clone()).ok())
            .filter_map(|jwk| jwk_key(&jwk))
            .collect();
        cache.keys = Arc::new(keys);
        cache.expires = lifetime.map(|lifetime| Instant::now() + lifetime);
        Ok(())
    }
}

/// How long a response may be cached: `Cache-Control` (`max-age`, `s-maxage`; `no-cache`,
/// `no-store`, `must-revalidate` mean not at all), else `Expires`; `None` when neither says.
fn lifetime(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(control) = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
    {
        for directive in control.split(',').map(str::trim) {
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            match name.to_ascii_lowercase().as_str() {
                "max-age" | "s-maxage" => {
                    if let Ok(seconds) = value.trim_matches('"').parse() {
                        return Some(Duration::from_secs(seconds));
                    }
                }
                "no-cache" | "no-store" | "must-revalidate" => return Some(Duration::ZERO),
                _ => {}
            }
        }
    }
    let expires = headers
        .get(reqwest::header::EXPIRES)?
        .to_str()
        .ok()
        .and_then(|text| httpdate::parse_http_date(text).ok())?;
    Some(
        expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Parses a JSON path of keys and indices: `$.a.b`, `$['a.b'][0]`, `$["x"]`.
fn json_path(text: &str) -> Result<Vec<Step>, String> {
    let mut rest = text
        .strip_prefix('$')
        .ok_or_else(|| format!("{text:?} does not start with $"))?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err(format!("empty key in {text:?}"));
            }
            steps.push(Step::Key(after[..end].to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("unclosed [ in {text:?}"))?;
            let inner = &after[..end];
            let quoted = ['\'', '"']
                .iter()
                .find_map(|quote| inner.strip_prefix(*quote)?.strip_suffix(*quote));
            match (quoted, inner.parse()) {
                (Some(key), _) => steps.push(Step::Key(key.to_owned())),
                (None, Ok(index)) => steps.push(Step::Index(index)),
                (None, Err(_)) => return Err(format!("invalid [{inner}] in {text:?}")),
            }
            rest = &after[end + 1..];
        } else {
            return Err(format!("unexpected {rest:?} in {text:?}"));
        }
    }
    Ok(steps)
}

/// The value at `path` in `value`.
fn at<'a>(value: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, step| match step {
        Step::Key(key) => value.get(key),
        Step::Index(index) => value.get(index),
    })
}

fn claims_map(map: &Map<String, Value>) -> Result<Vec<(String, MapEntry)>, String> {
    let mut entries = Vec::new();
    for (name, value) in map {
        let entry = match value {
            Value::Object(object) if object.contains_key("path") => {
                let Some(Value::String(path)) = object.get("path") else {
                    return Err(format!("claims_map {name:?}: \"path\" must be a string"));
                };
                MapEntry::Path {
                    path: json_path(path).map_err(|err| format!("claims_map {name:?}: {err}"))?,
                    default: object.get("default").cloned(),
                }
            }
            value => MapEntry::Value(value.clone()),
        };
        entries.push((name.to_ascii_lowercase(), entry));
    }
    for required in [ALLOWED_ROLES, DEFAULT_ROLE] {
        if !entries.iter().any(|(name, _)| name == required) {
            return Err(format!("claims_map must have {required:?}"));
        }
    }
    Ok(entries)
}

impl Claims {
    /// Hasura's claims (`x-hasura-*`, lower case) of verified `claims`.
    fn hasura(&self, claims: &Map<String, Value>) -> Result<Map<String, Value>, AuthError> {
        match self {
            Claims::Namespace {
                at: namespace,
                stringified,
            } => {
                let found = match namespace {
                    Namespace::Key(key) => claims.get(key),
                    Namespace::Path { path, .. } => path_in(claims, path),
                };
                let Some(found) = found else {
                    return Err(invalid_claims(match namespace {
                        Namespace::Key(key) => format!("claims key: '{key}' not found"),
                        Namespace::Path { text, .. } => {
                            format!("claims not found at claims_namespace_path: '{text}'")
                        }
                    }));
                };
                let object = match (stringified, found) {
                    (false, Value::Object(object)) => object.clone(),
                    (false, _) => {
                        return Err(invalid_claims(
                            "expecting a json object when claims_format is json",
                        ))
                    }
                    (true, Value::String(text)) => {
                        match serde_json::from_str::<Map<String, Value>>(text) {
                            Ok(object) => object,
                            Err(_) => {
                                let location = match namespace {
                                    Namespace::Key(key) => format!("claims_namespace {key}"),
                                    Namespace::Path { text, .. } => {
                                        format!("claims_namespace_path {text}")
                                    }
                                };
                                return Err(invalid_claims(format!(
                                    "expecting stringified json at: '{location}', but found: {text}"
                                )));
                            }
                        }
                    }
                    (true, _) => {
                        return Err(invalid_claims(
                            "expecting a string when claims_format is stringified_json",
                        ))
                    }
                };
                Ok(object
                    .into_iter()
                    .map(|(key, value)| (key.to_ascii_lowercase(), value))
                    .filter(|(key, _)| key.starts_with("x-hasura-"))
                    .collect())
            }
            Claims::Map(entries) => {
                let all = Value::Object(claims.clone());
                let mut hasura = Map::new();
                for (name, entry) in entries {
                    let value = match entry {
                        MapEntry::Value(value) => value.clone(),
                        MapEntry::Path { path, default } => {
                            match at(&all, path).cloned().or_else(|| default.clone()) {
                                Some(value) => value,
                                None if name == ALLOWED_ROLES || name == DEFAULT_ROLE => {
                                    return Err(missing_claim(name))
                                }
                                None => {
                                    return Err(invalid_claims(format!(
                                        "JWT claim from claims_map, \"{name}\" not found"
                                    )))
                                }
                            }
                        }
                    };
                    hasura.insert(name.clone(), value);
                }
                Ok(hasura)
            }
        }
    }
}

/// The value at `path` among `claims`.
fn path_in<'a>(claims: &'a Map<String, Value>, path: &[Step]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let Step::Key(key) = first else {
        return None;
    };
    at(claims.get(key)?, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_parse() {
        assert_eq!(
            json_path("$.a['b.c'][2][\"d\"]").unwrap(),
            vec![
                Step::Key("a".into()),
                Step::Key("b.c".into()),
                Step::Index(2),
                Step::Key("d".into())
            ]
        );
        assert_eq!(json_path("$").unwrap(), vec![]);
        for bad in ["a.b", "$..a", "$[x]", "$[1", "$a"] {
            assert!(json_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_lifetime_from_headers() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = reqwest::header::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            lifetime(&headers(&[("cache-control", "public, max-age=300")])),
            secs(300)
        );
        assert_eq!(
            lifetime(&headers(&[("cache-control", "s-maxage=5")])),
            secs(5)
        );
        assert_eq!(
            lifetime(&headers(&[("cache-control", "no-cache")])),
            secs(0)
        );
        assert_eq!(lifetime(&headers(&[])), None);
        assert_eq!(
            lifetime(&headers(&[("expires", "Thu, 01 Jan 1970 00:00:00 GMT")])),
            secs(0)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        let got = lifetime(&headers(&[("expires", &later)])).unwrap();
        assert!(
            got > Duration::from_secs(90) && got <= Duration::from_secs(100),
            "{got:?}"
        );
    }

    #[test]
    fn configuration_errors_are_hasuras() {
        let client = reqwest::Client::new();
        for (config, expected) in [
            (
                r#"{"type":"HS256","key":"short"}"#,
                "Key size too small; should be atleast 32 characters",
            ),
            (
                r#"{"type":"RS256","key":"not a pem"}"#,
                "Invalid JWK: Could not decode PEM",
            ),
            (
                r#"{"type":"PS256","key":"x"}"#,
                "Key type: PS256 is not supported",
            ),
            (
                r#"{"type":"ES512","key":"x"}"#,
                "ES512 is not supported by pgdump-api",
            ),
            (
                r#"{"type":"HS256"}"#,
                "key and jwk_url both cannot be empty",
            ),
            (
                r#"{"key":"k","jwk_url":"http://x/"}"#,
                "key, jwk_url both cannot be present",
            ),
            (
                r#"{"jwk_url":"http://x/","claims_namespace":"a","claims_namespace_path":"$.a"}"#,
                "claims_namespace and claims_namespace_path both cannot be set",
            ),
            (
                r#"{"jwk_url":"http://x/","claims_format":"xml"}"#,
                "expected \"json\" or \"stringified_json\"",
            ),
            (
                r#"{"jwk_url":"http://x/","header":{"type":"Cookie"}}"#,
                "\"name\" must be a string",
            ),
        ] {
            let err =
                JwtConfig::parse(&serde_json::from_str(config).unwrap(), &client).unwrap_err();
            assert!(err.contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn tokens_are_found_where_configured() {
        let headers: HeaderMap = [
            ("authorization", "Bearer abc"),
            ("cookie", "a=1; jwt=tok; b=2"),
            ("x-token", "custom"),
        ]
        .iter()
        .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
        .collect();
        assert_eq!(Location::Authorization.tokens(&headers).unwrap(), ["abc"]);
        assert_eq!(
            Location::Cookie("jwt".into()).tokens(&headers).unwrap(),
            ["tok"]
        );
        assert_eq!(
            Location::Header("x-token".into()).tokens(&headers).unwrap(),
            ["custom"]
        );
        let malformed: HeaderMap = [("authorization", "Basic abc")]
            .iter()
            .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
            .collect();
        assert!(matches!(
            Location::Authorization.tokens(&malformed),
            Err(AuthError::Refused {
                code: "invalid-headers",
                ..
            })
        ));
    }
}
