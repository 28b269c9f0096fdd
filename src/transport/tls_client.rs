//! TLS toward trunks (RFC 3261 §26.2, RFC 5922 §7): the edge as a rustls client (aws-lc-rs,
//! TLS 1.2 and 1.3), for trunks whose URI is `sips:` or carries `;transport=tls`.
//!
//! # Whom a connection trusts
//!
//! The connector knows only the address it connects to; the trunk behind it is looked up in
//! the dialplan in force: a TLS trunk whose IP address, or one of whose resolved addresses
//! ([`super::dns`], SRV targets included), is the address, preferring one whose URI port
//! (5061 without one) is the address's port; or a trunk whose URI names no TLS but whose
//! NAPTR records chose TLS (`SIPS+D2T`, RFC 3263 §4.1) for that address and port. Then:
//!
//! - the server name is the trunk URI's host, also for an SRV target (RFC 5922 §4.1: the
//!   domain of the URI, not the target's name): a DNS name (sent as SNI, RFC 6066 §3, and
//!   matched against the certificate's subjectAltName, RFC 5922 §7.2), or an IP address
//!   (matched against an IP subjectAltName; no SNI is sent for an address);
//! - the trust anchors are the trunk's `tls_ca` file when it has one, otherwise the system's
//!   roots (read once, on the first TLS connection).
//!
//! An address that belongs to no TLS trunk (an in-dialog request toward a Contact with
//! `;transport=tls`) is verified as its IP address against the system's roots.
//!
//! The edge presents no client certificate (mutual TLS toward trunks is not done).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use super::dns::TrunkHosts;
use super::tls::provider;
use crate::routing::{Dialplans, TLS_PORT, Trunk};

/// What TLS connections toward trunks need.
#[derive(Debug, Clone)]
pub struct TlsClient {
    dialplans: Arc<Dialplans>,
    hosts: Arc<TrunkHosts>,
    /// The configuration with the system's roots, built on first use.
    system: Arc<OnceLock<Arc<ClientConfig>>>,
}

impl TlsClient {
    pub fn new(dialplans: Arc<Dialplans>, hosts: Arc<TrunkHosts>) -> TlsClient {
        TlsClient { dialplans, hosts, system: Arc::default() }
    }

    /// The server name to ask for and the configuration to verify it with, for a connection
    /// to `addr`. May read the system's roots (blocking file reads): call it off the core.
    pub async fn identity(
        &self,
        addr: SocketAddr,
    ) -> Result<(ServerName<'static>, Arc<ClientConfig>), rustls::Error> {
        let plan = self.dialplans.current();
        let is_at = |t: &&Trunk| {
            (t.uses_tls()
                && (t.ip == Some(addr.ip())
                    || (t.ip.is_none() && self.hosts.has(&t.host, addr.ip()))))
                || (t.ip.is_none() && self.hosts.is_tls_target(t, addr))
        };
        let trunk = plan
            .trunks
            .iter()
            .filter(is_at)
            .find(|t| t.port.unwrap_or(TLS_PORT) == addr.port())
            .or_else(|| plan.trunks.iter().find(is_at));
        let name = match trunk {
            Some(t) if t.ip.is_none() => ServerName::try_from(t.host.clone())
                .map_err(|_| rustls::Error::General(format!("'{}' is not a DNS name", t.host)))?,
            _ => ServerName::IpAddress(addr.ip().into()),
        };
        let config = match trunk.and_then(|t| t.tls_ca.as_ref()) {
            Some(ca) => config_with(ca.roots.as_ref().clone())?,
            None => self.system_config().await?,
        };
        Ok((name, config))
    }

    async fn system_config(&self) -> Result<Arc<ClientConfig>, rustls::Error> {
        if let Some(c) = self.system.get() {
            return Ok(c.clone());
        }
        let roots = tokio::task::spawn_blocking(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "system trust anchors: a certificate could not be read");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no system trust anchors: TLS trunks need `tls_ca`");
            }
            roots
        })
        .await
        .map_err(|e| rustls::Error::General(format!("reading the system's roots: {e}")))?;
        let config = config_with(roots)?;
        Ok(self.system.get_or_init(|| config).clone())
    }
}

/// A client configuration trusting `roots`, on the process's single provider.
fn config_with(roots: rustls::RootCertStore) -> Result<Arc<ClientConfig>, rustls::Error> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
