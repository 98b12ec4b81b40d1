//! Label selector matching, as the API server and scheduler do it: policies need it to tell
//! whether an anti-affinity term or spread constraint actually applies to the StatefulSet's pods.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// Whether `selector` selects an object with `labels`. An empty selector selects everything;
/// every `matchLabels` entry and every `matchExpressions` requirement must hold. An unknown
/// operator selects nothing, as the API server would refuse it.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_hold =
        selector.match_labels.iter().flatten().all(|(key, value)| labels.get(key) == Some(value));
    labels_hold && selector.match_expressions.iter().flatten().all(|req| requirement_holds(req, labels))
}

fn requirement_holds(req: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let listed = |v: &String| req.values.iter().flatten().any(|candidate| candidate == v);
    match req.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => !value.is_some_and(listed),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector { match_expressions: Some(exprs), match_labels: None }
    }

    #[test]
    fn empty_selector_selects_everything() {
        assert!(matches(&LabelSelector::default(), &labels(&[])));
    }

    #[test]
    fn match_labels_must_be_a_subset() {
        let pod = labels(&[("app", "mysql"), ("tier", "db")]);
        let sel = LabelSelector { match_labels: Some(labels(&[("app", "mysql")])), match_expressions: None };
        assert!(matches(&sel, &pod));
        let other =
            LabelSelector { match_labels: Some(labels(&[("app", "redis")])), match_expressions: None };
        assert!(!matches(&other, &pod));
    }

    #[test]
    fn in_and_not_in_look_at_the_value() {
        let pod = labels(&[("app", "mysql")]);
        assert!(matches(&selector(vec![expr("app", "In", &["mysql", "mariadb"])]), &pod));
        assert!(!matches(&selector(vec![expr("app", "In", &["redis"])]), &pod));
        assert!(!matches(&selector(vec![expr("app", "NotIn", &["mysql"])]), &pod));
        assert!(matches(&selector(vec![expr("missing", "NotIn", &["x"])]), &pod));
    }

    #[test]
    fn exists_and_does_not_exist_look_at_the_key() {
        let pod = labels(&[("app", "mysql")]);
        assert!(matches(&selector(vec![expr("app", "Exists", &[])]), &pod));
        assert!(!matches(&selector(vec![expr("app", "DoesNotExist", &[])]), &pod));
        assert!(matches(&selector(vec![expr("zone", "DoesNotExist", &[])]), &pod));
    }

    #[test]
    fn unknown_operators_select_nothing() {
        assert!(!matches(&selector(vec![expr("app", "Gt", &["1"])]), &labels(&[("app", "2")])));
    }
}
