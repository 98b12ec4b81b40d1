//! The members' TLS identity of each StatefulSet (Secret `<name>-tls`): a CA and one certificate
//! for every member (server and client authentication), made, renewed and rolled over by the
//! controller, and by `mutate --with-secret`. ECDSA P-256 keys. The identity type and the Secret
//! are pure (`mysql_webhook_core::companions`); the randomness and the clock are here.

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use mysql_webhook_core::companions::TlsIdentity;
use mysql_webhook_core::consts::{TLS_CA_FILE, TLS_CA_KEY_FILE, TLS_CA_NEXT_KEY_FILE, TLS_CERT_FILE};

#[derive(Debug, thiserror::Error)]
pub enum MemberTlsError {
    #[error("cannot generate the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the TLS Secret's {0} is not a PEM certificate or key")]
    Unreadable(&'static str),
}

/// A little backdating absorbs clock skew between this machine and the API server.
const BACKDATE: Duration = Duration::hours(1);

fn not_before(now: OffsetDateTime) -> OffsetDateTime {
    now - BACKDATE
}

/// A new self-signed CA valid for `validity`: its PEM and the issuer that signs with it.
fn authority(
    common_name: &str,
    validity: Duration,
) -> Result<(String, Issuer<'static, KeyPair>), MemberTlsError> {
    let now = OffsetDateTime::now_utc();
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, common_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = not_before(now);
    ca.not_after = now + validity;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    Ok((ca_cert.pem(), Issuer::new(ca, ca_key)))
}

/// A certificate for `names` signed by `issuer`, valid for `validity`: its PEM and its key's.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: Vec<String>,
    validity: Duration,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<(String, String), MemberTlsError> {
    let now = OffsetDateTime::now_utc();
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, common_name);
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = usages;
    // Names its CA by key, not only by subject: during a rollover two CAs of the bundle share a
    // subject, and a verifier must pick the one that signed.
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before(now);
    leaf.not_after = now + validity;
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, issuer)?;
    Ok((leaf_cert.pem(), leaf_key.serialize_pem()))
}

/// Lifetime of the members' certificate.
pub const MEMBER_CERT_DAYS: i64 = 90;
/// The members' certificate is renewed when it has less than this left.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// Lifetime of the members' CA. It is replaced (a rollover) when it has less left than a
/// certificate's lifetime and the renewal margin, so no certificate outlives its CA.
pub const MEMBER_CA_DAYS: i64 = 3650;

/// How long a new CA sits in the bundle before it signs: every member must trust it before any
/// presents a certificate from it (the kubelet refreshes Secret volumes within a minute or two,
/// and the listeners restart on the change).
pub const PROMOTE_AFTER_MINUTES: i64 = 60;

/// What a TLS identity needs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// A new certificate from the same CA; the bundle keeps its CAs (minus expired ones).
    Certificate,
    /// A CA rollover, first half: a new CA joins the bundle (after the signing one) and its key
    /// waits in `ca-next.key`; the certificate is unchanged, so members trust the new CA before
    /// any presents a certificate from it.
    Authority,
    /// A CA rollover, second half ([`PROMOTE_AFTER_MINUTES`] later): the new CA signs a new
    /// certificate and comes first in the bundle; the old one stays until it expires, so members
    /// still presenting the old certificate stay trusted.
    Promotion,
}

/// A new members' CA, named with its creation time so that the CAs of a rollover bundle differ.
fn member_authority(common_name: &str) -> Result<(String, Issuer<'static, KeyPair>), MemberTlsError> {
    let created = OffsetDateTime::now_utc().unix_timestamp();
    authority(&format!("{common_name} CA {created}"), Duration::days(MEMBER_CA_DAYS))
}

/// A new members' identity: a CA and a certificate for `names` (server and client
/// authentication: each member is both on the clone port and in replication).
pub fn member_identity(common_name: &str, names: Vec<String>) -> Result<TlsIdentity, MemberTlsError> {
    let (ca_pem, issuer) = member_authority(common_name)?;
    let (cert, key) = member_leaf(&issuer, common_name, names)?;
    Ok(TlsIdentity {
        ca_bundle: ca_pem,
        ca_key: Some(issuer.key().serialize_pem()),
        ca_next_key: None,
        cert,
        key,
    })
}

fn member_leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: Vec<String>,
) -> Result<(String, String), MemberTlsError> {
    let usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    leaf(issuer, common_name, names, Duration::days(MEMBER_CERT_DAYS), usages)
}

/// Does `identity` need a renewal at `now`? Never for one without the CA's key (made by
/// cert-manager or by hand: whoever made it renews it).
pub fn renewal_due(identity: &TlsIdentity, now: OffsetDateTime) -> Result<Option<Renewal>, MemberTlsError> {
    if identity.ca_key.is_none() {
        return Ok(None);
    }
    let bundle = certificates(&identity.ca_bundle);
    let signing_ca = bundle.first().ok_or(MemberTlsError::Unreadable(TLS_CA_FILE))?;
    let cert =
        certificates(&identity.cert).into_iter().next().ok_or(MemberTlsError::Unreadable(TLS_CERT_FILE))?;
    if identity.ca_next_key.is_some() {
        // The new CA is the last of the bundle; its (backdated) start says since when members
        // have trusted it.
        let next = bundle.last().ok_or(MemberTlsError::Unreadable(TLS_CA_FILE))?;
        let promote = now - (next.not_before + BACKDATE) >= Duration::minutes(PROMOTE_AFTER_MINUTES);
        return Ok(promote.then_some(Renewal::Promotion));
    }
    Ok(if signing_ca.not_after - now < Duration::days(MEMBER_CERT_DAYS + RENEW_BEFORE_DAYS) {
        Some(Renewal::Authority)
    } else if cert.not_after - now < Duration::days(RENEW_BEFORE_DAYS) {
        Some(Renewal::Certificate)
    } else {
        None
    })
}

/// Renews `identity` for `names` as `renewal` says. The identity must carry the CA's key (and,
/// for a promotion, the next CA's).
pub fn renew(
    identity: &TlsIdentity,
    renewal: Renewal,
    common_name: &str,
    names: Vec<String>,
) -> Result<TlsIdentity, MemberTlsError> {
    let now = OffsetDateTime::now_utc();
    let mut valid: Vec<String> = certificates(&identity.ca_bundle)
        .into_iter()
        .filter(|ca| ca.not_after > now)
        .map(|ca| ca.pem)
        .collect();
    let key = |key: &Option<String>, name| key.clone().ok_or(MemberTlsError::Unreadable(name));
    let signer = |ca_pem: &str, key_pem: &str| -> Result<Issuer<'static, KeyPair>, MemberTlsError> {
        Ok(Issuer::from_ca_cert_pem(ca_pem, KeyPair::from_pem(key_pem)?)?)
    };
    match renewal {
        Renewal::Certificate => {
            let ca_key = key(&identity.ca_key, TLS_CA_KEY_FILE)?;
            let issuer = signer(valid.first().ok_or(MemberTlsError::Unreadable(TLS_CA_FILE))?, &ca_key)?;
            let (cert, key) = member_leaf(&issuer, common_name, names)?;
            Ok(TlsIdentity { ca_bundle: valid.concat(), cert, key, ..identity.clone() })
        }
        Renewal::Authority => {
            let (next_pem, next) = member_authority(common_name)?;
            valid.push(next_pem);
            Ok(TlsIdentity {
                ca_bundle: valid.concat(),
                ca_next_key: Some(next.key().serialize_pem()),
                ..identity.clone()
            })
        }
        Renewal::Promotion => {
            let next_key = key(&identity.ca_next_key, TLS_CA_NEXT_KEY_FILE)?;
            let next_pem = valid.pop().ok_or(MemberTlsError::Unreadable(TLS_CA_FILE))?;
            let issuer = signer(&next_pem, &next_key)?;
            let (cert, key) = member_leaf(&issuer, common_name, names)?;
            // The previous signing CA stays (until it expires) for members not yet refreshed.
            valid.insert(0, next_pem);
            Ok(TlsIdentity {
                ca_bundle: valid.concat(),
                ca_key: Some(next_key),
                ca_next_key: None,
                cert,
                key,
            })
        }
    }
}

/// One certificate of a PEM bundle.
struct Parsed {
    pem: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// The certificates of a PEM bundle, in order, each as PEM with its validity; what doesn't
/// parse is skipped.
fn certificates(bundle: &str) -> Vec<Parsed> {
    x509_parser::pem::Pem::iter_from_buffer(bundle.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|pem| {
            let validity = pem.parse_x509().ok()?.validity().clone();
            let encoded = base64::engine::general_purpose::STANDARD.encode(&pem.contents);
            let lines: Vec<&str> =
                encoded.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
            Some(Parsed {
                pem: format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                ),
                not_before: validity.not_before.to_datetime(),
                not_after: validity.not_after.to_datetime(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(cert_pem: &str) -> (Vec<String>, Vec<String>) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        let usages = [("server", eku.server_auth), ("client", eku.client_auth)];
        (
            san.value.general_names.iter().map(|n| n.to_string()).collect(),
            usages.iter().filter(|(_, on)| *on).map(|(u, _)| u.to_string()).collect(),
        )
    }

    #[test]
    fn the_members_certificate_serves_and_authenticates_clients_and_never_shows_its_key() {
        let identity = member_identity("orders-hl", vec!["*.orders-hl".into(), "orders-hl".into()]).unwrap();
        assert_eq!(
            names(&identity.cert),
            (
                vec!["DNSName(*.orders-hl)".into(), "DNSName(orders-hl)".into()],
                vec!["server".into(), "client".into()]
            )
        );
        assert_eq!(format!("{identity:?}"), "TlsIdentity { .. }");
        assert_eq!(certificates(&identity.ca_bundle).len(), 1);
        assert!(identity.ca_key.is_some() && identity.ca_next_key.is_none());
    }

    #[test]
    fn renews_the_certificate_before_it_expires_and_rolls_the_ca_over_before_it_does() {
        let identity = member_identity("db", vec!["*.db".into()]).unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(renewal_due(&identity, now).unwrap(), None);
        let days = |n| now + Duration::days(n);
        assert_eq!(renewal_due(&identity, days(MEMBER_CERT_DAYS - RENEW_BEFORE_DAYS - 1)).unwrap(), None);
        assert_eq!(
            renewal_due(&identity, days(MEMBER_CERT_DAYS - RENEW_BEFORE_DAYS + 1)).unwrap(),
            Some(Renewal::Certificate)
        );
        assert_eq!(
            renewal_due(&identity, days(MEMBER_CA_DAYS - MEMBER_CERT_DAYS - RENEW_BEFORE_DAYS + 1)).unwrap(),
            Some(Renewal::Authority)
        );
        // Made by someone else (no CA key): left to them.
        let foreign = TlsIdentity { ca_key: None, ..identity.clone() };
        assert_eq!(renewal_due(&foreign, days(MEMBER_CA_DAYS)).unwrap(), None);

        let renewed = renew(&identity, Renewal::Certificate, "db", vec!["*.db".into()]).unwrap();
        assert_eq!((&renewed.ca_bundle, &renewed.ca_key), (&identity.ca_bundle, &identity.ca_key));
        assert_ne!((&renewed.cert, &renewed.key), (&identity.cert, &identity.key));

        // A rollover: the new CA is trusted first, signs only later.
        let trusted = renew(&identity, Renewal::Authority, "db", vec!["*.db".into()]).unwrap();
        let pems = |bundle: &str| certificates(bundle).into_iter().map(|ca| ca.pem).collect::<Vec<_>>();
        let bundle = pems(&trusted.ca_bundle);
        assert_eq!(bundle.len(), 2);
        assert_eq!(bundle[0], pems(&identity.ca_bundle)[0], "the signing CA stays first");
        assert_eq!(
            (&trusted.cert, &trusted.ca_key),
            (&identity.cert, &identity.ca_key),
            "nothing signed yet"
        );
        assert_eq!(renewal_due(&trusted, now).unwrap(), None, "members must trust it first");
        let later = now + Duration::minutes(PROMOTE_AFTER_MINUTES + 1);
        assert_eq!(renewal_due(&trusted, later).unwrap(), Some(Renewal::Promotion));
        let promoted = renew(&trusted, Renewal::Promotion, "db", vec!["*.db".into()]).unwrap();
        assert_eq!(
            pems(&promoted.ca_bundle),
            [bundle[1].clone(), bundle[0].clone()],
            "new CA first, old kept"
        );
        assert_eq!(promoted.ca_key, trusted.ca_next_key);
        assert_eq!(promoted.ca_next_key, None);
        assert_ne!(promoted.cert, identity.cert);
        assert_eq!(renewal_due(&promoted, now).unwrap(), None);
        // The next renewal signs with the new CA, which comes first.
        let next = renew(&promoted, Renewal::Certificate, "db", vec!["*.db".into()]).unwrap();
        assert_eq!(next.ca_bundle, promoted.ca_bundle);
    }
}
