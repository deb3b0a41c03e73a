//! libpq's TLS settings (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) as a rustls client
//! configuration, so that the version probe is exactly as careful as pg_dump will be: a
//! `verify-full` source never gets the password sent to a server whose certificate was not
//! checked.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::conninfo::ConnInfo;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verify {
    /// Encrypt, but accept any certificate (libpq's `prefer`, and `require` without a root
    /// certificate).
    Nothing,
    /// The chain must lead to a trusted root (`verify-ca`, `require` with a root certificate).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// The TLS part of a connection: whether to use TLS at all, and how.
pub(super) struct Tls {
    pub(crate) mode: tokio_postgres::config::SslMode,
    pub(crate) config: ClientConfig,
}

/// Builds the TLS settings of `conn`, with libpq's defaults and files.
pub(super) fn settings(conn: &ConnInfo) -> Result<Tls, String> {
    use tokio_postgres::config::SslMode;
    let env = |key: &str| std::env::var(key).ok();
    let sslmode = conn
        .param("sslmode")
        .map(str::to_owned)
        .or_else(|| env("PGSSLMODE"))
        .unwrap_or_else(|| "prefer".to_owned());
    let home = env("HOME").map(|home| Path::new(&home).join(".postgresql"));
    let file = |key: &str, env_key: &str, default: &str| -> Option<PathBuf> {
        conn.param(key)
            .map(str::to_owned)
            .or_else(|| env(env_key))
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|dir| dir.join(default)))
    };
    let root = file("sslrootcert", "PGSSLROOTCERT", "root.crt");
    let has_root = root
        .as_ref()
        .is_some_and(|path| path == Path::new("system") || path.exists());
    let (mode, verify) = match sslmode.as_str() {
        // Never used for the connection, but one connector type keeps the caller simple.
        "disable" => (SslMode::Disable, Verify::Nothing),
        "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
        "require" if has_root => (SslMode::Require, Verify::Chain),
        "require" => (SslMode::Require, Verify::Nothing),
        "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::Full),
        other => return Err(format!("invalid sslmode value: {other:?}")),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?;
    let builder = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
        Verify::Chain | Verify::Full => {
            let roots = Arc::new(root_store(root.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|err| err.to_string())?;
            if verify == Verify::Full {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            }
        }
    };
    let cert = file("sslcert", "PGSSLCERT", "postgresql.crt").filter(|path| path.exists());
    let key = file("sslkey", "PGSSLKEY", "postgresql.key").filter(|path| path.exists());
    let config = match (cert, key) {
        (Some(cert), Some(key)) if mode != SslMode::Disable => {
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| format!("sslcert {}: {err}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(&key)
                .map_err(|err| format!("sslkey {}: {err}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| err.to_string())?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Tls { mode, config })
}

/// The trusted roots: `sslrootcert`'s file, or the system's store for `system`.
fn root_store(root: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root {
        Some(path) if path == Path::new("system") => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
        }
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| format!("root certificate file {}: {err}", path.display()))?;
            store.add_parsable_certificates(certs);
        }
        None => return Err("no root certificate file (sslrootcert) to verify the server".into()),
    }
    Ok(store)
}

/// Accepts any certificate, but still checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks the chain, not the host name (libpq's `verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
