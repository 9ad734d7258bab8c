//! TLS for `https://` endpoints: the CA to trust and an optional client certificate, read from
//! PEM files (rustls with the ring provider, as etcd-client already uses).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Trusted when no `--ca-file` is given: Debian's bundle of public CAs (package
/// ca-certificates), so a server with a publicly signed certificate needs no flag.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `--ca-file`, `--cert-file` and `--key-file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no usable {what} in PEM form{}", path.display(), detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Pem {
        path: PathBuf,
        what: &'static str,
        detail: Option<String>,
    },
    #[error("--cert-file and --key-file go together: give both or neither")]
    HalfClientIdentity,
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A connector trusting the CA file (or the system bundle), presenting the client certificate
/// when one is given.
pub fn connector(files: &TlsFiles) -> Result<TlsConnector, TlsError> {
    let ca = files
        .ca
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_BUNDLE));
    let mut roots = RootCertStore::empty();
    for cert in certificates(&ca)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: ca.clone(),
            what: "CA certificate",
            detail: Some(e.to_string()),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(certificates(cert)?, private_key(key)?)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsError::HalfClientIdentity),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let pem_error = |detail: Option<String>| TlsError::Pem {
        path: path.to_owned(),
        what: "certificate",
        detail,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(Some(e.to_string())))?;
    if certs.is_empty() {
        return Err(pem_error(None));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: "private key",
        detail: Some(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named_in_the_error() {
        let files = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsFiles::default()
        };
        let e = connector(&files).err().expect("an error").to_string();
        assert!(e.starts_with("cannot read /nonexistent/ca.pem:"), "{e}");
    }

    #[test]
    fn a_file_without_pem_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let files = TlsFiles {
            ca: Some(ca.clone()),
            ..TlsFiles::default()
        };
        let e = connector(&files).err().expect("an error").to_string();
        assert_eq!(
            e,
            format!("{} holds no usable certificate in PEM form", ca.display())
        );
    }
}
