//! A cluster's TLS material, made with rcgen: a CA, a certificate for each
//! process and one for clients, and the cluster token.
//!
//! `lockstep certs` writes them for a deployment (the compose file), and
//! `lockstep up --secure` into its data folder. The folder is `0700` and
//! every key and the token are `0600`, so only the user who made them can
//! use them. Existing files are kept: running it again adds only what is
//! missing, signed by the same CA, so a restarted cluster keeps its
//! certificates and its token.
//!
//! Every certificate names [`SERVER_NAME`] (what clients check), plus
//! `localhost`, `127.0.0.1`, `::1` and the process's own name, and may be
//! used as a server's and as a client's (shards are both).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lockstep_proto::tls::{SERVER_NAME, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::Error;

/// The client certificate's name.
pub const CLIENT: &str = "client";
/// The coordinator's certificate name.
pub const COORDINATOR: &str = "coordinator";
/// The token file's name.
pub const TOKEN: &str = "token";

/// A folder of cluster TLS material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertDir {
    pub dir: PathBuf,
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("cannot make the {what}: {e}"))
}

fn ca_params(key: &KeyPair) -> Result<CertificateParams, Error> {
    // Rebuilt from the key every time, so that an existing CA key signs
    // new certificates under the same issuer name; the name carries a
    // digest of the key, so two clusters' CAs never share a name and a
    // certificate of the other one is refused as of an unknown issuer.
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error("CA", e))?;
    let id = xxhash_rust::xxh3::xxh3_64(key.public_key_raw());
    p.distinguished_name
        .push(DnType::CommonName, format!("Lockstep cluster CA {id:016x}"));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// Writes `bytes` to `path`, readable by its owner only when `secret`.
fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), Error> {
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

impl CertDir {
    pub fn new(dir: impl Into<PathBuf>) -> CertDir {
        CertDir { dir: dir.into() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    pub fn token(&self) -> PathBuf {
        self.dir.join(TOKEN)
    }

    /// The files of certificate `name`, with the CA.
    pub fn files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
            ca: self.ca(),
        }
    }

    /// The flags that give a child process certificate `name` and the token.
    pub fn flags(&self, name: &str) -> Vec<String> {
        let f = self.files(name);
        [
            ("--tls-cert", f.cert),
            ("--tls-key", f.key),
            ("--tls-ca", f.ca),
            ("--token-file", self.token()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v.display().to_string()])
        .collect()
    }

    /// Makes what is missing of: the CA, a certificate for each of
    /// `names`, and the token. Returns the names it made.
    pub fn ensure(&self, names: &[String]) -> Result<Vec<String>, Error> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(&self.dir, e))?;
        let mut made = Vec::new();
        let ca_key = if self.ca_key().exists() {
            KeyPair::from_pem(&read(&self.ca_key())?)
                .map_err(|e| Error::Config(format!("{}: {e}", self.ca_key().display())))?
        } else {
            let key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
            let cert = ca_params(&key)?
                .self_signed(&key)
                .map_err(|e| tls_error("CA", e))?;
            write(&self.ca_key(), key.serialize_pem().as_bytes(), true)?;
            write(&self.ca(), cert.pem().as_bytes(), false)?;
            made.push("ca".to_string());
            key
        };
        let issuer = Issuer::new(ca_params(&ca_key)?, ca_key);
        for name in names {
            let files = self.files(name);
            if files.cert.exists() && files.key.exists() {
                continue;
            }
            let sans: Vec<String> = [SERVER_NAME, "localhost", "127.0.0.1", "::1", name]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let mut p = CertificateParams::new(sans).map_err(|e| tls_error(name, e))?;
            p.distinguished_name.push(DnType::CommonName, name.as_str());
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().map_err(|e| tls_error(name, e))?;
            let cert = p.signed_by(&key, &issuer).map_err(|e| tls_error(name, e))?;
            for f in [&files.cert, &files.key] {
                // A half-made pair from an interrupted run.
                let _ = std::fs::remove_file(f);
            }
            write(&files.key, key.serialize_pem().as_bytes(), true)?;
            write(&files.cert, cert.pem().as_bytes(), false)?;
            made.push(name.clone());
        }
        if !self.token().exists() {
            let secret: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            write(&self.token(), format!("{secret}\n").as_bytes(), true)?;
            made.push(TOKEN.to_string());
        }
        Ok(made)
    }
}

/// The certificate names of a cluster with `shards` shards: the
/// coordinator, `shard-0` … and the client.
pub fn cluster_names(shards: usize) -> Vec<String> {
    std::iter::once(COORDINATOR.to_string())
        .chain((0..shards).map(|i| format!("shard-{i}")))
        .chain(std::iter::once(CLIENT.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_is_made_once_private_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let certs = CertDir::new(dir.path().join("tls"));
        let made = certs.ensure(&cluster_names(2)).unwrap();
        assert_eq!(
            made,
            ["ca", "coordinator", "shard-0", "shard-1", "client", "token"]
        );
        for name in ["coordinator", "shard-1", "client"] {
            certs.files(name).load().unwrap();
        }
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(certs.dir.clone()), 0o700);
        assert_eq!(mode(certs.files("client").key), 0o600);
        assert_eq!(mode(certs.token()), 0o600);
        assert_eq!(mode(certs.ca_key()), 0o600);
        let token = std::fs::read_to_string(certs.token()).unwrap();
        lockstep_proto::auth::Token::new(&token).unwrap();

        // Again, with one more shard: only that one is made, by the same CA.
        let ca = std::fs::read(certs.ca()).unwrap();
        assert_eq!(certs.ensure(&cluster_names(3)).unwrap(), ["shard-2"]);
        assert_eq!(std::fs::read(certs.ca()).unwrap(), ca);
        assert_eq!(std::fs::read_to_string(certs.token()).unwrap(), token);
        certs.files("shard-2").load().unwrap();
    }
}
