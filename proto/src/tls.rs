//! TLS for every connection: the material one process holds (its own
//! certificate and key, and the cluster's CA) and [`Security`], the one
//! place endpoints are made, so that every channel a process opens is
//! secured the same way and carries the cluster token.
//!
//! - Servers present their certificate and require one from every client,
//!   signed by the cluster CA (mutual TLS).
//! - Clients check the server's certificate against the cluster CA, under
//!   the name [`SERVER_NAME`], so certificates do not depend on the
//!   addresses processes happen to get (IPs, container names, port 0).

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::ProtoError;
use crate::auth::Token;

/// The name every Lockstep certificate carries and every client checks.
pub const SERVER_NAME: &str = "lockstep";

/// Where a process's TLS material lies: its certificate chain, its private
/// key and the cluster CA, each a PEM file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsFiles {
    /// The three files if all are given, `None` if none is; naming only
    /// some of them is an error.
    pub fn from_parts(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        ca: Option<PathBuf>,
    ) -> Result<Option<TlsFiles>, ProtoError> {
        match (cert, key, ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsFiles { cert, key, ca })),
            (cert, key, ca) => {
                let missing: Vec<&str> = [
                    ("tls_cert", cert.is_none()),
                    ("tls_key", key.is_none()),
                    ("tls_ca", ca.is_none()),
                ]
                .into_iter()
                .filter_map(|(n, m)| m.then_some(n))
                .collect();
                Err(ProtoError::Tls(format!(
                    "TLS needs tls_cert, tls_key and tls_ca together; {} missing",
                    missing.join(" and ")
                )))
            }
        }
    }

    /// Reads and checks the three files.
    pub fn load(&self) -> Result<Tls, ProtoError> {
        let read = |what: &str, p: &Path| {
            std::fs::read(p).map_err(|e| {
                ProtoError::Tls(format!("cannot read the {what} {}: {e}", p.display()))
            })
        };
        let cert = read("certificate", &self.cert)?;
        let key = read("private key", &self.key)?;
        let ca = read("CA certificate", &self.ca)?;
        check_certs("certificate", &self.cert, &cert)?;
        check_certs("CA certificate", &self.ca, &ca)?;
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
            ProtoError::Tls(format!(
                "{} holds no PEM private key: {e}",
                self.key.display()
            ))
        })?;
        Ok(Tls {
            identity: Identity::from_pem(cert, key),
            ca: Certificate::from_pem(ca),
        })
    }
}

fn check_certs(what: &str, path: &Path, pem: &[u8]) -> Result<(), ProtoError> {
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(pem) {
        c.map_err(|e| ProtoError::Tls(format!("{what} {}: {e}", path.display())))?;
        n += 1;
    }
    if n == 0 {
        return Err(ProtoError::Tls(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(())
}

/// One process's loaded TLS material.
#[derive(Clone, Debug)]
pub struct Tls {
    identity: Identity,
    ca: Certificate,
}

impl Tls {
    /// A server's TLS: its certificate, and client certificates required
    /// and checked against the cluster CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    /// A client's TLS: the cluster CA as the only root, this process's
    /// certificate to present, and [`SERVER_NAME`] as the name to check.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
            .domain_name(SERVER_NAME)
    }
}

/// How a process dials and what it requires: TLS when configured, and the
/// cluster token on every call.
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub token: Token,
    pub tls: Option<Tls>,
}

impl Security {
    /// No TLS and no token.
    pub fn none() -> Security {
        Security::default()
    }

    /// The endpoint for `addr` (`host:port`): `https` with this process's
    /// TLS when it has some, `http` otherwise. Callers add their timeouts.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, ProtoError> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let ep = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| ProtoError::BadParam(format!("bad address {addr:?}: {e}")))?;
        match &self.tls {
            Some(t) => ep
                .tls_config(t.client())
                .map_err(|e| ProtoError::Tls(format!("TLS for {addr}: {e}"))),
            None => Ok(ep),
        }
    }

    /// From a server's settings: the token (`token`, else the contents of
    /// `token_file`, else none) and TLS from `[cert, key, ca]`, all three
    /// or none.
    pub fn from_settings(
        token: Option<&str>,
        token_file: Option<&Path>,
        [cert, key, ca]: [&Option<PathBuf>; 3],
    ) -> Result<Security, ProtoError> {
        let tls = TlsFiles::from_parts(cert.clone(), key.clone(), ca.clone())?
            .map(|f| f.load())
            .transpose()?;
        Ok(Security {
            token: Token::from_value_or_file(token, token_file)?,
            tls,
        })
    }

    /// A server builder: with this process's TLS (client certificates
    /// required) when it has some.
    pub fn server(&self) -> Result<tonic::transport::Server, ProtoError> {
        let server = tonic::transport::Server::builder();
        match &self.tls {
            Some(t) => server
                .tls_config(t.server())
                .map_err(|e| ProtoError::Tls(format!("TLS: {e}"))),
            None => Ok(server),
        }
    }
}
