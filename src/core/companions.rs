//! The objects an expanded StatefulSet needs beside it: the ConfigMap of server configuration,
//! the headless and read Services, the PodDisruptionBudget, the credentials Secret and the
//! members' TLS identity (a Secret, or a cert-manager Certificate that makes it). Pure
//! functions of the [`Plan`]; the controller adds the owner reference and applies them, `mutate`
//! prints them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::consts::*;
use crate::plan::{IssuerRef, Plan};
use crate::scripts;

/// The companions applied for every managed StatefulSet (the Secrets are separate: they are
/// created only when missing and never printed by default).
#[derive(Debug, Clone, PartialEq)]
pub struct Companions {
    pub config_map: ConfigMap,
    pub headless_service: Service,
    pub read_service: Service,
    pub pod_disruption_budget: PodDisruptionBudget,
    /// The cert-manager Certificate, with annotation `tls-issuer`.
    pub certificate: Option<serde_json::Value>,
}

impl Companions {
    pub fn for_plan(plan: &Plan) -> Companions {
        Companions {
            config_map: config_map(plan),
            headless_service: service(plan, &plan.service_name, true),
            read_service: service(plan, &plan.read_service, false),
            pod_disruption_budget: pod_disruption_budget(plan),
            certificate: plan.tls_issuer.as_ref().map(|issuer| certificate(plan, issuer)),
        }
    }
}

/// The root and replication passwords of a new credentials Secret. The caller brings the
/// random generator (the core does no IO); see [`Credentials::generate`].
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub root_password: String,
    pub replication_password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

impl Credentials {
    /// Two independent 32-character alphanumeric passwords (about 190 bits each) from `rng`,
    /// which must be a cryptographic generator (the shells pass the OS's). Alphanumeric: safe in
    /// SQL, shell and YAML without quoting.
    pub fn generate(rng: &mut impl rand::Rng) -> Credentials {
        use rand::distr::{Alphanumeric, Distribution};
        let mut password = || Alphanumeric.sample_iter(&mut *rng).take(32).map(char::from).collect();
        Credentials { root_password: password(), replication_password: password() }
    }
}

fn metadata(plan: &Plan, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: plan.namespace.clone(),
        labels: Some(BTreeMap::from([
            (LABEL_MANAGED_BY.into(), MANAGED_BY.into()),
            (LABEL_STATEFULSET.into(), plan.name.clone()),
        ])),
        ..Default::default()
    }
}

pub fn config_map(plan: &Plan) -> ConfigMap {
    ConfigMap {
        metadata: metadata(plan, &plan.config_map),
        data: Some(
            scripts::config(plan.flavor).into_iter().map(|(key, value)| (key.into(), value)).collect(),
        ),
        ..Default::default()
    }
}

/// The headless Service gives members their stable DNS names (`<sts>-N.<service>`); the read
/// Service spreads reads over ready members.
fn service(plan: &Plan, name: &str, headless: bool) -> Service {
    Service {
        metadata: metadata(plan, name),
        spec: Some(ServiceSpec {
            cluster_ip: headless.then(|| "None".into()),
            selector: Some(plan.selector.clone()),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME_MYSQL.into()),
                port: PORT_MYSQL,
                target_port: Some(IntOrString::Int(PORT_MYSQL)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn pod_disruption_budget(plan: &Plan) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(plan, &plan.name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(plan.selector.clone()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The credentials Secret with the given passwords.
pub fn credentials_secret(plan: &Plan, credentials: &Credentials) -> Secret {
    Secret {
        metadata: metadata(plan, &plan.secret),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (SECRET_KEY_ROOT_PASSWORD.into(), ByteString(credentials.root_password.clone().into_bytes())),
            (
                SECRET_KEY_REPLICATION_PASSWORD.into(),
                ByteString(credentials.replication_password.clone().into_bytes()),
            ),
        ])),
        ..Default::default()
    }
}

/// The members' TLS identity, PEM-encoded: what Secret `<name>-tls` holds. Made and renewed by
/// the caller (the pure core has no randomness or clock); see `certs::member_identity`.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// The CA bundle members verify each other against: the signing CA first, then, during a
    /// rollover, the CA it replaces.
    pub ca_bundle: String,
    /// The signing CA's private key; `None` in a Secret someone else made (cert-manager).
    pub ca_key: Option<String>,
    /// During a CA rollover, the key of the next CA (the bundle's last), not signing yet.
    pub ca_next_key: Option<String>,
    /// The members' certificate (server and client authentication) and its key.
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for TlsIdentity {
    // Never print a private key, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity { .. }")
    }
}

impl TlsIdentity {
    /// Reads the identity from a TLS Secret's data; `None` when a key of the contract is missing
    /// or not UTF-8.
    pub fn from_secret(secret: &Secret) -> Option<TlsIdentity> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| data.get(key).and_then(|value| String::from_utf8(value.0.clone()).ok());
        Some(TlsIdentity {
            ca_bundle: text(TLS_CA_FILE)?,
            ca_key: text(TLS_CA_KEY_FILE),
            ca_next_key: text(TLS_CA_NEXT_KEY_FILE),
            cert: text(TLS_CERT_FILE)?,
            key: text(TLS_KEY_FILE)?,
        })
    }
}

/// The DNS names the members' certificate carries: every member through the headless Service
/// (`*.<service>`, and with the namespace `*.<service>.<namespace>.svc` and the cluster-local
/// form), the primary's name (`<sts>-<first>.<service>`, which replicas verify: OpenSSL, hence
/// MySQL and MariaDB, refuses a wildcard over a single label such as `*.<service>`), and both
/// Services' own names, so a client may verify whichever it connects to.
pub fn member_dns_names(plan: &Plan) -> Vec<String> {
    let forms = |name: String| {
        let mut forms = vec![name.clone()];
        if let Some(namespace) = &plan.namespace {
            forms.push(format!("{name}.{namespace}.svc"));
            forms.push(format!("{name}.{namespace}.svc.cluster.local"));
        }
        forms
    };
    let primary = format!("{}-{}.{}", plan.name, plan.first_ordinal, plan.service_name);
    [format!("*.{}", plan.service_name), primary, plan.service_name.clone(), plan.read_service.clone()]
        .into_iter()
        .flat_map(forms)
        .collect()
}

/// Secret `<name>-tls` holding `identity`, typed `kubernetes.io/tls` like cert-manager's.
pub fn tls_secret(plan: &Plan, identity: &TlsIdentity) -> Secret {
    let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
    let mut data = BTreeMap::from([
        (TLS_CA_FILE.to_owned(), bytes(&identity.ca_bundle)),
        (TLS_CERT_FILE.to_owned(), bytes(&identity.cert)),
        (TLS_KEY_FILE.to_owned(), bytes(&identity.key)),
    ]);
    for (key, value) in [(TLS_CA_KEY_FILE, &identity.ca_key), (TLS_CA_NEXT_KEY_FILE, &identity.ca_next_key)] {
        if let Some(value) = value {
            data.insert(key.into(), bytes(value));
        }
    }
    Secret {
        metadata: metadata(plan, &plan.tls_secret),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The cert-manager Certificate that provides Secret `<name>-tls` when annotation `tls-issuer`
/// names an issuer: the members' names, server and client authentication (the clone port and
/// replication verify both ends). The issuer must fill `ca.crt` (a CA or Vault issuer does).
pub fn certificate(plan: &Plan, issuer: &IssuerRef) -> serde_json::Value {
    let metadata = serde_json::to_value(metadata(plan, &plan.tls_secret)).expect("ObjectMeta serialises");
    serde_json::json!({
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": "Certificate",
        "metadata": metadata,
        "spec": {
            "secretName": plan.tls_secret,
            "commonName": plan.service_name,
            "dnsNames": member_dns_names(plan),
            "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"group": "cert-manager.io", "kind": issuer.kind, "name": issuer.name},
        }
    })
}
