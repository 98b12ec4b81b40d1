//! The `images` policy: where a MySQL cluster's images come from and how firmly they are pinned,
//! for containers, init containers and ephemeral containers alike.

use mysql_webhook_policy::image::ImageRef;
use mysql_webhook_policy::{ContainerImage, Policy, Request, Verdict, export_policy};
use serde::Deserialize;

/// The policy.
pub struct Images;

/// Settings of `images`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    /// Registry hosts (`ghcr.io`, `registry.internal:5000`) or `host/path/` prefixes
    /// (`ghcr.io/acme/`) images may come from; empty accepts any. An image naming no registry is
    /// from `docker.io`.
    pub allowed_registries: Vec<String>,
    /// Whether `:latest` and untagged images are accepted; they change under a running cluster,
    /// and members restarted at different times would run different versions.
    pub allow_latest: bool,
    /// Whether every image must be pinned with `@sha256:<64 hex digits>`.
    pub require_digest: bool,
}

/// Whether `image` is under `entry`, a host or a `host/path/` prefix, on whole path components.
fn is_under(image: &ImageRef<'_>, entry: &str) -> bool {
    let entry = entry.trim_end_matches('/').to_ascii_lowercase();
    format!("{}/{}/", image.registry_or_default(), image.repository().to_ascii_lowercase())
        .starts_with(&format!("{entry}/"))
}

fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn violations(image: &ContainerImage<'_>, s: &Settings) -> Vec<String> {
    let reference = ImageRef::parse(image.image);
    let subject = format!("{} {}: image {}", image.kind, image.name, image.image);
    let mut found = Vec::new();
    if !s.allowed_registries.is_empty()
        && !s.allowed_registries.iter().any(|entry| is_under(&reference, entry))
    {
        let implicit = if reference.registry.is_some() { "" } else { ", as it names none" };
        found.push(format!(
            "{subject} (registry {}{implicit}) is not from an allowed registry (allowed: {})",
            reference.registry_or_default(),
            s.allowed_registries.join(", ")
        ));
    }
    // A digest pins the image whatever the tag says.
    if !s.allow_latest && reference.digest.is_none() {
        match reference.tag {
            Some("latest") => found.push(format!(
                "{subject} uses the latest tag; pin a version tag or a digest (allowLatest is false)"
            )),
            None => found.push(format!(
                "{subject} has no tag, which means latest; pin a version tag or a digest (allowLatest is false)"
            )),
            Some(_) => {}
        }
    }
    if s.require_digest && !reference.digest.is_some_and(is_sha256_digest) {
        let problem =
            if reference.digest.is_some() { "has a malformed digest" } else { "is not pinned by digest" };
        found.push(format!(
            "{subject} {problem} (requireDigest is true); append @sha256: and the 64 hex digits"
        ));
    }
    found
}

impl Policy for Images {
    type Settings = Settings;

    fn validate_settings(s: &Settings) -> Result<(), String> {
        for (i, entry) in s.allowed_registries.iter().enumerate() {
            if entry.trim().is_empty() {
                return Err(format!("allowedRegistries[{i}] is empty"));
            }
            if entry.contains("://") || entry.contains(char::is_whitespace) {
                return Err(format!(
                    "allowedRegistries[{i}]: {entry:?} must be a registry host or a host/path/ prefix, without a scheme"
                ));
            }
        }
        Ok(())
    }

    fn validate(request: &Request, s: &Settings) -> Verdict {
        Verdict::from_violations(request.images().flat_map(|image| violations(&image, s)).collect())
    }
}

export_policy!(Images);
// One instance per call: allocations need never be freed (see the SDK's `arena`).
mysql_webhook_policy::use_call_arena!();

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::EphemeralContainer;
    use mysql_webhook_policy::testing::{
        self, container_mut, create, expanded_statefulset, pod_spec_mut, scale,
    };

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn check(sts: StatefulSet, settings: &str) -> Verdict {
        testing::validate::<Images>(&create(sts), settings)
    }

    fn with_image(container: &str, image: &str) -> StatefulSet {
        let mut sts = expanded_statefulset();
        container_mut(&mut sts, container).image = Some(image.into());
        sts
    }

    fn reference(image: &str) -> (String, String, Option<&str>, Option<&str>) {
        let r = ImageRef::parse(image);
        (r.registry_or_default(), r.repository(), r.tag, r.digest)
    }

    #[test]
    fn parses_references_as_the_runtime_does() {
        let s = |v: &str| v.to_string();
        assert_eq!(reference("mysql"), (s("docker.io"), s("library/mysql"), None, None));
        assert_eq!(
            reference("percona/percona-xtrabackup:8.4"),
            (s("docker.io"), s("percona/percona-xtrabackup"), Some("8.4"), None)
        );
        assert_eq!(reference("registry:5000/team/mysql"), (s("registry:5000"), s("team/mysql"), None, None));
        assert_eq!(reference("localhost/mysql:8"), (s("localhost"), s("mysql"), Some("8"), None));
        assert_eq!(
            reference("ghcr.io/acme/mysql@sha256:ab"),
            (s("ghcr.io"), s("acme/mysql"), None, Some("sha256:ab"))
        );
        assert_eq!(
            reference("index.docker.io/mysql:8.4"),
            (s("docker.io"), s("library/mysql"), Some("8.4"), None)
        );
        assert_eq!(
            reference("r.io:443/x:1@sha256:cd"),
            (s("r.io:443"), s("x"), Some("1"), Some("sha256:cd"))
        );
    }

    #[test]
    fn registry_prefixes_match_whole_components() {
        let r = ImageRef::parse("ghcr.io/acme/mysql:8.4");
        assert!(is_under(&r, "ghcr.io") && is_under(&r, "ghcr.io/acme/") && is_under(&r, "GHCR.io/acme"));
        assert!(!is_under(&r, "ghcr.io/ac") && !is_under(&r, "docker.io"));
        assert!(is_under(&ImageRef::parse("mysql:8.4"), "docker.io/library/"));
    }

    #[test]
    fn the_default_expansion_passes_with_default_settings() {
        assert_eq!(testing::validate_settings::<Images>("{}"), Ok(()));
        assert_eq!(check(expanded_statefulset(), "{}"), Verdict::allow());
        assert!(check(expanded_statefulset(), r#"{"allowedRegistries": ["docker.io"]}"#).allowed);
    }

    #[test]
    fn denies_the_latest_tag() {
        let v = check(with_image("xtrabackup", "percona/percona-xtrabackup:latest"), "{}");
        assert_eq!(
            v.message(),
            "container xtrabackup: image percona/percona-xtrabackup:latest uses the latest tag; pin a version tag \
             or a digest (allowLatest is false)"
        );
        assert!(
            check(with_image("xtrabackup", "percona/percona-xtrabackup:latest"), r#"{"allowLatest": true}"#)
                .allowed
        );
    }

    #[test]
    fn denies_untagged_init_container_images() {
        let v = check(with_image("init-mysql", "mysql"), "{}");
        assert_eq!(
            v.message(),
            "init container init-mysql: image mysql has no tag, which means latest; pin a version tag or a digest \
             (allowLatest is false)"
        );
    }

    #[test]
    fn a_registry_port_is_not_a_tag() {
        let v = check(with_image("mysql", "registry.internal:5000/mysql"), "{}");
        assert!(v.message().contains("image registry.internal:5000/mysql has no tag"), "{v:?}");
    }

    #[test]
    fn a_digest_without_a_tag_is_pinned() {
        assert!(check(with_image("mysql", &format!("mysql@{DIGEST}")), "{}").allowed);
    }

    #[test]
    fn denies_registries_not_listed() {
        let settings = r#"{"allowedRegistries": ["ghcr.io/acme/"]}"#;
        let v = check(with_image("mysql", "ghcr.io/acme/mysql:8.4"), settings);
        assert!(!v.message().contains("ghcr.io/acme/mysql"), "{v:?}");
        assert!(v.message().starts_with(
            "init container init-mysql: image mysql:8.4 (registry docker.io, as it names none) is not from an \
             allowed registry (allowed: ghcr.io/acme/)"
        ), "{v:?}");
        let v = check(with_image("mysql", "ghcr.io/evil/mysql:8.4"), settings);
        assert!(
            v.message()
                .contains("container mysql: image ghcr.io/evil/mysql:8.4 (registry ghcr.io) is not from"),
            "{v:?}"
        );
    }

    #[test]
    fn require_digest_denies_tags_alone() {
        let v = check(expanded_statefulset(), r#"{"requireDigest": true}"#);
        assert_eq!(
            v.message().matches("is not pinned by digest (requireDigest is true)").count(),
            4,
            "{v:?}"
        );
        assert!(
            v.message().starts_with("init container init-mysql: image mysql:8.4 is not pinned by digest"),
            "{v:?}"
        );
    }

    #[test]
    fn require_digest_denies_malformed_digests() {
        let mut sts = expanded_statefulset();
        let spec = pod_spec_mut(&mut sts);
        for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            container.image = Some(format!("mysql:8.4@{DIGEST}"));
        }
        assert!(check(sts.clone(), r#"{"requireDigest": true}"#).allowed);
        container_mut(&mut sts, "mysql").image = Some("mysql@sha256:abc".into());
        let v = check(sts, r#"{"requireDigest": true}"#);
        assert!(
            v.message().starts_with("container mysql: image mysql@sha256:abc has a malformed digest"),
            "{v:?}"
        );
    }

    #[test]
    fn ephemeral_containers_are_checked() {
        let mut sts = expanded_statefulset();
        pod_spec_mut(&mut sts).ephemeral_containers = Some(vec![EphemeralContainer {
            name: "debug".into(),
            image: Some("busybox".into()),
            ..Default::default()
        }]);
        let v = check(sts, "{}");
        assert!(v.message().starts_with("ephemeral container debug: image busybox has no tag"), "{v:?}");
    }

    #[test]
    fn scale_requests_are_checked_too() {
        let v = testing::validate::<Images>(&scale(with_image("mysql", "mysql:latest"), 5), "{}");
        assert!(v.message().contains("container mysql: image mysql:latest uses the latest tag"), "{v:?}");
    }

    #[test]
    fn refuses_registry_entries_with_a_scheme() {
        let e = testing::validate_settings::<Images>(
            r#"{"allowedRegistries": ["docker.io", "https://ghcr.io"]}"#,
        );
        assert_eq!(
            e.unwrap_err(),
            "settings: allowedRegistries[1]: \"https://ghcr.io\" must be a registry host or a host/path/ prefix, \
             without a scheme"
        );
    }

    #[test]
    fn refuses_misspelt_settings() {
        let e = testing::validate_settings::<Images>(r#"{"allowedRegistry": []}"#).unwrap_err();
        assert!(
            e.starts_with("settings: unknown field `allowedRegistry`, expected one of `allowedRegistries`"),
            "{e}"
        );
    }
}
