//! Every built-in policy through the real host: the components embedded in the binary, run by
//! wasmtime on the expansion of real StatefulSets. Each allows the default expansion of a
//! 3-member StatefulSet, denies what it exists to deny, and refuses bad settings naming the
//! field. (Each policy's rules in detail are unit-tested natively in its own crate.)

mod common;

use mysql_webhook::policy::{Policies, PolicyError, Source};
use serde_json::{Value, json};

/// The built-in `policy` alone, with `settings` (a YAML flow mapping).
fn builtin(policy: &str, settings: &str) -> Result<Policies, PolicyError> {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_policies(
        dir.path(),
        &format!("policies:\n- {{name: {policy}, module: 'builtin:{policy}', settings: {settings}}}\n"),
    );
    Policies::load(common::host(), Source::File(path))
}

fn typical() -> Value {
    common::annotated("mysql", "mysql:8.4")
}

/// The one denial of `policy` with `settings` on `sts`, or `None` when it allows.
fn denial(policy: &str, settings: &str, sts: &Value) -> Option<String> {
    let evaluation = builtin(policy, settings).unwrap().evaluate(&common::policy_request(sts), None);
    assert_eq!(evaluation.findings.len(), 1);
    let denials = evaluation.denials();
    assert!(denials.len() <= 1);
    denials.into_iter().next()
}

fn denied_with(policy: &str, settings: &str, sts: &Value, expected: &[&str]) {
    let message = denial(policy, settings, sts).unwrap_or_else(|| panic!("{policy} denies {sts}"));
    assert!(message.starts_with(&format!("{policy}: ")), "{message}");
    for part in expected {
        assert!(message.contains(part), "{part:?} in {message:?}");
    }
}

fn refused_with(policy: &str, settings: &str, expected: &str) {
    let error = builtin(policy, settings).err().unwrap_or_else(|| panic!("{policy} refuses {settings}"));
    let error = error.to_string();
    assert!(error.starts_with(&format!("policy {policy}: settings refused: settings: ")), "{error}");
    assert!(error.contains(expected), "{expected:?} in {error:?}");
}

#[test]
fn every_builtin_allows_the_default_expansion_of_a_three_member_statefulset() {
    let evaluation = common::builtin_policies().evaluate(&common::policy_request(&typical()), None);
    assert_eq!(evaluation.findings.len(), 5);
    assert!(evaluation.allowed(), "{:?}", evaluation.denials());
    assert_eq!(evaluation.warnings(), Vec::<String>::new());
}

#[test]
fn replica_quorum_denies_an_even_count_and_refuses_min_above_max() {
    let mut even = typical();
    even["spec"]["replicas"] = json!(4);
    denied_with("replica-quorum", "{}", &even, &["spec.replicas is 4", "1, 3, 5, 7 or 9"]);
    assert_eq!(denial("replica-quorum", "{odd: false}", &even), None);
    denied_with("replica-quorum", "{min: 5}", &typical(), &["3"]);
    refused_with("replica-quorum", "{min: 5, max: 3}", "min (5) is greater than max (3)");
    refused_with("replica-quorum", "{mni: 3}", "unknown field `mni`");
}

#[test]
fn spread_denies_soft_anti_affinity_when_hard_spreading_is_required() {
    // The default expansion spreads with a preferred (soft) anti-affinity on the hostname.
    denied_with("spread", "{required: true}", &typical(), &["kubernetes.io/hostname"]);
    denied_with(
        "spread",
        "{topologyKey: topology.kubernetes.io/zone}",
        &typical(),
        &["topology.kubernetes.io/zone"],
    );
    refused_with("spread", "{required: yes-please}", "required");
}

#[test]
fn storage_denies_a_small_volume_or_an_unlisted_class() {
    let small = common::with_annotation(typical(), "mysql-webhook.io/storage", "500Mi");
    denied_with("storage", "{}", &small, &["500Mi", "minSize (1Gi)"]);
    denied_with("storage", "{storageClasses: [fast-ssd]}", &typical(), &["fast-ssd"]);
    let classed = common::with_annotation(typical(), "mysql-webhook.io/storage-class", "fast-ssd");
    assert_eq!(denial("storage", "{storageClasses: [fast-ssd]}", &classed), None);
    refused_with("storage", "{minSize: ten-gigs}", "minSize");
}

#[test]
fn images_denies_latest_unlisted_registries_and_unpinned_images_when_asked() {
    let latest = common::with_annotation(
        common::annotated("mysql", "mysql:latest"),
        "mysql-webhook.io/flavor",
        "mysql-8.4",
    );
    denied_with("images", "{}", &latest, &["container mysql", "mysql:latest"]);
    denied_with("images", "{allowedRegistries: [registry.example.com]}", &typical(), &["docker.io"]);
    denied_with("images", "{requireDigest: true}", &typical(), &["sha256"]);
    refused_with("images", "{allowLatest: maybe}", "allowLatest");
}

#[test]
fn resources_denies_missing_limits_when_required_and_requests_above_bounds() {
    denied_with("resources", "{requireLimits: true}", &typical(), &["container mysql", "limit"]);
    denied_with("resources", "{maxMemory: 512Mi}", &typical(), &["container mysql", "512Mi"]);
    refused_with("resources", "{maxCpu: lots}", "maxCpu");
}
