//! TLS for the webhook: rustls (ring provider, TLS 1.2 and 1.3) with a certificate resolver whose
//! key pair can be swapped while the server runs. A reloader polls the files and swaps in a new
//! pair when their content changes; a broken pair is refused and the old one keeps serving.
//!
//! Polling rather than inotify: Secret and cert-manager volumes are updated by swapping a
//! `..data` symlink, which an inotify watch on the files misses; reading two small files every
//! couple of seconds is cheap and always right.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
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

/// A loaded certificate and key, and when the certificate expires (for the metric).
struct Loaded {
    key: Arc<CertifiedKey>,
    not_after: i64,
}

/// What the two files held at one look.
struct Snapshot {
    cert: std::io::Result<Vec<u8>>,
    key: std::io::Result<Vec<u8>>,
}

impl Snapshot {
    fn read(cert_path: &Path, key_path: &Path) -> Snapshot {
        Snapshot { cert: std::fs::read(cert_path), key: std::fs::read(key_path) }
    }

    /// Same content, or the same failure to read it (`io::Error` has no equality).
    fn same_as(&self, other: &Snapshot) -> bool {
        fn same(a: &std::io::Result<Vec<u8>>, b: &std::io::Result<Vec<u8>>) -> bool {
            match (a, b) {
                (Ok(a), Ok(b)) => a == b,
                (Err(a), Err(b)) => a.kind() == b.kind(),
                _ => false,
            }
        }
        same(&self.cert, &other.cert) && same(&self.key, &other.key)
    }

    fn load(&self, cert_path: &Path, key_path: &Path) -> Result<Loaded, TlsError> {
        fn content<'a>(read: &'a std::io::Result<Vec<u8>>, path: &Path) -> Result<&'a [u8], TlsError> {
            read.as_deref().map_err(|e| TlsError::Read {
                path: path.to_owned(),
                source: std::io::Error::new(e.kind(), e.to_string()),
            })
        }
        let (cert_pem, key_pem) = (content(&self.cert, cert_path)?, content(&self.key, key_path)?);
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem { path: cert_path.to_owned(), message: e.to_string() })?;
        let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate(cert_path.to_owned()))?;
        let not_after = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| TlsError::Validity(e.to_string()))?
            .1
            .validity()
            .not_after
            .timestamp();
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError::Pem { path: key_path.to_owned(), message: e.to_string() })?;
        let key = CertifiedKey::from_der(chain, key, &provider())?;
        Ok(Loaded { key: Arc::new(key), not_after })
    }
}

/// The reloader's memory between two looks.
struct Watch {
    /// The files last loaded or refused: only a change from these is looked at.
    seen: Snapshot,
    /// Files that changed but didn't load at the previous look.
    pending: Option<Snapshot>,
}

/// The serving certificate in use; swapped by [`CertificateStore::reload`].
pub struct CertificateStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    watch: Mutex<Watch>,
}

/// By hand, so the key's bytes (in `watch`) never reach a log line.
impl std::fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

impl CertificateStore {
    /// Loads the pair; an error here stops the server from starting.
    pub fn open(
        cert_path: &Path,
        key_path: &Path,
        metrics: &Metrics,
    ) -> Result<Arc<CertificateStore>, TlsError> {
        let snapshot = Snapshot::read(cert_path, key_path);
        let loaded = snapshot.load(cert_path, key_path)?;
        metrics.certificate_expiry.set(loaded.not_after);
        Ok(Arc::new(CertificateStore {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(loaded.key),
            watch: Mutex::new(Watch { seen: snapshot, pending: None }),
        }))
    }

    /// Looks at the files once. Unchanged: nothing to do (two small reads and a comparison). A
    /// changed pair that loads replaces the current one. A changed pair that doesn't load is
    /// refused (logged, counted) only if it is still the same at the next look: files written
    /// one after the other (`certs --force` into the served directory, a copy by hand) pass
    /// through a moment where the new certificate sits beside the old key, and that moment is
    /// not a failure. Either way the current pair keeps serving until a good one arrives.
    pub fn reload(&self, metrics: &Metrics) {
        let snapshot = Snapshot::read(&self.cert_path, &self.key_path);
        let mut watch = self.watch.lock().expect("lock poisoned only by a panic");
        if snapshot.same_as(&watch.seen) {
            watch.pending = None;
            return;
        }
        match snapshot.load(&self.cert_path, &self.key_path) {
            Ok(loaded) => {
                *self.current.write().expect("lock poisoned only by a panic") = loaded.key;
                metrics.certificate_expiry.set(loaded.not_after);
                metrics.record_certificate_reload(true);
                tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                *watch = Watch { seen: snapshot, pending: None };
            }
            Err(error) if watch.pending.as_ref().is_some_and(|pending| pending.same_as(&snapshot)) => {
                metrics.record_certificate_reload(false);
                tracing::error!(%error, "new serving certificate refused; the previous one keeps serving");
                *watch = Watch { seen: snapshot, pending: None };
            }
            Err(error) => {
                tracing::debug!(%error, "the certificate files changed but don't load; looking again before refusing them");
                watch.pending = Some(snapshot);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{self, Bundle};
    use mysql_webhook_core::consts::{TLS_CERT_FILE, TLS_KEY_FILE};

    fn bundle() -> Bundle {
        certs::generate("test", vec!["localhost".into()], 2).unwrap()
    }

    fn served(store: &CertificateStore) -> Vec<u8> {
        store.current.read().unwrap().cert[0].to_vec()
    }

    fn der(bundle: &Bundle) -> Vec<u8> {
        CertificateDer::from_pem_slice(bundle.cert_pem.as_bytes()).unwrap().to_vec()
    }

    fn reloads(metrics: &Metrics, result: &str) -> Option<String> {
        let prefix = format!("mysql_webhook_certificate_reloads_total{{result=\"{result}\"}} ");
        metrics.encode().lines().find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
    }

    fn store_with(first: &Bundle) -> (tempfile::TempDir, Metrics, Arc<CertificateStore>) {
        let dir = tempfile::tempdir().unwrap();
        certs::write(first, dir.path(), false).unwrap();
        let metrics = Metrics::new();
        let store =
            CertificateStore::open(&dir.path().join(TLS_CERT_FILE), &dir.path().join(TLS_KEY_FILE), &metrics)
                .unwrap();
        (dir, metrics, store)
    }

    #[test]
    fn a_pair_written_file_by_file_is_reloaded_without_a_refusal() {
        let (first, second) = (bundle(), bundle());
        let (dir, metrics, store) = store_with(&first);

        std::fs::write(dir.path().join(TLS_CERT_FILE), &second.cert_pem).unwrap();
        store.reload(&metrics);
        assert_eq!(served(&store), der(&first), "the new certificate beside the old key isn't served");
        assert_eq!(reloads(&metrics, "failure"), None, "nor refused yet");

        std::fs::write(dir.path().join(TLS_KEY_FILE), &second.key_pem).unwrap();
        store.reload(&metrics);
        assert_eq!(served(&store), der(&second));
        assert_eq!(reloads(&metrics, "success").as_deref(), Some("1"));
        assert_eq!(reloads(&metrics, "failure"), None);
    }

    #[test]
    fn a_broken_pair_is_refused_once_at_the_second_look_and_the_previous_one_keeps_serving() {
        let (first, second) = (bundle(), bundle());
        let (dir, metrics, store) = store_with(&first);

        std::fs::write(dir.path().join(TLS_KEY_FILE), "not a key").unwrap();
        store.reload(&metrics);
        assert_eq!(reloads(&metrics, "failure"), None);
        store.reload(&metrics);
        store.reload(&metrics);
        assert_eq!(reloads(&metrics, "failure").as_deref(), Some("1"), "refused once, not at every look");
        assert_eq!(served(&store), der(&first));

        certs::write(&second, dir.path(), true).unwrap();
        store.reload(&metrics);
        assert_eq!(served(&store), der(&second), "a good pair after a broken one is taken");
    }

    #[test]
    fn the_store_never_shows_the_key_in_debug_output() {
        let (_dir, _metrics, store) = store_with(&bundle());
        let debug = format!("{store:?}");
        assert!(debug.starts_with("CertificateStore { cert_path: "), "{debug}");
        assert!(!debug.contains("PRIVATE KEY") && !debug.contains("watch"), "{debug}");
    }
}
