//! JWT authentication as Hasura does it (`HASURA_GRAPHQL_JWT_SECRET`, `…_SECRETS`): the
//! configuration object, where the token is read from, its verification (by `jsonwebtoken`),
//! the Hasura claims and the role. Keys come from the configuration or from a JWK set URL,
//! cached as its `Cache-Control`/`Expires` say and fetched again for an unknown `kid`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use jsonwebtoken::Validation;
use serde_json::{Map, Value};

mod claims;
mod keys;

use super::{AuthError, ROLE_HEADER};
use claims::{claims_map, json_path, Claims, Namespace};
use keys::{fixed_key, JwkSource, Key, Keys};

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

/// Where the token is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Authorization,
    Cookie(String),
    /// Lower case.
    Header(String),
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
                Keys::Url(JwkSource::new(url, client.clone()))
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

#[cfg(test)]
mod tests;
