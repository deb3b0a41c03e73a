//! Who is calling: the admin secret check and the caller's role, as Hasura decides them
//! (SPEC §2 step 3). The secret is compared in constant time.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::AuthMode;

/// The role that may use the admin endpoints.
pub(crate) const ADMIN_ROLE: &str = "admin";

const ADMIN_SECRET_HEADER: &str = "x-hasura-admin-secret";
const ACCESS_KEY_HEADER: &str = "x-hasura-access-key";
const ROLE_HEADER: &str = "x-hasura-role";

/// Why a request was refused before its role was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// A secret header was sent, but it is not the secret.
    InvalidSecret,
    /// No secret header and no unauthorized role to fall back on.
    SecretRequired,
}

/// The caller's role, from the request headers.
pub(crate) fn authenticate(mode: &AuthMode, headers: &HeaderMap) -> Result<String, AuthError> {
    let AuthMode::Secret {
        secret,
        unauthorized_role,
    } = mode
    else {
        // The Hasura CLI always sends a (possibly empty) secret header; without a configured
        // secret it means nothing.
        return Ok(requested_role(headers));
    };
    let sent = headers
        .get(ADMIN_SECRET_HEADER)
        .or_else(|| headers.get(ACCESS_KEY_HEADER));
    match sent {
        Some(sent) if bool::from(sent.as_bytes().ct_eq(secret.expose().as_bytes())) => {
            Ok(requested_role(headers))
        }
        Some(_) => Err(AuthError::InvalidSecret),
        None => unauthorized_role.clone().ok_or(AuthError::SecretRequired),
    }
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
    use crate::secret::Secret;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
            .collect()
    }

    fn secret(unauthorized_role: Option<&str>) -> AuthMode {
        AuthMode::Secret {
            secret: Secret::new("s3cret"),
            unauthorized_role: unauthorized_role.map(str::to_owned),
        }
    }

    #[test]
    fn open_mode_ignores_secret_headers() {
        let role = authenticate(&AuthMode::Open, &headers(&[("x-hasura-admin-secret", "")]));
        assert_eq!(role.as_deref(), Ok("admin"));
        let role = authenticate(&AuthMode::Open, &headers(&[("x-hasura-role", "user")]));
        assert_eq!(role.as_deref(), Ok("user"));
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
            let got = authenticate(&secret(unauthorized), &headers(sent));
            assert_eq!(got, expected.map(str::to_owned), "{sent:?}");
        }
    }
}
