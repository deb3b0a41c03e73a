//! Who is calling: the admin secret check and the caller's role, as Hasura decides them
//! (SPEC §2 step 3), and CORS ([`cors`]). Secrets are compared in constant time.
//!
//! [`authenticate`] is the one entry point of the request path; it needs only the headers.

pub(crate) mod cors;
pub(crate) mod hook;
pub(crate) mod jwt;

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::delegated::Delegated;
use crate::secret::Secret;
use hook::AuthHook;
use jwt::JwtAuth;

/// Who may call the admin endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthMode {
    /// No admin secret: every caller is admin unless it names another role.
    Open,
    /// Callers prove themselves with an admin secret; others get `unauthorized_role`.
    Secret {
        /// Never empty.
        secrets: Vec<Secret>,
        unauthorized_role: Option<String>,
    },
    /// An admin secret, else a JWT, else `unauthorized_role`.
    Jwt {
        /// Never empty.
        secrets: Vec<Secret>,
        jwt: Arc<JwtAuth>,
        unauthorized_role: Option<String>,
    },
    /// An admin secret, else what the webhook says.
    Hook {
        /// Never empty.
        secrets: Vec<Secret>,
        hook: Arc<AuthHook>,
    },
}

impl AuthMode {
    /// The admin secrets, the single one first; none in the open mode.
    pub(crate) fn admin_secrets(&self) -> &[Secret] {
        match self {
            AuthMode::Open => &[],
            AuthMode::Secret { secrets, .. }
            | AuthMode::Jwt { secrets, .. }
            | AuthMode::Hook { secrets, .. } => secrets,
        }
    }

    /// Fetches what authentication needs before the first request (JWK sets).
    pub(crate) async fn prepare(&self) -> Result<(), String> {
        match self {
            AuthMode::Jwt { jwt, .. } => jwt.prepare().await,
            _ => Ok(()),
        }
    }
}

/// The role that may use the admin endpoints.
pub(crate) const ADMIN_ROLE: &str = "admin";

const ADMIN_SECRET_HEADER: &str = "x-hasura-admin-secret";
const ACCESS_KEY_HEADER: &str = "x-hasura-access-key";
const ROLE_HEADER: &str = "x-hasura-role";

/// Why a request was refused before its role was known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// A secret header was sent, but it is not the secret.
    InvalidSecret,
    /// No secret header and no unauthorized role to fall back on.
    SecretRequired,
    /// The webhook was not asked: as many requests as may wait on it (or on the upstream)
    /// already do.
    Busy(crate::delegated::Full),
    /// A JWT or the webhook refused the caller: Hasura's status, code and words.
    Refused {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
}

/// How a caller was let in, as the audit record names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// No admin secret is configured.
    NoSecretConfigured,
    AdminSecret,
    Jwt,
    AuthHook,
    /// Front mode: the upstream Hasura judged the credentials.
    Upstream,
    /// No credential: the configured unauthorized role.
    UnauthorizedRole,
}

impl Method {
    /// A small, fixed word for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::NoSecretConfigured => "no-secret-configured",
            Method::AdminSecret => "admin-secret",
            Method::Jwt => "jwt",
            Method::AuthHook => "auth-hook",
            Method::Upstream => "upstream",
            Method::UnauthorizedRole => "unauthorized-role",
        }
    }
}

/// The caller's role and how it was learnt, from the request headers: the one entry point of
/// the request path.
/// A request the webhook judges holds one of `delegated`'s places meanwhile.
pub(crate) async fn authenticate(
    mode: &AuthMode,
    headers: &HeaderMap,
    delegated: &Delegated,
) -> Result<(String, Method), AuthError> {
    let secrets = match mode {
        // The Hasura CLI always sends a (possibly empty) secret header; without a configured
        // secret it means nothing.
        AuthMode::Open => return Ok((requested_role(headers), Method::NoSecretConfigured)),
        AuthMode::Secret { secrets, .. }
        | AuthMode::Jwt { secrets, .. }
        | AuthMode::Hook { secrets, .. } => secrets,
    };
    let sent = headers
        .get(ADMIN_SECRET_HEADER)
        .or_else(|| headers.get(ACCESS_KEY_HEADER));
    match sent {
        Some(sent) if is_one_of(sent.as_bytes(), secrets) => {
            return Ok((requested_role(headers), Method::AdminSecret))
        }
        Some(_) => return Err(AuthError::InvalidSecret),
        None => {}
    }
    match mode {
        AuthMode::Open => unreachable!("answered above"),
        AuthMode::Secret {
            unauthorized_role, ..
        } => unauthorized(unauthorized_role).ok_or(AuthError::SecretRequired),
        AuthMode::Jwt {
            jwt,
            unauthorized_role,
            ..
        } => match jwt.role(headers).await? {
            Some(role) => Ok((role, Method::Jwt)),
            None => unauthorized(unauthorized_role).ok_or_else(|| AuthError::Refused {
                status: StatusCode::BAD_REQUEST,
                code: "invalid-headers",
                message: "Missing 'Authorization' or 'Cookie' header in JWT authentication mode"
                    .to_owned(),
            }),
        },
        AuthMode::Hook { hook, .. } => {
            let _place = delegated.hold().map_err(AuthError::Busy)?;
            Ok((hook.role(headers).await?, Method::AuthHook))
        }
    }
}

fn unauthorized(role: &Option<String>) -> Option<(String, Method)> {
    role.clone().map(|role| (role, Method::UnauthorizedRole))
}

/// Whether `sent` is one of `secrets`, in constant time: every secret is compared, whichever
/// matches.
fn is_one_of(sent: &[u8], secrets: &[Secret]) -> bool {
    let matches = secrets
        .iter()
        .fold(subtle::Choice::from(0), |found, secret| {
            found | sent.ct_eq(secret.expose().as_bytes())
        });
    bool::from(matches)
}

/// `x-hasura-role`, or admin when absent or empty.
fn requested_role(headers: &HeaderMap) -> String {
    headers
        .get(ROLE_HEADER)
        .map(|role| String::from_utf8_lossy(role.as_bytes()).into_owned())
        .filter(|role| !role.is_empty())
        .unwrap_or_else(|| ADMIN_ROLE.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
            .collect()
    }

    fn secret(unauthorized_role: Option<&str>) -> AuthMode {
        AuthMode::Secret {
            secrets: vec![Secret::new("s3cret")],
            unauthorized_role: unauthorized_role.map(str::to_owned),
        }
    }

    fn sync(mode: &AuthMode, headers: &HeaderMap) -> Result<String, AuthError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(authenticate(
                mode,
                headers,
                &crate::delegated::Delegated::new(16),
            ))
            .map(|(role, _)| role)
    }

    #[test]
    fn open_mode_ignores_secret_headers() {
        let role = sync(&AuthMode::Open, &headers(&[("x-hasura-admin-secret", "")]));
        assert_eq!(role.as_deref(), Ok("admin"));
        let role = sync(&AuthMode::Open, &headers(&[("x-hasura-role", "user")]));
        assert_eq!(role.as_deref(), Ok("user"));
    }

    #[test]
    fn any_listed_secret_is_admin() {
        let mode = AuthMode::Secret {
            secrets: vec![Secret::new("old"), Secret::new("new")],
            unauthorized_role: None,
        };
        for (sent, expected) in [
            ("old", Ok("admin")),
            ("new", Ok("admin")),
            ("ne", Err(AuthError::InvalidSecret)),
            ("oldnew", Err(AuthError::InvalidSecret)),
        ] {
            let got = sync(&mode, &headers(&[("x-hasura-admin-secret", sent)]));
            assert_eq!(got, expected.map(str::to_owned), "{sent}");
        }
    }

    #[test]
    fn secret_mode_decides_by_header() {
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            Option<&'a str>,
            Result<&'a str, AuthError>,
        );
        let cases: [Case; 8] = [
            (&[("x-hasura-admin-secret", "s3cret")], None, Ok("admin")),
            (&[("x-hasura-access-key", "s3cret")], None, Ok("admin")),
            (
                &[
                    ("x-hasura-admin-secret", "s3cret"),
                    ("x-hasura-role", "user"),
                ],
                None,
                Ok("user"),
            ),
            (
                &[("x-hasura-admin-secret", "s3cret"), ("x-hasura-role", "")],
                None,
                Ok("admin"),
            ),
            (
                &[("x-hasura-admin-secret", "wrong")],
                None,
                Err(AuthError::InvalidSecret),
            ),
            (
                &[("x-hasura-admin-secret", "")],
                Some("anon"),
                Err(AuthError::InvalidSecret),
            ),
            (&[], None, Err(AuthError::SecretRequired)),
            (&[("x-hasura-role", "admin")], Some("anon"), Ok("anon")),
        ];
        for (sent, unauthorized, expected) in cases {
            let got = sync(&secret(unauthorized), &headers(sent));
            assert_eq!(got, expected.map(str::to_owned), "{sent:?}");
        }
    }
}
