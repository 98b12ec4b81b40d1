//! TLS for the webhook: rustls (ring provider, TLS 1.2 and 1.3) with a certificate resolver whose
//! key pair can be swapped while the server runs. A reloader polls the files and swaps in a new
//! pair when their content changes; a broken pair is refused and the old one keeps serving.
//!
//! Polling rather than inotify: Secret and cert-manager volumes are updated by swapping a
//! `..data` symlink, which an inotify watch on the files misses; reading two small files every
//! couple of seconds is cheap and always right.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::metrics::Metrics;

/// How often the certificate files are checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error("the key does not fit the certificate or can't be used: {0}")]
    Key(#[from] rustls::Error),
    #[error("cannot read the certificate's validity: {0}")]
    Validity(String),
}

/// A loaded certificate and key, with what the reloader compares and the metrics report.
struct Loaded {
    key: Arc<CertifiedKey>,
    files: (Vec<u8>, Vec<u8>),
    not_after: i64,
}

/// The serving certificate in use; swapped by [`CertificateStore::reload`].
#[derive(Debug)]
pub struct CertificateStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file contents last seen (loaded or refused), so each change is tried once.
    seen: RwLock<(Vec<u8>, Vec<u8>)>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn load(cert_path: &Path, key_path: &Path) -> Result<Loaded, TlsError> {
    let read =
        |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source });
    let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: cert_path.to_owned(), message: e.to_string() })?;
    let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate(cert_path.to_owned()))?;
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| TlsError::Validity(e.to_string()))?
        .1
        .validity()
        .not_after
        .timestamp();
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Pem { path: key_path.to_owned(), message: e.to_string() })?;
    let key = CertifiedKey::from_der(chain, key, &provider())?;
    Ok(Loaded { key: Arc::new(key), files: (cert_pem, key_pem), not_after })
}

impl CertificateStore {
    /// Loads the pair; an error here stops the server from starting.
    pub fn open(
        cert_path: &Path,
        key_path: &Path,
        metrics: &Metrics,
    ) -> Result<Arc<CertificateStore>, TlsError> {
        let loaded = load(cert_path, key_path)?;
        metrics.certificate_expiry.set(loaded.not_after);
        Ok(Arc::new(CertificateStore {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(loaded.key),
            seen: RwLock::new(loaded.files),
        }))
    }

    /// Checks the files once: a changed, valid pair replaces the current one; a changed, broken
    /// pair is refused (logged, counted) and the current one stays.
    pub fn reload(&self, metrics: &Metrics) {
        let unchanged = |cert: &[u8], key: &[u8]| {
            let seen = self.seen.read().expect("lock poisoned only by a panic");
            seen.0 == cert && seen.1 == key
        };
        match load(&self.cert_path, &self.key_path) {
            Ok(loaded) if unchanged(&loaded.files.0, &loaded.files.1) => {}
            Ok(loaded) => {
                *self.current.write().expect("lock poisoned only by a panic") = loaded.key;
                *self.seen.write().expect("lock poisoned only by a panic") = loaded.files;
                metrics.certificate_expiry.set(loaded.not_after);
                metrics.record_certificate_reload(true);
                tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
            }
            Err(error) => {
                // Only a change is worth a report: a pair that stays broken is refused once.
                let files = (
                    std::fs::read(&self.cert_path).unwrap_or_default(),
                    std::fs::read(&self.key_path).unwrap_or_default(),
                );
                if !unchanged(&files.0, &files.1) {
                    *self.seen.write().expect("lock poisoned only by a panic") = files;
                    metrics.record_certificate_reload(false);
                    tracing::error!(%error, "new serving certificate refused; the previous one keeps serving");
                }
            }
        }
    }

    /// The rustls configuration serving whatever pair is current: h2 and HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertificateStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().expect("lock poisoned only by a panic").clone())
    }
}
