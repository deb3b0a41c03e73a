//! The key of pg_dump's `\restrict` (CVE-2025-8714's fix), chosen so that dumps are
//! byte-stable without giving the restriction away. Hasura passes the fixed, public key
//! `hasura`, which text inside a dump can use to end the restriction; pg_dump's own random
//! key makes two dumps of an unchanged database differ. Here, with an admin secret, the key
//! is an HMAC-SHA256 of the source's name under that secret: the same for a deployment and a
//! source, unknowable without the secret. Without a secret, pg_dump's random key.

use ring::hmac;

use crate::secret::Secret;
use crate::server_version::Version;

/// What the key is derived under; a different purpose gets a different key.
const CONTEXT: &[u8] = b"pgdump-api restrict-key v1\0";

/// Keys for `--restrict-key`, one per source.
pub(crate) struct RestrictKeys(Option<hmac::Key>);

impl std::fmt::Debug for RestrictKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestrictKeys(***)")
    }
}

impl RestrictKeys {
    /// Keys derived from `secret`; none without one.
    pub(crate) fn new(secret: Option<&Secret>) -> RestrictKeys {
        RestrictKeys(secret.map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.expose().as_bytes())))
    }

    /// The key for `source` when `pg_dump` takes `--restrict-key`; pg_dump accepts letters
    /// and digits only, so it is the first 128 bits of the HMAC, in hex.
    pub(crate) fn for_source(&self, source: &str, pg_dump: Version) -> Option<String> {
        let key = self.0.as_ref().filter(|_| takes_restrict_key(pg_dump))?;
        let tag = hmac::sign(key, &[CONTEXT, source.as_bytes()].concat());
        Some(
            tag.as_ref()[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }
}

/// Whether this pg_dump has `--restrict-key`: the releases of August 2025 on (13.22, 14.19,
/// 15.14, 16.10, 17.6) and 18.
pub(crate) fn takes_restrict_key(pg_dump: Version) -> bool {
    let first_minor = match pg_dump.major {
        0..=12 => return false,
        13 => 22,
        14 => 19,
        15 => 14,
        16 => 10,
        17 => 6,
        _ => 0,
    };
    pg_dump.minor >= first_minor
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }

    #[test]
    fn restrict_key_versions() {
        for (version, takes) in [
            (v(12, 99), false),
            (v(13, 21), false),
            (v(13, 22), true),
            (v(14, 18), false),
            (v(14, 19), true),
            (v(15, 13), false),
            (v(15, 14), true),
            (v(16, 10), true),
            (v(17, 5), false),
            (v(17, 6), true),
            (v(18, 0), true),
            (v(19, 0), true),
        ] {
            assert_eq!(takes_restrict_key(version), takes, "{version}");
        }
    }

    #[test]
    fn keys_are_stable_per_secret_and_source_and_alphanumeric() {
        let one = RestrictKeys::new(Some(&Secret::new("one")));
        let key = one.for_source("default", v(17, 6)).unwrap();
        assert_eq!(key.len(), 32);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
        assert_eq!(one.for_source("default", v(18, 1)).unwrap(), key);
        assert_ne!(one.for_source("other", v(17, 6)).unwrap(), key);
        let two = RestrictKeys::new(Some(&Secret::new("two")));
        assert_ne!(two.for_source("default", v(17, 6)).unwrap(), key);
        assert_eq!(one.for_source("default", v(17, 5)), None);
        assert_eq!(
            RestrictKeys::new(None).for_source("default", v(18, 0)),
            None
        );
        assert!(!format!("{one:?}").contains(&key));
    }
}
