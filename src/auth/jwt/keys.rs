//! The keys a JWT is verified with: a configuration's fixed key, or a JWK set fetched from a
//! URL and cached as its `Cache-Control`/`Expires` say.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::REFETCH_INTERVAL;

/// The verification keys of one secret.
#[derive(Debug)]
pub(super) enum Keys {
    Fixed(Vec<Key>),
    Url(JwkSource),
}

/// A key and the algorithms it verifies.
#[derive(Clone)]
pub(super) struct Key {
    pub(super) kid: Option<String>,
    pub(super) key: DecodingKey,
    pub(super) algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, {:?})", self.kid, self.algorithms)
    }
}

/// A JWK set fetched from a URL, cached.
#[derive(Debug)]
pub(super) struct JwkSource {
    pub(super) url: String,
    pub(super) client: reqwest::Client,
    pub(super) cache: tokio::sync::Mutex<Cached>,
}

#[derive(Debug, Default)]
pub(super) struct Cached {
    pub(super) keys: Arc<Vec<Key>>,
    /// `None`: valid until an unknown `kid` is seen.
    pub(super) expires: Option<Instant>,
    pub(super) fetched: Option<Instant>,
}

/// The key of a `type` + `key` configuration.
pub(super) fn fixed_key(kind: &str, key: &str) -> Result<Key, String> {
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

pub(super) const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
pub(super) const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The key of one JWK of a set; `None` for one that cannot verify (a private key's use, an
/// unsupported curve).
pub(super) fn jwk_key(jwk: &Jwk) -> Option<Key> {
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
    /// A JWK set at `url`, fetched with `client` when first needed.
    pub(super) fn new(url: String, client: reqwest::Client) -> JwkSource {
        JwkSource {
            url,
            client,
            cache: tokio::sync::Mutex::new(Cached::default()),
        }
    }

    /// The keys to try for a token with `kid`: the cached ones, fetched again when they
    /// expired or do not know `kid`. A failed fetch is logged and the cached keys kept.
    pub(super) async fn keys_for(&self, kid: Option<&str>) -> Arc<Vec<Key>> {
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
    pub(super) async fn refresh(&self, cache: &mut Cached) -> Result<(), String> {
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
pub(super) fn lifetime(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
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
