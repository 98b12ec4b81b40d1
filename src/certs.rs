//! Certificates for the webhook: a CA and a serving certificate signed by it, for
//! `mysql-webhook certs` (the Service's DNS names, files for a Secret and the caBundle for the
//! webhook configurations) and for `serve --dev` (localhost and 127.0.0.1). ECDSA P-256 keys,
//! as Kubewarden's controller uses.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::consts::{TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE};

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
}

/// A CA and a serving certificate, PEM-encoded.
pub struct Bundle {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Bundle {
    /// The `caBundle` field of a webhook configuration: the CA, base64 of its PEM.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
}

/// The names a webhook Service answers to inside the cluster.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Makes a CA and a serving certificate for `names` (DNS names or IP addresses), valid `days`.
pub fn generate(common_name: &str, names: Vec<String>, days: u32) -> Result<Bundle, CertsError> {
    if !(1..=3650).contains(&days) {
        return Err(CertsError::Validity(days));
    }
    let now = OffsetDateTime::now_utc();
    // A little backdating absorbs clock skew between this machine and the API server.
    let not_before = now - Duration::hours(1);

    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, format!("{common_name} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = not_before;
    // The CA outlives the serving certificate so a renewal can keep the caBundle.
    ca.not_after = now + Duration::days(i64::from(days) * 2);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, common_name);
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = now + Duration::days(i64::from(days));
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    Ok(Bundle { ca_pem: ca_cert.pem(), cert_pem: leaf_cert.pem(), key_pem: leaf_key.serialize_pem() })
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, refusing to overwrite any of
/// them unless `force`.
pub fn write(bundle: &Bundle, dir: &Path, force: bool) -> Result<(), CertsError> {
    fs::create_dir_all(dir).map_err(|source| CertsError::Write { path: dir.to_owned(), source })?;
    let files = [
        (TLS_CA_FILE, &bundle.ca_pem, 0o644),
        (TLS_CERT_FILE, &bundle.cert_pem, 0o644),
        (TLS_KEY_FILE, &bundle.key_pem, 0o600),
    ];
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

    #[test]
    fn the_serving_certificate_names_every_service_dns_name() {
        let bundle = generate("mysql-webhook", service_names("hook", "infra"), 30).unwrap();
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
