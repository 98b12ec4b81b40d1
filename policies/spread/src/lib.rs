//! The `spread` policy: a MySQL cluster's members must be spread over a topology key (nodes by
//! default), by pod anti-affinity or a topology spread constraint that selects the members
//! themselves, so that one node or zone going down cannot take the majority with it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodAffinityTerm;
use mysql_webhook_policy::{PodSpecView, Policy, Request, Verdict, export_policy, selector};
use serde::Deserialize;

/// The policy.
pub struct Spread;

/// Settings of `spread`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    /// The node label to spread over: `kubernetes.io/hostname`, `topology.kubernetes.io/zone`, ...
    pub topology_key: String,
    /// Whether spreading must be a hard scheduling rule. Soft rules (the webhook's default) let the
    /// scheduler co-locate members when nodes are short, which keeps the cluster schedulable.
    pub required: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self { topology_key: "kubernetes.io/hostname".into(), required: false }
    }
}

/// How firmly a rule spreads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    Preferred,
    Required,
}

/// A scheduling rule on the policy's topology key.
struct Rule {
    strength: Strength,
    /// Whether the rule's selector picks the StatefulSet's own pods; a rule about other pods does
    /// not keep members apart.
    selects_members: bool,
}

fn rules_on_key(
    spec: &PodSpecView,
    key: &str,
    labels: &BTreeMap<String, String>,
    namespace: Option<&str>,
) -> Vec<Rule> {
    let anti = spec.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref());
    let required =
        anti.into_iter().flat_map(|a| a.required_during_scheduling_ignored_during_execution.iter().flatten());
    let preferred = anti
        .into_iter()
        .flat_map(|a| a.preferred_during_scheduling_ignored_during_execution.iter().flatten())
        .map(|w| &w.pod_affinity_term);
    let terms = required.map(|t| (Strength::Required, t)).chain(preferred.map(|t| (Strength::Preferred, t)));
    let mut rules: Vec<Rule> = terms
        .filter(|(_, term)| term.topology_key == key)
        .map(|(strength, term)| Rule {
            strength,
            selects_members: term_selects_members(term, labels, namespace),
        })
        .collect();
    rules.extend(spec.topology_spread_constraints.iter().flatten().filter(|c| c.topology_key == key).map(
        |c| Rule {
            strength: if c.when_unsatisfiable == "DoNotSchedule" {
                Strength::Required
            } else {
                Strength::Preferred
            },
            selects_members: c.label_selector.as_ref().is_some_and(|s| selector::matches(s, labels)),
        },
    ));
    rules
}

/// A null selector selects no pods; `mismatchLabelKeys` present on the pod exclude pods sharing its
/// value, that is the members themselves; `namespaces` may point elsewhere.
fn term_selects_members(
    term: &PodAffinityTerm,
    labels: &BTreeMap<String, String>,
    namespace: Option<&str>,
) -> bool {
    let selected = term.label_selector.as_ref().is_some_and(|s| selector::matches(s, labels));
    let excluded = term.mismatch_label_keys.iter().flatten().any(|k| labels.contains_key(k));
    let elsewhere = match (term.namespaces.as_deref(), namespace) {
        (Some(list), Some(ns)) if !list.is_empty() => !list.iter().any(|n| n == ns),
        _ => false,
    };
    selected && !excluded && !elsewhere
}

fn describe(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "the pod labels (the pod template has none)".into();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("the pod labels ({})", pairs.join(", "))
}

impl Policy for Spread {
    type Settings = Settings;

    fn validate_settings(s: &Settings) -> Result<(), String> {
        if s.topology_key.trim().is_empty() {
            return Err("topologyKey must not be empty".into());
        }
        Ok(())
    }

    fn validate(request: &Request, s: &Settings) -> Verdict {
        // One member has nothing to be spread from; the rule applies once it is scaled up.
        if request.replicas() <= 1 {
            return Verdict::allow();
        }
        let labels = request.pod_labels();
        let rules = request
            .pod_spec()
            .map(|spec| rules_on_key(spec, &s.topology_key, labels, request.namespace.as_deref()))
            .unwrap_or_default();
        let needed = if s.required { Strength::Required } else { Strength::Preferred };
        if rules.iter().any(|r| r.selects_members && r.strength >= needed) {
            return Verdict::allow();
        }
        let key = &s.topology_key;
        let selecting = describe(labels);
        let mut message = if s.required {
            format!(
                "the members of {} are not required to spread over {key} (required is true): add \
                 podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution, or a topologySpreadConstraint \
                 with whenUnsatisfiable: DoNotSchedule, with topologyKey {key} and a labelSelector matching {selecting}",
                request.statefulset_name()
            )
        } else {
            format!(
                "the members of {} are not spread over {key}: add spec.template.spec.affinity.podAntiAffinity or a \
                 topologySpreadConstraint with topologyKey {key} and a labelSelector matching {selecting}",
                request.statefulset_name()
            )
        };
        if rules.iter().any(|r| !r.selects_members) {
            message.push_str(&format!("; a rule on {key} exists but does not select the members themselves"));
        }
        if rules.iter().any(|r| r.selects_members && r.strength == Strength::Preferred) {
            message.push_str(
                "; only preferred spreading was found (preferredDuringSchedulingIgnoredDuringExecution or \
                 whenUnsatisfiable: ScheduleAnyway), which lets members share a node when capacity is short",
            );
        }
        Verdict::deny(message)
    }
}

export_policy!(Spread);
// One instance per call: allocations need never be freed (see the SDK's `arena`).
mysql_webhook_policy::use_call_arena!();

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PodAntiAffinity, TopologySpreadConstraint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    use mysql_webhook_policy::testing::{self, create, expanded_statefulset, pod_spec_mut, scale, spec_mut};

    use super::*;

    fn check(sts: StatefulSet, settings: &str) -> Verdict {
        testing::validate::<Spread>(&create(sts), settings)
    }

    fn anti_affinity(sts: &mut StatefulSet) -> &mut PodAntiAffinity {
        let affinity = pod_spec_mut(sts).affinity.get_or_insert_with(Default::default);
        affinity.pod_anti_affinity.get_or_insert_with(Default::default)
    }

    fn app(value: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some([("app".to_string(), value.to_string())].into()),
            match_expressions: None,
        }
    }

    fn term(key: &str, selector: LabelSelector) -> PodAffinityTerm {
        PodAffinityTerm { topology_key: key.into(), label_selector: Some(selector), ..Default::default() }
    }

    /// The fixture with its preferred anti-affinity replaced by a required one.
    fn required_on(key: &str, selector: LabelSelector) -> StatefulSet {
        let mut sts = expanded_statefulset();
        *anti_affinity(&mut sts) = PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term(key, selector)]),
            ..Default::default()
        };
        sts
    }

    fn without_spreading() -> StatefulSet {
        let mut sts = expanded_statefulset();
        pod_spec_mut(&mut sts).affinity = None;
        sts
    }

    fn spread_constraint(sts: &mut StatefulSet, key: &str, when: &str, selector: Option<LabelSelector>) {
        pod_spec_mut(sts).topology_spread_constraints = Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: when.into(),
            label_selector: selector,
            ..Default::default()
        }]);
    }

    #[test]
    fn the_default_expansion_passes_with_default_settings() {
        assert_eq!(testing::validate_settings::<Spread>("{}"), Ok(()));
        assert_eq!(check(expanded_statefulset(), "{}"), Verdict::allow());
    }

    #[test]
    fn denies_members_without_any_spreading() {
        let v = check(without_spreading(), "{}");
        assert_eq!(
            v.message(),
            "the members of mysql are not spread over kubernetes.io/hostname: add spec.template.spec.affinity.\
             podAntiAffinity or a topologySpreadConstraint with topologyKey kubernetes.io/hostname and a \
             labelSelector matching the pod labels (app=mysql)"
        );
    }

    #[test]
    fn a_single_member_needs_no_spreading() {
        let mut sts = without_spreading();
        spec_mut(&mut sts).replicas = Some(1);
        assert!(check(sts, r#"{"required": true}"#).allowed);
    }

    #[test]
    fn denies_scaling_up_a_set_without_spreading() {
        let mut sts = without_spreading();
        spec_mut(&mut sts).replicas = Some(1);
        let v = testing::validate::<Spread>(&scale(sts, 3), "{}");
        assert!(v.message().starts_with("the members of mysql are not spread"), "{v:?}");
    }

    #[test]
    fn required_denies_preferred_anti_affinity() {
        let v = check(expanded_statefulset(), r#"{"required": true}"#);
        assert!(
            v.message().contains("are not required to spread over kubernetes.io/hostname (required is true)"),
            "{v:?}"
        );
        assert!(v.message().contains("only preferred spreading was found"), "{v:?}");
    }

    #[test]
    fn required_accepts_required_anti_affinity() {
        assert!(check(required_on("kubernetes.io/hostname", app("mysql")), r#"{"required": true}"#).allowed);
    }

    #[test]
    fn denies_anti_affinity_on_another_key() {
        let sts = required_on("topology.kubernetes.io/zone", app("mysql"));
        assert!(!check(sts.clone(), "{}").allowed);
        assert!(check(sts, r#"{"topologyKey": "topology.kubernetes.io/zone", "required": true}"#).allowed);
    }

    #[test]
    fn denies_anti_affinity_that_selects_other_pods() {
        let v = check(required_on("kubernetes.io/hostname", app("redis")), "{}");
        assert!(
            v.message().contains("a rule on kubernetes.io/hostname exists but does not select the members"),
            "{v:?}"
        );
    }

    #[test]
    fn match_expressions_select_members() {
        let selector = |operator: &str, values: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
        };
        let required = r#"{"required": true}"#;
        assert!(check(required_on("kubernetes.io/hostname", selector("In", &["mysql"])), required).allowed);
        assert!(check(required_on("kubernetes.io/hostname", selector("Exists", &[])), required).allowed);
        assert!(
            !check(required_on("kubernetes.io/hostname", selector("NotIn", &["mysql"])), required).allowed
        );
        assert!(
            !check(required_on("kubernetes.io/hostname", selector("DoesNotExist", &[])), required).allowed
        );
    }

    #[test]
    fn mismatch_label_keys_exclude_the_members() {
        let mut sts = required_on("kubernetes.io/hostname", app("mysql"));
        let terms = anti_affinity(&mut sts).required_during_scheduling_ignored_during_execution.as_mut();
        terms.expect("a required term")[0].mismatch_label_keys = Some(vec!["app".into()]);
        assert!(!check(sts, "{}").allowed);
    }

    #[test]
    fn terms_in_other_namespaces_do_not_count() {
        let mut sts = required_on("kubernetes.io/hostname", app("mysql"));
        let terms = anti_affinity(&mut sts).required_during_scheduling_ignored_during_execution.as_mut();
        terms.expect("a required term")[0].namespaces = Some(vec!["elsewhere".into()]);
        assert!(!check(sts, "{}").allowed);
    }

    #[test]
    fn topology_spread_constraints_count_when_they_select_members() {
        let mut sts = without_spreading();
        spread_constraint(&mut sts, "kubernetes.io/hostname", "ScheduleAnyway", Some(app("mysql")));
        assert!(check(sts.clone(), "{}").allowed);
        assert!(!check(sts, r#"{"required": true}"#).allowed);

        let mut sts = without_spreading();
        spread_constraint(&mut sts, "kubernetes.io/hostname", "DoNotSchedule", Some(app("mysql")));
        assert!(check(sts, r#"{"required": true}"#).allowed);

        let mut sts = without_spreading();
        spread_constraint(&mut sts, "kubernetes.io/hostname", "DoNotSchedule", None);
        assert!(!check(sts, "{}").allowed);
    }

    #[test]
    fn says_so_when_the_pods_have_no_labels() {
        let mut sts = without_spreading();
        spec_mut(&mut sts).template.metadata = None;
        let v = check(sts, "{}");
        assert!(
            v.message().ends_with("a labelSelector matching the pod labels (the pod template has none)"),
            "{v:?}"
        );
    }

    #[test]
    fn refuses_an_empty_topology_key() {
        let e = testing::validate_settings::<Spread>(r#"{"topologyKey": ""}"#).unwrap_err();
        assert_eq!(e, "settings: topologyKey must not be empty");
    }

    #[test]
    fn refuses_misspelt_settings() {
        let e = testing::validate_settings::<Spread>(r#"{"topology": "zone"}"#).unwrap_err();
        assert!(
            e.starts_with("settings: unknown field `topology`, expected `topologyKey` or `required`"),
            "{e}"
        );
    }
}
