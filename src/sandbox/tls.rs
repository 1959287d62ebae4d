//! Loopback TLS for the sandbox: a throw-away self-signed certificate for 127.0.0.1 and
//! localhost, and a rustls server config that uses it.
//!
//! The fake OAuth 2.0 provider needs https because revocation is only accepted over TLS
//! (the oauth2 crate refuses a non-https revocation URL, as a real provider would never
//! offer one). Clients trust the certificate itself as their only root
//! ([`SelfSigned::ca_pem`]); nothing here touches the system trust store.
//!
//! The crypto provider (ring) is passed explicitly: the process-wide default provider may be
//! unset, or set to something else by whoever embeds deputy.

use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// A fresh certificate and the server config serving it.
pub(super) struct SelfSigned {
    pub(super) config: Arc<ServerConfig>,
    /// PEM of the certificate, which is its own trust anchor.
    pub(super) ca_pem: String,
}

/// Makes a new key pair and certificate (SANs `127.0.0.1` and `localhost`) on every call,
/// so no private key ever lives in the repository.
pub(super) fn self_signed() -> anyhow::Result<SelfSigned> {
    let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    let certified =
        rcgen::generate_simple_self_signed(names).context("generating the sandbox certificate")?;
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions for the sandbox")?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .context("TLS server config for the sandbox")?;
    // The router is served by an HTTP/1 stack; say so rather than let a client guess.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(SelfSigned {
        config: Arc::new(config),
        ca_pem: certified.cert.pem(),
    })
}
