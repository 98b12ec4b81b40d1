//! Which policies judge which StatefulSet (policies/README.md, "Scoping and exceptions"): a
//! policy's scope (`namespaces`, `namespaceSelector`, `objectSelector` in `policies.yaml`) and
//! the exceptions the platform allows (`exceptions: {namespaces, namespaceSelector}`), against
//! a StatefulSet's namespace, its namespace's labels, its labels and the policies it asks to be
//! excepted from (annotation `mysql-webhook.io/policy-exceptions`).
//!
//! Pure: the webhook reads namespace labels from a watch cache, `check` from the manifests or a
//! flag, the audit from the same cache; all of them decide here.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::consts::{ANNOTATION_POLICY_EXCEPTIONS, LABEL_NAMESPACE_NAME};
use crate::plan::{PlanError, policy_exceptions};

/// Labels of objects and namespaces.
pub type Labels = BTreeMap<String, String>;

/// Checks a label selector from `policies.yaml`: the operators Kubernetes accepts, with values
/// exactly when the operator needs them. `Err` says what is wrong, for the caller to name the
/// field.
pub fn check_selector(selector: &LabelSelector) -> Result<(), String> {
    for requirement in selector.match_expressions.iter().flatten() {
        let LabelSelectorRequirement { key, operator, values } = requirement;
        let values = values.as_deref().unwrap_or_default();
        match operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!("matchExpressions: key {key:?}: operator {operator} needs values"));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!("matchExpressions: key {key:?}: operator {operator} takes no values"));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "matchExpressions: key {key:?}: operator {other:?} is not accepted; use In, NotIn, Exists or DoesNotExist"
                ));
            }
        }
    }
    Ok(())
}

/// Does `selector` (checked with [`check_selector`]) select `labels`? Every `matchLabels` entry
/// and every expression must hold, as in Kubernetes; an empty selector selects everything.
pub fn selects(selector: &LabelSelector, labels: &Labels) -> bool {
    let match_labels =
        selector.match_labels.iter().flatten().all(|(key, value)| labels.get(key) == Some(value));
    match_labels
        && selector.match_expressions.iter().flatten().all(|requirement| {
            let value = labels.get(&requirement.key);
            let values = requirement.values.as_deref().unwrap_or_default();
            match requirement.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Where a policy may be excepted from: a namespace named here, or one whose labels the
/// selector selects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExceptionRule {
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelector>,
}

/// A policy's reach. Every criterion given must hold (as Gatekeeper's `match`); none given means
/// every managed StatefulSet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyScope {
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelector>,
    pub object_selector: Option<LabelSelector>,
    /// `None`: the policy allows no exception.
    pub exceptions: Option<ExceptionRule>,
}

/// What a policy is judged against: the StatefulSet's namespace, labels and requested
/// exceptions, and its namespace's labels when known.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subject {
    pub namespace: String,
    pub labels: Labels,
    /// Policy names from annotation `mysql-webhook.io/policy-exceptions`.
    pub exceptions: Vec<String>,
}

impl Subject {
    /// The subject of `sts`, in `namespace` when the object names none. Refuses a malformed
    /// exceptions annotation like any other annotation.
    pub fn of(sts: &StatefulSet, namespace: Option<&str>) -> Result<Subject, PlanError> {
        Ok(Subject {
            namespace: sts.metadata.namespace.as_deref().or(namespace).unwrap_or("default").to_owned(),
            labels: sts.metadata.labels.clone().unwrap_or_default(),
            exceptions: policy_exceptions(sts)?,
        })
    }
}

/// A namespace's labels as the API server stores them: the user's, plus
/// `kubernetes.io/metadata.name`, which the API server sets on every namespace.
pub fn namespace_labels(name: &str, labels: Option<&Labels>) -> Labels {
    let mut labels = labels.cloned().unwrap_or_default();
    labels.insert(LABEL_NAMESPACE_NAME.to_owned(), name.to_owned());
    labels
}

/// What happens to one policy for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The policy judges the object.
    Run,
    /// Outside the policy's scope: it doesn't run and isn't reported.
    OutOfScope,
    /// The object asked to be excepted and the policy allows it here: it doesn't run, and the
    /// exception is reported.
    Excepted,
    /// The object asked to be excepted and the policy doesn't allow it here: refused, with why.
    ExceptionRefused(String),
}

/// Decides for the policy `name` with `scope` on `subject`. `namespace_labels` is `None` when
/// they are unknown (no cluster connection, or a namespace the cache hasn't seen yet): a policy
/// restricted by a namespace selector then runs (an unknown namespace is never a way around a
/// rule), and an exception allowed only by a namespace selector is refused.
pub fn decide(
    name: &str,
    scope: &PolicyScope,
    subject: &Subject,
    namespace_labels: Option<&Labels>,
) -> Decision {
    let namespace = &subject.namespace;
    let named = |names: &[String]| names.is_empty() || names.contains(namespace);
    let in_scope = named(&scope.namespaces)
        && match (&scope.namespace_selector, namespace_labels) {
            (Some(selector), Some(labels)) => selects(selector, labels),
            _ => true,
        }
        && scope.object_selector.as_ref().is_none_or(|selector| selects(selector, &subject.labels));
    if !in_scope {
        return Decision::OutOfScope;
    }
    if !subject.exceptions.iter().any(|asked| asked == name) {
        return Decision::Run;
    }
    let refused = |why: String| {
        Decision::ExceptionRefused(format!(
            "exception refused (annotation {ANNOTATION_POLICY_EXCEPTIONS}): {why}; remove {name} from the annotation or ask the platform team"
        ))
    };
    let Some(rule) = &scope.exceptions else {
        return refused("this policy allows no exceptions".into());
    };
    if rule.namespaces.contains(namespace) {
        return Decision::Excepted;
    }
    match (&rule.namespace_selector, namespace_labels) {
        (Some(selector), Some(labels)) if selects(selector, labels) => Decision::Excepted,
        (Some(_), None) => refused(format!(
            "the labels of namespace {namespace} are unknown to the webhook, so its namespaceSelector can't allow it"
        )),
        _ => refused(format!("namespace {namespace} is not among the places this policy allows exceptions")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(labels: &[(&str, &str)], expressions: &[(&str, &str, &[&str])]) -> LabelSelector {
        LabelSelector {
            match_labels: (!labels.is_empty())
                .then(|| labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            match_expressions: (!expressions.is_empty()).then(|| {
                expressions
                    .iter()
                    .map(|(key, operator, values)| LabelSelectorRequirement {
                        key: key.to_string(),
                        operator: operator.to_string(),
                        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
                    })
                    .collect()
            }),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn subject(namespace: &str, object: &[(&str, &str)], exceptions: &[&str]) -> Subject {
        Subject {
            namespace: namespace.into(),
            labels: labels(object),
            exceptions: exceptions.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn selectors_follow_the_kubernetes_operators() {
        let prod = labels(&[("tier", "prod"), ("team", "payments")]);
        let cases: [(LabelSelector, bool); 10] = [
            (selector(&[], &[]), true),
            (selector(&[("tier", "prod")], &[]), true),
            (selector(&[("tier", "dev")], &[]), false),
            (selector(&[("tier", "prod"), ("team", "search")], &[]), false),
            (selector(&[], &[("tier", "In", &["prod", "staging"])]), true),
            (selector(&[], &[("tier", "NotIn", &["prod"])]), false),
            (selector(&[], &[("owner", "NotIn", &["x"])]), true),
            (selector(&[], &[("team", "Exists", &[])]), true),
            (selector(&[], &[("team", "DoesNotExist", &[])]), false),
            (selector(&[("team", "payments")], &[("owner", "Exists", &[])]), false),
        ];
        for (selector, expected) in cases {
            assert_eq!(selects(&selector, &prod), expected, "{selector:?}");
        }
    }

    #[test]
    fn refuses_selectors_kubernetes_would_refuse_naming_the_key() {
        let unknown = check_selector(&selector(&[], &[("tier", "Equals", &["a"])])).unwrap_err();
        assert!(unknown.contains("key \"tier\": operator \"Equals\" is not accepted"), "{unknown}");
        let no_values = check_selector(&selector(&[], &[("tier", "In", &[])])).unwrap_err();
        assert!(no_values.contains("operator In needs values"), "{no_values}");
        let values = check_selector(&selector(&[], &[("tier", "Exists", &["a"])])).unwrap_err();
        assert!(values.contains("operator Exists takes no values"), "{values}");
        assert!(check_selector(&selector(&[("a", "b")], &[("c", "NotIn", &["d"])])).is_ok());
    }

    #[test]
    fn scope_matrix_of_namespaces_namespace_selectors_and_object_selectors() {
        let prod = labels(&[("tier", "prod")]);
        let dev = labels(&[("tier", "dev")]);
        let in_shop = PolicyScope { namespaces: vec!["shop".into()], ..Default::default() };
        let in_prod = PolicyScope {
            namespace_selector: Some(selector(&[("tier", "prod")], &[])),
            ..Default::default()
        };
        let critical = PolicyScope {
            object_selector: Some(selector(&[], &[("critical", "In", &["true"])])),
            ..Default::default()
        };
        let shop_and_prod = PolicyScope { namespaces: vec!["shop".into()], ..in_prod.clone() };
        let db = subject("shop", &[("critical", "true")], &[]);
        let other = subject("blog", &[], &[]);
        let cases: [(&PolicyScope, &Subject, Option<&Labels>, Decision); 12] = [
            (&PolicyScope::default(), &other, None, Decision::Run),
            (&in_shop, &db, Some(&dev), Decision::Run),
            (&in_shop, &other, Some(&prod), Decision::OutOfScope),
            (&in_prod, &db, Some(&prod), Decision::Run),
            (&in_prod, &db, Some(&dev), Decision::OutOfScope),
            // Unknown namespace labels never take an object out of a rule's reach.
            (&in_prod, &db, None, Decision::Run),
            (&critical, &db, Some(&dev), Decision::Run),
            (&critical, &other, Some(&prod), Decision::OutOfScope),
            (&shop_and_prod, &db, Some(&prod), Decision::Run),
            (&shop_and_prod, &db, Some(&dev), Decision::OutOfScope),
            (&shop_and_prod, &subject("blog", &[], &[]), Some(&prod), Decision::OutOfScope),
            (&shop_and_prod, &db, None, Decision::Run),
        ];
        for (scope, subject, namespace_labels, expected) in cases {
            assert_eq!(decide("spread", scope, subject, namespace_labels), expected, "{scope:?} {subject:?}");
        }
    }

    #[test]
    fn exception_matrix_of_allowed_and_refused_places() {
        let sandbox = labels(&[("exceptions", "allowed")]);
        let plain = labels(&[]);
        let none = PolicyScope::default();
        let by_name = PolicyScope {
            exceptions: Some(ExceptionRule { namespaces: vec!["legacy".into()], namespace_selector: None }),
            ..Default::default()
        };
        let by_selector = PolicyScope {
            exceptions: Some(ExceptionRule {
                namespaces: vec![],
                namespace_selector: Some(selector(&[("exceptions", "allowed")], &[])),
            }),
            ..Default::default()
        };
        let legacy = subject("legacy", &[], &["spread"]);
        let shop = subject("shop", &[], &["spread", "storage"]);
        let not_asked = subject("legacy", &[], &["storage"]);
        let refused = |why: &str| why.to_owned();
        // Err: a refusal whose message contains this.
        type Case<'a> = (&'a PolicyScope, &'a Subject, Option<&'a Labels>, Result<Decision, String>);
        let cases: [Case; 8] = [
            (&by_name, &legacy, None, Ok(Decision::Excepted)),
            (&by_name, &shop, Some(&sandbox), Err(refused("namespace shop is not among the places"))),
            (&by_selector, &shop, Some(&sandbox), Ok(Decision::Excepted)),
            (&by_selector, &shop, Some(&plain), Err(refused("namespace shop is not among the places"))),
            (&by_selector, &shop, None, Err(refused("the labels of namespace shop are unknown"))),
            (&none, &legacy, Some(&sandbox), Err(refused("this policy allows no exceptions"))),
            (&none, &not_asked, None, Ok(Decision::Run)),
            (&by_name, &not_asked, None, Ok(Decision::Run)),
        ];
        for (scope, subject, namespace_labels, expected) in cases {
            let decision = decide("spread", scope, subject, namespace_labels);
            match (expected, decision) {
                (Ok(expected), decision) => assert_eq!(decision, expected, "{scope:?} {subject:?}"),
                (Err(why), Decision::ExceptionRefused(message)) => {
                    assert!(message.contains(&why), "{message}");
                    assert!(message.contains(ANNOTATION_POLICY_EXCEPTIONS), "{message}");
                    assert!(message.contains("remove spread from the annotation"), "{message}");
                }
                (Err(why), decision) => panic!("expected a refusal ({why}), got {decision:?}"),
            }
        }
    }

    #[test]
    fn an_exception_for_a_policy_out_of_scope_is_not_reported() {
        let scope = PolicyScope { namespaces: vec!["shop".into()], ..Default::default() };
        assert_eq!(decide("spread", &scope, &subject("blog", &[], &["spread"]), None), Decision::OutOfScope);
    }

    #[test]
    fn namespace_labels_carry_the_name_label_the_api_server_sets() {
        let labels = namespace_labels("shop", Some(&labels(&[("team", "a")])));
        assert_eq!(labels.get("kubernetes.io/metadata.name").map(String::as_str), Some("shop"));
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    }
}
