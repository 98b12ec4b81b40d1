//! The `resources` policy: every MySQL container declares the CPU and memory it needs, within
//! the platform's bounds, so that members are scheduled where they fit and are not evicted first.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use mysql_webhook_policy::quantity::{Bound, QuantityText, out_of_bounds};
use mysql_webhook_policy::{ContainerKind, ContainerView, Policy, Request, Verdict, export_policy};
use serde::Deserialize;

/// The policy.
pub struct Resources;

/// Settings of `resources`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    /// Whether every checked container must request cpu and memory (a limit alone counts: Kubernetes
    /// then defaults the request to it).
    pub require_requests: bool,
    /// Whether every checked container must have cpu and memory limits.
    pub require_limits: bool,
    /// Whether init containers are checked too. Off by default: the webhook's init containers
    /// only copy configuration or clone data and declare no resources.
    pub include_init_containers: bool,
    /// The smallest cpu request accepted, as a quantity.
    pub min_cpu: Option<QuantityText>,
    /// The largest cpu request or limit accepted.
    pub max_cpu: Option<QuantityText>,
    /// The smallest memory request accepted.
    pub min_memory: Option<QuantityText>,
    /// The largest memory request or limit accepted.
    pub max_memory: Option<QuantityText>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            require_requests: true,
            require_limits: false,
            include_init_containers: false,
            min_cpu: None,
            max_cpu: None,
            min_memory: None,
            max_memory: None,
        }
    }
}

/// The bounds on one resource (cpu or memory), parsed.
struct ResourceBounds {
    resource: &'static str,
    min: Option<Bound>,
    max: Option<Bound>,
}

impl ResourceBounds {
    fn parse(
        resource: &'static str,
        (min_field, min): (&'static str, &Option<QuantityText>),
        (max_field, max): (&'static str, &Option<QuantityText>),
    ) -> Result<Self, String> {
        let min = Bound::optional(min_field, min.as_ref())?;
        let max = Bound::optional(max_field, max.as_ref())?;
        Bound::check_order(min.as_ref(), max.as_ref())?;
        Ok(Self { resource, min, max })
    }
}

impl Settings {
    fn bounds(&self) -> Result<[ResourceBounds; 2], String> {
        Ok([
            ResourceBounds::parse("cpu", ("minCpu", &self.min_cpu), ("maxCpu", &self.max_cpu))?,
            ResourceBounds::parse(
                "memory",
                ("minMemory", &self.min_memory),
                ("maxMemory", &self.max_memory),
            )?,
        ])
    }
}

fn get<'a>(map: Option<&'a BTreeMap<String, K8sQuantity>>, resource: &str) -> Option<&'a str> {
    map?.get(resource).map(|q| q.0.as_str())
}

fn violations(
    kind: ContainerKind,
    container: &ContainerView,
    s: &Settings,
    all: &[ResourceBounds],
) -> Vec<String> {
    let declared = container.resources.as_ref();
    let requests = declared.and_then(|r| r.requests.as_ref());
    let limit_map = declared.and_then(|r| r.limits.as_ref());
    let name = &container.name;
    let mut found = Vec::new();
    for bounds in all {
        let resource = bounds.resource;
        let limit = get(limit_map, resource);
        let request = match (get(requests, resource), limit) {
            (Some(request), _) => Some((request, format!("{resource} request"))),
            (None, Some(limit)) => Some((limit, format!("{resource} request (defaulted from its limit)"))),
            (None, None) => None,
        };
        match &request {
            None if s.require_requests => found.push(format!(
                "{kind} {name} has no {resource} request; set resources.requests.{resource} so the scheduler \
                 reserves it (requireRequests is true)"
            )),
            None => {}
            Some((text, what)) => found.extend(
                out_of_bounds(text, bounds.min.as_ref(), bounds.max.as_ref())
                    .map(|p| format!("{kind} {name}: {what} {p}")),
            ),
        }
        match limit {
            None if s.require_limits => {
                found.push(format!("{kind} {name} has no {resource} limit (requireLimits is true)"));
            }
            None => {}
            // A limit below a minimum leaves the request below it too, which is reported above.
            Some(text) => found.extend(
                out_of_bounds(text, None, bounds.max.as_ref())
                    .map(|p| format!("{kind} {name}: {resource} limit {p}")),
            ),
        }
    }
    found
}

impl Policy for Resources {
    type Settings = Settings;

    fn validate_settings(s: &Settings) -> Result<(), String> {
        s.bounds().map(drop)
    }

    fn validate(request: &Request, s: &Settings) -> Verdict {
        let bounds = match s.bounds() {
            Ok(bounds) => bounds,
            Err(e) => return Verdict::deny(format!("settings: {e}")),
        };
        let checked = request
            .containers()
            .filter(|(kind, _)| *kind == ContainerKind::Regular || s.include_init_containers);
        Verdict::from_violations(checked.flat_map(|(kind, c)| violations(kind, c, s, &bounds)).collect())
    }
}

export_policy!(Resources);
// One instance per call: allocations need never be freed (see the SDK's `arena`).
mysql_webhook_policy::use_call_arena!();

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use mysql_webhook_policy::testing::{self, container_mut, create, expanded_statefulset, scale};

    use super::*;

    fn check(sts: StatefulSet, settings: &str) -> Verdict {
        testing::validate::<Resources>(&create(sts), settings)
    }

    fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, K8sQuantity>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), K8sQuantity(v.to_string()))).collect())
    }

    fn with_resources(container: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> StatefulSet {
        let mut sts = expanded_statefulset();
        container_mut(&mut sts, container).resources = Some(ResourceRequirements {
            requests: quantities(requests),
            limits: quantities(limits),
            ..Default::default()
        });
        sts
    }

    #[test]
    fn the_default_expansion_passes_with_default_settings() {
        assert_eq!(testing::validate_settings::<Resources>("{}"), Ok(()));
        assert_eq!(check(expanded_statefulset(), "{}"), Verdict::allow());
    }

    #[test]
    fn denies_a_container_without_requests() {
        let v = check(with_resources("xtrabackup", &[("cpu", "100m")], &[]), "{}");
        assert_eq!(
            v.message(),
            "container xtrabackup has no memory request; set resources.requests.memory so the scheduler reserves \
             it (requireRequests is true)"
        );
    }

    #[test]
    fn a_limit_alone_counts_as_the_request() {
        let sts = with_resources("mysql", &[], &[("cpu", "2"), ("memory", "4Gi")]);
        assert!(check(sts.clone(), "{}").allowed);
        let v = check(sts, r#"{"minMemory": "8Gi"}"#);
        assert!(
            v.message().contains(
                "container mysql: memory request (defaulted from its limit) 4Gi is below minMemory (8Gi)"
            ),
            "{v:?}"
        );
    }

    #[test]
    fn init_containers_are_checked_only_when_included() {
        let v = check(expanded_statefulset(), r#"{"includeInitContainers": true}"#);
        assert!(v.message().starts_with("init container init-mysql has no cpu request;"), "{v:?}");
        assert!(v.message().contains("init container clone-mysql has no memory request;"), "{v:?}");
    }

    #[test]
    fn require_limits_denies_containers_without_limits() {
        let v = check(expanded_statefulset(), r#"{"requireLimits": true}"#);
        assert!(v.message().starts_with("container mysql has no cpu limit (requireLimits is true)"), "{v:?}");
        assert_eq!(v.message().matches("limit (requireLimits is true)").count(), 4, "{v:?}");
    }

    #[test]
    fn denies_requests_and_limits_above_the_maximum() {
        let sts =
            with_resources("mysql", &[("cpu", "2"), ("memory", "1Gi")], &[("cpu", "8"), ("memory", "20Gi")]);
        let v = check(sts, r#"{"maxCpu": "4", "maxMemory": "16Gi"}"#);
        assert_eq!(
            v.message(),
            "container mysql: cpu limit 8 is above maxCpu (4); container mysql: memory limit 20Gi is above maxMemory (16Gi)"
        );
    }

    #[test]
    fn denies_requests_below_the_minimum() {
        let v = check(expanded_statefulset(), r#"{"minMemory": "128Mi", "minCpu": "250m"}"#);
        assert_eq!(
            v.message(),
            "container xtrabackup: cpu request 100m is below minCpu (250m); \
             container xtrabackup: memory request 100Mi is below minMemory (128Mi)"
        );
    }

    #[test]
    fn compares_binary_and_decimal_quantities_exactly() {
        let sts = with_resources("mysql", &[("cpu", "0.5"), ("memory", "1G")], &[]);
        let v = check(sts, r#"{"minMemory": "1Gi"}"#);
        assert!(v.message().contains("container mysql: memory request 1G is below minMemory (1Gi)"), "{v:?}");
    }

    #[test]
    fn denies_unparseable_quantities_in_the_object() {
        let v = check(with_resources("mysql", &[("cpu", "500m"), ("memory", "1GB")], &[]), "{}");
        assert!(
            v.message().starts_with("container mysql: memory request \"1GB\" is not a Kubernetes quantity"),
            "{v:?}"
        );
    }

    #[test]
    fn scale_requests_are_checked_too() {
        let v = testing::validate::<Resources>(&scale(with_resources("mysql", &[], &[]), 5), "{}");
        assert!(v.message().starts_with("container mysql has no cpu request"), "{v:?}");
    }

    #[test]
    fn refuses_bad_quantities_naming_the_field() {
        let e = testing::validate_settings::<Resources>(r#"{"maxMemory": "16GB"}"#).unwrap_err();
        assert!(e.starts_with("settings: maxMemory: \"16GB\" is not a Kubernetes quantity"), "{e}");
        let e = testing::validate_settings::<Resources>(r#"{"minCpu": "-1"}"#).unwrap_err();
        assert_eq!(e, "settings: minCpu: \"-1\" is negative");
    }

    #[test]
    fn refuses_min_greater_than_max() {
        let e = testing::validate_settings::<Resources>(r#"{"minCpu": "2", "maxCpu": "1500m"}"#).unwrap_err();
        assert_eq!(e, "settings: minCpu (2) is greater than maxCpu (1500m)");
    }

    #[test]
    fn accepts_bounds_written_as_numbers() {
        let sts = with_resources("mysql", &[("cpu", "6"), ("memory", "1Gi")], &[]);
        let v = check(sts, r#"{"maxCpu": 4}"#);
        assert_eq!(v.message(), "container mysql: cpu request 6 is above maxCpu (4)");
    }

    #[test]
    fn refuses_mistyped_settings() {
        let e = testing::validate_settings::<Resources>(r#"{"maxCpu": true}"#).unwrap_err();
        assert!(e.starts_with("settings: maxCpu: invalid type: boolean `true`, expected a quantity"), "{e}");
        let e = testing::validate_settings::<Resources>(r#"{"requireLimits": "yes"}"#).unwrap_err();
        assert!(
            e.starts_with("settings: requireLimits: invalid type: string \"yes\", expected a boolean"),
            "{e}"
        );
    }
}
