//! Certificates for the webhook: a CA and a serving certificate signed by it, for
//! `mysql-webhook certs` (the Service's DNS names, files for a Secret and the caBundle for the
//! webhook configurations) and for `serve --dev` (localhost and 127.0.0.1). ECDSA P-256 keys,
//! as Kubewarden's controller uses.
//!
//! The CA's key is written beside its certificate (`ca.key`, mode 0600, never in the Secret the
//! webhook mounts), so that `certs --renew` can sign a new serving certificate with the same CA
//! and the caBundle of the webhook configurations stays valid.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use mysql_webhook_core::consts::{TLS_CA_FILE, TLS_CA_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use mysql_webhook_core::names::NameRule;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot generate the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{} already exists; pass --force to overwrite it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("--days must be between 1 and 3650, not {0}")]
    Validity(u32),
    #[error("--service {0:?} is not a Service name ({rule}); add IP addresses with --ip", rule = NameRule::Dns1035Label.description())]
    ServiceName(String),
    #[error("cannot read the CA to renew with from {}: {source}; make a new CA with `certs` without --renew", path.display())]
    ReadCa { path: PathBuf, source: std::io::Error },
    #[error("the CA in {} can't be used: {source}", dir.display())]
    BadCa { source: rcgen::Error, dir: PathBuf },
    #[error(
        "the CA expires on {ca_expiry}, before a certificate valid {days} days would; make a new CA (`certs` without --renew) and update the caBundle"
    )]
    CaExpiresFirst { ca_expiry: OffsetDateTime, days: u32 },
}

/// A CA and a serving certificate, PEM-encoded.
pub struct Bundle {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA's key when the CA is new; `None` for a renewal, whose CA files stay as they are.
    ca_key_pem: Option<String>,
}

impl std::fmt::Debug for Bundle {
    // Never print a key, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Bundle {
    /// The `caBundle` field of a webhook configuration: the CA, base64 of its PEM.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
}

/// The names a webhook Service answers to inside the cluster, and `ips` (for a webhook reached
/// by address, such as one running outside the cluster).
pub fn service_names(service: &str, namespace: &str, ips: &[IpAddr]) -> Result<Vec<String>, CertsError> {
    if !NameRule::Dns1035Label.accepts(service) {
        return Err(CertsError::ServiceName(service.to_owned()));
    }
    let dns = [
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    Ok(dns.into_iter().chain(ips.iter().map(IpAddr::to_string)).collect())
}

/// Makes a CA and a serving certificate for `names` (DNS names or IP addresses), valid `days`;
/// the CA is valid twice as long, so that renewals (see [`renew`]) can keep it.
pub fn generate(common_name: &str, names: Vec<String>, days: u32) -> Result<Bundle, CertsError> {
    if !(1..=3650).contains(&days) {
        return Err(CertsError::Validity(days));
    }
    let now = OffsetDateTime::now_utc();
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, format!("{common_name} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = backdated(now);
    // The CA outlives the serving certificate so a renewal can keep the caBundle.
    ca.not_after = now + Duration::days(i64::from(days) * 2);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);
    let (cert_pem, key_pem) = sign(&issuer, common_name, names, days, now)?;
    Ok(Bundle { ca_pem: ca_cert.pem(), cert_pem, key_pem, ca_key_pem: Some(ca_key_pem) })
}

/// A new serving certificate and key for `names`, valid `days`, signed by the CA that an earlier
/// [`generate`] wrote into `dir` (`ca.crt`, `ca.key`): the caBundle stays the same.
pub fn renew(dir: &Path, common_name: &str, names: Vec<String>, days: u32) -> Result<Bundle, CertsError> {
    if !(1..=3650).contains(&days) {
        return Err(CertsError::Validity(days));
    }
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(|source| CertsError::ReadCa { path, source })
    };
    let (ca_pem, ca_key_pem) = (read(TLS_CA_FILE)?, read(TLS_CA_KEY_FILE)?);
    let bad_ca = |source| CertsError::BadCa { source, dir: dir.to_owned() };
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(bad_ca)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(bad_ca)?;
    let now = OffsetDateTime::now_utc();
    let ca_expiry = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .ok()
        .and_then(|(_, pem)| pem.parse_x509().ok().map(|cert| cert.validity().not_after.timestamp()))
        .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
        .ok_or_else(|| bad_ca(rcgen::Error::CouldNotParseCertificate))?;
    if ca_expiry < now + Duration::days(i64::from(days)) {
        return Err(CertsError::CaExpiresFirst { ca_expiry, days });
    }
    let (cert_pem, key_pem) = sign(&issuer, common_name, names, days, now)?;
    Ok(Bundle { ca_pem, cert_pem, key_pem, ca_key_pem: None })
}

/// A little backdating absorbs clock skew between this machine and the API server.
fn backdated(now: OffsetDateTime) -> OffsetDateTime {
    now - Duration::hours(1)
}

/// A serving certificate signed by `issuer`: (certificate, key) in PEM.
fn sign(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: Vec<String>,
    days: u32,
    now: OffsetDateTime,
) -> Result<(String, String), CertsError> {
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, common_name);
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = backdated(now);
    leaf.not_after = now + Duration::days(i64::from(days));
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, issuer)?;
    Ok((leaf_cert.pem(), leaf_key.serialize_pem()))
}

/// Writes `tls.crt` and `tls.key` (mode 0600) into `dir`, and for a new CA `ca.crt` and `ca.key`
/// (mode 0600), refusing to overwrite any of them unless `force`. A renewal overwrites the
/// serving pair: replacing it is what it is for.
pub fn write(bundle: &Bundle, dir: &Path, force: bool) -> Result<(), CertsError> {
    fs::create_dir_all(dir).map_err(|source| CertsError::Write { path: dir.to_owned(), source })?;
    let mut files = Vec::new();
    if let Some(ca_key_pem) = &bundle.ca_key_pem {
        files.extend([(TLS_CA_FILE, &bundle.ca_pem, 0o644), (TLS_CA_KEY_FILE, ca_key_pem, 0o600)]);
    }
    files.extend([(TLS_CERT_FILE, &bundle.cert_pem, 0o644), (TLS_KEY_FILE, &bundle.key_pem, 0o600)]);
    let force = force || bundle.ca_key_pem.is_none();
    if !force && let Some((name, ..)) = files.iter().find(|(name, ..)| dir.join(name).exists()) {
        return Err(CertsError::Exists(dir.join(name)));
    }
    for (name, content, mode) in files {
        let path = dir.join(name);
        write_file(&path, content, mode).map_err(|source| CertsError::Write { path, source })?;
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so a server reloading the directory never reads
/// a half-written key; the mode is set before any content is written.
fn write_file(path: &Path, content: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let temporary = path.with_extension("tmp");
    let mut file =
        fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&temporary)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(content.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn san(cert_pem: &str) -> Vec<String> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value.general_names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn ip_addresses_are_added_as_ip_names_only() {
        let ips = ["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let bundle = generate("mysql-webhook", service_names("hook", "infra", &ips).unwrap(), 30).unwrap();
        let names = san(&bundle.cert_pem);
        assert_eq!(names.len(), 6, "{names:?}");
        // x509-parser prints addresses as hex octets.
        assert_eq!(names[4], "IPAddress(7f:00:00:01)");
        assert_eq!(names[5], "IPAddress(00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01)");
    }

    #[test]
    fn refuses_an_address_as_the_service_name_and_points_to_ip() {
        let error = service_names("127.0.0.1", "infra", &[]).unwrap_err().to_string();
        assert!(error.starts_with("--service \"127.0.0.1\" is not a Service name"), "{error}");
        assert!(error.ends_with("add IP addresses with --ip"), "{error}");
    }

    #[test]
    fn a_renewal_keeps_the_ca_and_its_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate("hook", vec!["hook.infra.svc".into()], 30).unwrap();
        write(&first, dir.path(), false).unwrap();
        let key_mode = |name| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777
        };
        assert_eq!((key_mode(TLS_CA_KEY_FILE), key_mode(TLS_KEY_FILE)), (0o600, 0o600));

        let renewed = renew(dir.path(), "hook", vec!["hook.infra.svc".into()], 30).unwrap();
        write(&renewed, dir.path(), false).unwrap();
        assert_eq!(renewed.ca_bundle(), first.ca_bundle());
        assert_ne!(renewed.cert_pem, first.cert_pem);
        assert_eq!(fs::read_to_string(dir.path().join(TLS_CA_FILE)).unwrap(), first.ca_pem);
        assert_eq!(fs::read_to_string(dir.path().join(TLS_CERT_FILE)).unwrap(), renewed.cert_pem);
        // The new certificate chains to the old CA.
        let (_, ca) = x509_parser::pem::parse_x509_pem(first.ca_pem.as_bytes()).unwrap();
        let ca = ca.parse_x509().unwrap();
        let (_, leaf) = x509_parser::pem::parse_x509_pem(renewed.cert_pem.as_bytes()).unwrap();
        let leaf = leaf.parse_x509().unwrap();
        assert!(leaf.verify_signature(Some(ca.public_key())).is_ok());
    }

    #[test]
    fn a_renewal_refuses_a_missing_ca_or_one_that_expires_first() {
        let dir = tempfile::tempdir().unwrap();
        let missing = renew(dir.path(), "hook", vec!["hook".into()], 30).unwrap_err().to_string();
        assert!(missing.contains("make a new CA with `certs` without --renew"), "{missing}");
        write(&generate("hook", vec!["hook".into()], 10).unwrap(), dir.path(), false).unwrap();
        let late = renew(dir.path(), "hook", vec!["hook".into()], 30).unwrap_err();
        assert!(matches!(late, CertsError::CaExpiresFirst { days: 30, .. }), "{late}");
    }

    #[test]
    fn the_serving_certificate_names_every_service_dns_name() {
        let bundle = generate("mysql-webhook", service_names("hook", "infra", &[]).unwrap(), 30).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(bundle.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san.value.general_names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            names,
            [
                "DNSName(hook)",
                "DNSName(hook.infra)",
                "DNSName(hook.infra.svc)",
                "DNSName(hook.infra.svc.cluster.local)"
            ]
        );
        let days =
            (cert.validity().not_after.timestamp() - OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
        assert!((29..=30).contains(&days), "{days}");
    }

    #[test]
    fn refuses_a_validity_outside_one_day_to_ten_years() {
        assert!(matches!(generate("x", vec!["a".into()], 0), Err(CertsError::Validity(0))));
        assert!(matches!(generate("x", vec!["a".into()], 5000), Err(CertsError::Validity(5000))));
    }
}
