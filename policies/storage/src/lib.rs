//! The `storage` policy: the `data` volume claim template every MySQL member gets must exist,
//! request a size within bounds and, when the platform says so, use an approved storage class.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use mysql_webhook_policy::quantity::{Bound, QuantityText, out_of_bounds};
use mysql_webhook_policy::{Policy, Request, Verdict, export_policy};
use serde::Deserialize;

/// The claim template holding MySQL's data directory, as the webhook's expansion names it.
const DATA_CLAIM: &str = "data";

/// The pre-`storageClassName` way to name a class; the API server still honours it.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// The policy.
pub struct Storage;

/// Settings of `storage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    /// The smallest storage request accepted for the `data` claim, as a quantity.
    pub min_size: QuantityText,
    /// The largest storage request accepted, as a quantity; none by default.
    pub max_size: Option<QuantityText>,
    /// The storage classes the `data` claim may use; empty accepts any, including the cluster's
    /// default.
    pub storage_classes: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self { min_size: QuantityText::from("1Gi"), max_size: None, storage_classes: Vec::new() }
    }
}

/// The size bounds, parsed.
struct Sizes {
    min: Bound,
    max: Option<Bound>,
}

impl Settings {
    fn sizes(&self) -> Result<Sizes, String> {
        let min = Bound::parse("minSize", self.min_size.as_str())?;
        let max = Bound::optional("maxSize", self.max_size.as_ref())?;
        Bound::check_order(Some(&min), max.as_ref())?;
        Ok(Sizes { min, max })
    }
}

fn size_violation(claim: &PersistentVolumeClaim, sizes: &Sizes) -> Option<String> {
    let requests = claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref());
    let Some(text) = requests.and_then(|r| r.get("storage")).map(|q| q.0.as_str()) else {
        return Some(format!(
            "volumeClaimTemplate {DATA_CLAIM} requests no storage (spec.resources.requests.storage)"
        ));
    };
    out_of_bounds(text, Some(&sizes.min), sizes.max.as_ref())
        .map(|p| format!("volumeClaimTemplate {DATA_CLAIM}: storage request {p}"))
}

fn class_violation(claim: &PersistentVolumeClaim, allowed: &[String]) -> Option<String> {
    if allowed.is_empty() {
        return None;
    }
    let class = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .or_else(|| claim.metadata.annotations.as_ref()?.get(BETA_CLASS_ANNOTATION).map(String::as_str));
    let accepted = allowed.join(", ");
    match class {
        Some(c) if allowed.iter().any(|a| a == c) => None,
        None => Some(format!(
            "volumeClaimTemplate {DATA_CLAIM} has no storageClassName, so it would get the cluster's default \
             class; set storageClassName to one of: {accepted}"
        )),
        Some("") => Some(format!(
            "volumeClaimTemplate {DATA_CLAIM} has storageClassName \"\", which binds only pre-provisioned \
             volumes without a class; set one of: {accepted}"
        )),
        Some(c) => Some(format!(
            "volumeClaimTemplate {DATA_CLAIM} uses storage class {c}, which is not allowed; use one of: {accepted}"
        )),
    }
}

impl Policy for Storage {
    type Settings = Settings;

    fn validate_settings(s: &Settings) -> Result<(), String> {
        s.sizes()?;
        if let Some(i) = s.storage_classes.iter().position(|c| c.trim().is_empty()) {
            return Err(format!("storageClasses[{i}] is empty"));
        }
        Ok(())
    }

    fn validate(request: &Request, s: &Settings) -> Verdict {
        let sizes = match s.sizes() {
            Ok(sizes) => sizes,
            Err(e) => return Verdict::deny(format!("settings: {e}")),
        };
        let templates = request.object.spec.as_ref().and_then(|s| s.volume_claim_templates.as_ref());
        let Some(claim) =
            templates.into_iter().flatten().find(|c| c.metadata.name.as_deref() == Some(DATA_CLAIM))
        else {
            return Verdict::deny(format!(
                "{} has no volumeClaimTemplate named {DATA_CLAIM}, so MySQL's data would not outlive its pods",
                request.statefulset_name()
            ));
        };
        Verdict::from_violations(
            [size_violation(claim, &sizes), class_violation(claim, &s.storage_classes)]
                .into_iter()
                .flatten()
                .collect(),
        )
    }
}

export_policy!(Storage);
// One instance per call: allocations need never be freed (see the SDK's `arena`).
mysql_webhook_policy::use_call_arena!();

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
    use mysql_webhook_policy::testing::{self, create, expanded_statefulset, scale, spec_mut};

    use super::*;

    fn check(sts: StatefulSet, settings: &str) -> Verdict {
        testing::validate::<Storage>(&create(sts), settings)
    }

    fn data_claim(sts: &mut StatefulSet) -> &mut PersistentVolumeClaim {
        let templates =
            spec_mut(sts).volume_claim_templates.as_mut().expect("the fixture has claim templates");
        &mut templates[0]
    }

    fn with_size(size: &str) -> StatefulSet {
        let mut sts = expanded_statefulset();
        let spec = data_claim(&mut sts).spec.as_mut().expect("a claim spec");
        let requests = spec.resources.as_mut().and_then(|r| r.requests.as_mut()).expect("storage requests");
        requests.insert("storage".into(), K8sQuantity(size.into()));
        sts
    }

    fn with_class(class: Option<&str>) -> StatefulSet {
        let mut sts = expanded_statefulset();
        data_claim(&mut sts).spec.as_mut().expect("a claim spec").storage_class_name =
            class.map(String::from);
        sts
    }

    #[test]
    fn the_default_expansion_passes_with_default_settings() {
        assert_eq!(testing::validate_settings::<Storage>("{}"), Ok(()));
        assert_eq!(check(expanded_statefulset(), "{}"), Verdict::allow());
    }

    #[test]
    fn denies_a_claim_below_min_size() {
        let v = check(with_size("500Mi"), "{}");
        assert_eq!(v.message(), "volumeClaimTemplate data: storage request 500Mi is below minSize (1Gi)");
        assert!(check(with_size("1024Mi"), "{}").allowed);
    }

    #[test]
    fn denies_a_claim_above_max_size() {
        let v = check(with_size("2Ti"), r#"{"maxSize": "500G"}"#);
        assert_eq!(v.message(), "volumeClaimTemplate data: storage request 2Ti is above maxSize (500G)");
        assert!(check(with_size("465Gi"), r#"{"maxSize": "500G"}"#).allowed);
    }

    #[test]
    fn denies_an_unparseable_claim_size() {
        let v = check(with_size("10GB"), "{}");
        assert!(
            v.message().starts_with(
                "volumeClaimTemplate data: storage request \"10GB\" is not a Kubernetes quantity"
            )
        );
    }

    #[test]
    fn denies_a_statefulset_without_a_data_claim() {
        let mut sts = expanded_statefulset();
        data_claim(&mut sts).metadata.name = Some("mysql-data".into());
        let v = check(sts, "{}");
        assert_eq!(
            v.message(),
            "mysql has no volumeClaimTemplate named data, so MySQL's data would not outlive its pods"
        );
    }

    #[test]
    fn denies_the_cluster_default_class_when_classes_are_listed() {
        let v = check(expanded_statefulset(), r#"{"storageClasses": ["fast-ssd", "standard"]}"#);
        assert_eq!(
            v.message(),
            "volumeClaimTemplate data has no storageClassName, so it would get the cluster's default class; \
             set storageClassName to one of: fast-ssd, standard"
        );
    }

    #[test]
    fn denies_a_class_not_listed() {
        let v = check(with_class(Some("slow-hdd")), r#"{"storageClasses": ["fast-ssd"]}"#);
        assert_eq!(
            v.message(),
            "volumeClaimTemplate data uses storage class slow-hdd, which is not allowed; use one of: fast-ssd"
        );
        let v = check(with_class(Some("")), r#"{"storageClasses": ["fast-ssd"]}"#);
        assert!(
            v.message().contains("storageClassName \"\", which binds only pre-provisioned volumes"),
            "{v:?}"
        );
    }

    #[test]
    fn accepts_a_listed_class_also_from_the_beta_annotation() {
        assert!(check(with_class(Some("fast-ssd")), r#"{"storageClasses": ["fast-ssd"]}"#).allowed);
        let mut sts = expanded_statefulset();
        data_claim(&mut sts).metadata.annotations =
            Some([(BETA_CLASS_ANNOTATION.into(), "fast-ssd".into())].into());
        assert!(check(sts, r#"{"storageClasses": ["fast-ssd"]}"#).allowed);
    }

    #[test]
    fn reports_size_and_class_together() {
        let v = check(with_size("100Mi"), r#"{"storageClasses": ["fast-ssd"]}"#);
        assert!(
            v.message()
                .starts_with("volumeClaimTemplate data: storage request 100Mi is below minSize (1Gi); "),
            "{v:?}"
        );
        assert!(v.message().contains("has no storageClassName"), "{v:?}");
    }

    #[test]
    fn scale_requests_are_checked_too() {
        let v = testing::validate::<Storage>(&scale(with_size("512Mi"), 5), "{}");
        assert!(v.message().contains("512Mi is below minSize (1Gi)"), "{v:?}");
    }

    #[test]
    fn refuses_bad_quantities_naming_the_field() {
        let e = testing::validate_settings::<Storage>(r#"{"minSize": "10 GB"}"#).unwrap_err();
        assert!(e.starts_with("settings: minSize: \"10 GB\" is not a Kubernetes quantity"), "{e}");
        let e = testing::validate_settings::<Storage>(r#"{"maxSize": "lots"}"#).unwrap_err();
        assert!(e.starts_with("settings: maxSize: \"lots\" is not a Kubernetes quantity"), "{e}");
    }

    #[test]
    fn refuses_min_size_greater_than_max_size() {
        let e =
            testing::validate_settings::<Storage>(r#"{"minSize": "20Gi", "maxSize": "10Gi"}"#).unwrap_err();
        assert_eq!(e, "settings: minSize (20Gi) is greater than maxSize (10Gi)");
    }

    #[test]
    fn refuses_an_empty_storage_class() {
        let e = testing::validate_settings::<Storage>(r#"{"storageClasses": ["fast", ""]}"#).unwrap_err();
        assert_eq!(e, "settings: storageClasses[1] is empty");
    }
}
