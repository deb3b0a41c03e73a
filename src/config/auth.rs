//! The authentication settings, checked as Hasura checks them at startup: which mode, the
//! admin secrets, and no authentication or CORS variable left unread.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

use crate::auth::hook::AuthHook;
use crate::auth::jwt::JwtAuth;
use crate::auth::{AuthMode, ADMIN_ROLE};
use crate::secret::Secret;

/// The authentication settings as given.
pub(super) struct AuthArgs {
    pub(super) admin_secret: Option<String>,
    pub(super) access_key: Option<String>,
    pub(super) admin_secrets: Option<String>,
    pub(super) unauthorized_role: Option<String>,
    pub(super) jwt_secret: Option<String>,
    pub(super) jwt_secrets: Option<String>,
    pub(super) auth_hook: Option<String>,
    pub(super) auth_hook_mode: Option<String>,
    pub(super) auth_hook_send_request_body: bool,
    pub(super) auth_hook_timeout: Duration,
}

/// What Hasura's fatal startup messages say a setting needs.
const REQUIRES_ADMIN_SECRET: &str = " requires --admin-secret (HASURA_GRAPHQL_ADMIN_SECRET) or \
     --access-key (HASURA_GRAPHQL_ACCESS_KEY) to be set";

/// The authentication mode: Hasura's startup rules, with their messages, and the settings that
/// would open the server by accident refused.
pub(super) fn auth_mode(args: AuthArgs) -> anyhow::Result<AuthMode> {
    let secrets = admin_secrets(args.admin_secret, args.access_key, args.admin_secrets)?;
    let unauthorized_role = args.unauthorized_role.filter(|role| !role.is_empty());
    let hook = args.auth_hook.filter(|hook| !hook.is_empty());
    let jwt_secret = args.jwt_secret.filter(|value| !value.is_empty());
    let jwt_secrets = args.jwt_secrets.filter(|value| !value.is_empty());
    let jwt = jwt_secret.is_some() || jwt_secrets.is_some();
    let post = match args.auth_hook_mode.as_deref() {
        None | Some("GET") => false,
        Some("POST") => true,
        Some(other) => bail!(
            "invalid --auth-hook-mode / HASURA_GRAPHQL_AUTH_HOOK_MODE {other:?}: \
             expected GET or POST"
        ),
    };
    // Hasura's `setupAuthMode`, case by case.
    match (!secrets.is_empty(), &hook, jwt) {
        (true, None, _) => {}
        _ if unauthorized_role.is_some() => bail!(
            "Fatal Error: --unauthorized-role (HASURA_GRAPHQL_UNAUTHORIZED_ROLE){REQUIRES_ADMIN_SECRET} \
             and is not allowed when --auth-hook (HASURA_GRAPHQL_AUTH_HOOK) is set"
        ),
        (false, None, false) => return Ok(AuthMode::Open),
        (true, Some(_), false) => {}
        (false, Some(_), false) => {
            bail!("Fatal Error : --auth-hook (HASURA_GRAPHQL_AUTH_HOOK){REQUIRES_ADMIN_SECRET}")
        }
        (false, None, true) => {
            bail!("Fatal Error : --jwt-secret (HASURA_GRAPHQL_JWT_SECRET){REQUIRES_ADMIN_SECRET}")
        }
        (_, Some(_), true) => {
            bail!("Fatal Error: Both webhook and JWT mode cannot be enabled at the same time")
        }
    }
    if unauthorized_role.as_deref() == Some(ADMIN_ROLE) {
        bail!(
            "--unauthorized-role / HASURA_GRAPHQL_UNAUTHORIZED_ROLE must not be admin: every \
             caller without the admin secret would be admin"
        );
    }
    if let Some(url) = hook {
        let hook = AuthHook::new(
            &url,
            post,
            args.auth_hook_send_request_body,
            args.auth_hook_timeout,
        )
        .map_err(|err| anyhow::anyhow!("invalid --auth-hook / HASURA_GRAPHQL_AUTH_HOOK: {err}"))?;
        return Ok(AuthMode::Hook {
            secrets,
            hook: Arc::new(hook),
        });
    }
    if jwt {
        let jwt = JwtAuth::parse(jwt_secret.as_deref(), jwt_secrets.as_deref())
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        return Ok(AuthMode::Jwt {
            secrets,
            jwt: Arc::new(jwt),
            unauthorized_role,
        });
    }
    Ok(AuthMode::Secret {
        secrets,
        unauthorized_role,
    })
}

/// Every admin secret: the single one (or its legacy name) and the JSON list.
fn admin_secrets(
    admin_secret: Option<String>,
    access_key: Option<String>,
    list: Option<String>,
) -> anyhow::Result<Vec<Secret>> {
    let mut secrets = Vec::new();
    let single = match (admin_secret, access_key) {
        (Some(secret), _) => Some((secret, "--admin-secret / HASURA_GRAPHQL_ADMIN_SECRET")),
        (None, Some(key)) => Some((key, "--access-key / HASURA_GRAPHQL_ACCESS_KEY")),
        (None, None) => None,
    };
    if let Some((secret, name)) = single {
        // An empty secret would make an empty header an admin credential; it is nearly always
        // a variable that was meant to be filled in (`ADMIN_SECRET: ${SECRET}`, SECRET unset).
        if secret.is_empty() {
            bail!(
                "{name} is set but empty: that would let anyone in with an empty secret \
                 header; set a secret, or unset the variable to serve without authentication"
            );
        }
        secrets.push(Secret::new(secret));
    }
    if let Some(list) = list {
        let name = "--admin-secrets / HASURA_GRAPHQL_ADMIN_SECRETS";
        // The error of serde_json would quote the text, secrets included: it is left out.
        let Ok(list) = serde_json::from_str::<Vec<String>>(&list) else {
            bail!("{name} must be a JSON list of strings, e.g. [\"secret-1\", \"secret-2\"]");
        };
        if list.is_empty() || list.iter().any(String::is_empty) {
            bail!(
                "{name} is set but empty or holds an empty secret: that would let anyone in \
                 with an empty secret header; list the secrets, or unset the variable"
            );
        }
        secrets.extend(list.into_iter().map(Secret::new));
    }
    Ok(secrets)
}

/// Environment variables about authentication or CORS that pgdump-api does not read: the
/// first such name in `vars`, given the names `declared` as settings. A Hasura setting that is
/// silently dropped could leave the server open, so it stops startup instead.
pub(crate) fn unhonoured_auth_variable<'a>(
    vars: impl IntoIterator<Item = &'a str>,
    declared: &[&str],
) -> Option<&'a str> {
    // Whole `_`-separated words (and their plurals), so that `CERTIFICATE_AUTHORITY`, which
    // pgdump-api's own client reads, is not taken for an `AUTH` setting.
    const WORDS: [&str; 7] = ["SECRET", "JWT", "AUTH", "CORS", "COOKIE", "ROLE", "ACCESS"];
    let about_auth = |rest: &str| {
        rest.split('_').any(|word| {
            let singular = word.strip_suffix('S').unwrap_or(word);
            WORDS.contains(&word) || WORDS.contains(&singular)
        })
    };
    vars.into_iter().find(|var| {
        var.strip_prefix("HASURA_GRAPHQL_").is_some_and(about_auth) && !declared.contains(var)
    })
}
