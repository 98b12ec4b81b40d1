//! The `replica-quorum` policy: a MySQL cluster's member count within bounds and, by default,
//! odd, so that a majority survives losing a member. `kubectl scale` is checked the same way.

use mysql_webhook_policy::{Policy, Request, Verdict, export_policy};
use serde::Deserialize;

/// The policy.
pub struct ReplicaQuorum;

/// Settings of `replica-quorum`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    /// The fewest members a running cluster may have.
    pub min: i32,
    /// The most members a cluster may have.
    pub max: i32,
    /// Whether the count must be odd: with an even count a network split can leave no majority.
    pub odd: bool,
    /// Whether 0 replicas is accepted regardless of `min` and `odd`: scaling to zero is how a
    /// cluster is parked for maintenance, and a parked cluster has no quorum to protect.
    pub allow_zero: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self { min: 1, max: 9, odd: true, allow_zero: true }
    }
}

impl Settings {
    /// The accepted counts, for messages: "3, 5 or 7", or a range when there are many.
    fn accepted(&self) -> String {
        let step = if self.odd { 2 } else { 1 };
        let first = if self.odd && self.min % 2 == 0 { self.min + 1 } else { self.min };
        let counts: Vec<String> = (first..=self.max).step_by(step).map(|n| n.to_string()).collect();
        let mut text = match counts.as_slice() {
            [] => String::from("none"),
            [one] => one.clone(),
            [rest @ .., last] if counts.len() <= 5 => format!("{} or {last}", rest.join(", ")),
            _ if self.odd => format!("odd numbers from {first} to {}", self.max),
            _ => format!("{} to {}", self.min, self.max),
        };
        if self.allow_zero {
            text.push_str(" (or 0, to park the cluster)");
        }
        text
    }
}

impl Policy for ReplicaQuorum {
    type Settings = Settings;

    fn validate_settings(s: &Settings) -> Result<(), String> {
        if s.min < 1 {
            return Err(format!(
                "min ({}) must be at least 1; set allowZero to accept scaling to zero",
                s.min
            ));
        }
        if s.min > s.max {
            return Err(format!("min ({}) is greater than max ({})", s.min, s.max));
        }
        if s.odd && s.min == s.max && s.min % 2 == 0 {
            return Err(format!(
                "min and max are both {} but odd is true: no replica count would be accepted",
                s.min
            ));
        }
        Ok(())
    }

    fn validate(request: &Request, s: &Settings) -> Verdict {
        let replicas = request.replicas();
        let subject = match (request.is_scale(), request.old_replicas()) {
            (true, Some(old)) => {
                format!("scaling {} from {old} to {replicas} replicas", request.statefulset_name())
            }
            (true, None) => format!("scaling {} to {replicas} replicas", request.statefulset_name()),
            (false, _) => format!("spec.replicas is {replicas}"),
        };
        if replicas == 0 {
            return if s.allow_zero {
                Verdict::allow().warn(format!(
                    "{} has 0 replicas: MySQL is not serving until it is scaled up again",
                    request.statefulset_name()
                ))
            } else {
                Verdict::deny(format!("{subject}: 0 replicas is not allowed (allowZero is false)"))
            };
        }
        let problem = if replicas < s.min {
            format!("below the minimum of {}", s.min)
        } else if replicas > s.max {
            format!("above the maximum of {}", s.max)
        } else if s.odd && replicas % 2 == 0 {
            String::from("an even count cannot keep a majority when the members split in half")
        } else {
            return Verdict::allow();
        };
        Verdict::deny(format!("{subject}: {problem}; accepted: {}", s.accepted()))
    }
}

export_policy!(ReplicaQuorum);
// One instance per call: allocations need never be freed (see the SDK's `arena`).
mysql_webhook_policy::use_call_arena!();

#[cfg(test)]
mod tests {
    use mysql_webhook_policy::testing::{self, create, expanded_statefulset, scale, spec_mut, update};
    use serde_json::Value;

    use super::*;

    fn with_replicas(replicas: Option<i32>) -> Value {
        let mut sts = expanded_statefulset();
        spec_mut(&mut sts).replicas = replicas;
        create(sts)
    }

    fn check(request: &Value, settings: &str) -> Verdict {
        testing::validate::<ReplicaQuorum>(request, settings)
    }

    #[test]
    fn the_default_expansion_passes_with_default_settings() {
        assert_eq!(testing::validate_settings::<ReplicaQuorum>("{}"), Ok(()));
        assert_eq!(check(&create(expanded_statefulset()), "{}"), Verdict::allow());
        assert_eq!(check(&create(expanded_statefulset()), "null"), Verdict::allow());
    }

    #[test]
    fn denies_even_replica_count() {
        let v = check(&with_replicas(Some(4)), "{}");
        assert!(!v.allowed);
        assert_eq!(
            v.message(),
            "spec.replicas is 4: an even count cannot keep a majority when the members split in half; \
             accepted: 1, 3, 5, 7 or 9 (or 0, to park the cluster)"
        );
    }

    #[test]
    fn accepts_even_counts_when_odd_is_off() {
        assert!(check(&with_replicas(Some(4)), r#"{"odd": false}"#).allowed);
    }

    #[test]
    fn absent_replicas_count_as_one() {
        assert!(check(&with_replicas(None), "{}").allowed);
        let v = check(&with_replicas(None), r#"{"min": 3}"#);
        assert!(
            v.message().starts_with("spec.replicas is 1: below the minimum of 3; accepted: 3, 5, 7 or 9"),
            "{v:?}"
        );
    }

    #[test]
    fn describes_many_accepted_counts_as_a_range() {
        let v = check(&with_replicas(Some(16)), r#"{"max": 15, "allowZero": false}"#);
        assert_eq!(
            v.message(),
            "spec.replicas is 16: above the maximum of 15; accepted: odd numbers from 1 to 15"
        );
        let v = check(&with_replicas(Some(16)), r#"{"max": 15, "odd": false, "allowZero": false}"#);
        assert_eq!(v.message(), "spec.replicas is 16: above the maximum of 15; accepted: 1 to 15");
    }

    #[test]
    fn denies_counts_outside_the_bounds() {
        let settings = r#"{"min": 3, "max": 7}"#;
        let v = check(&with_replicas(Some(9)), settings);
        assert_eq!(
            v.message(),
            "spec.replicas is 9: above the maximum of 7; accepted: 3, 5 or 7 (or 0, to park the cluster)"
        );
        assert!(check(&with_replicas(Some(1)), settings).message().contains("below the minimum of 3"));
        assert!(check(&with_replicas(Some(5)), settings).allowed);
    }

    #[test]
    fn scaling_to_zero_is_allowed_with_a_warning() {
        let v = check(&scale(expanded_statefulset(), 0), r#"{"min": 3}"#);
        assert!(v.allowed);
        assert_eq!(v.warnings, ["mysql has 0 replicas: MySQL is not serving until it is scaled up again"]);
    }

    #[test]
    fn denies_zero_when_allow_zero_is_off() {
        let v = check(&scale(expanded_statefulset(), 0), r#"{"allowZero": false}"#);
        assert_eq!(
            v.message(),
            "scaling mysql from 3 to 0 replicas: 0 replicas is not allowed (allowZero is false)"
        );
    }

    #[test]
    fn denies_scaling_to_an_even_count() {
        let v = check(&scale(expanded_statefulset(), 4), "{}");
        assert!(v.message().starts_with("scaling mysql from 3 to 4 replicas: an even count"), "{v:?}");
        assert!(check(&scale(expanded_statefulset(), 5), "{}").allowed);
    }

    #[test]
    fn denies_an_update_to_too_many_replicas() {
        let mut sts = expanded_statefulset();
        spec_mut(&mut sts).replicas = Some(11);
        let v = check(&update(expanded_statefulset(), sts), "{}");
        assert!(v.message().starts_with("spec.replicas is 11: above the maximum of 9"), "{v:?}");
    }

    #[test]
    fn refuses_min_greater_than_max() {
        let e = testing::validate_settings::<ReplicaQuorum>(r#"{"min": 5, "max": 3}"#).unwrap_err();
        assert_eq!(e, "settings: min (5) is greater than max (3)");
    }

    #[test]
    fn refuses_min_below_one() {
        let e = testing::validate_settings::<ReplicaQuorum>(r#"{"min": 0}"#).unwrap_err();
        assert!(e.starts_with("settings: min (0) must be at least 1; set allowZero"), "{e}");
    }

    #[test]
    fn refuses_bounds_that_admit_no_odd_count() {
        let e = testing::validate_settings::<ReplicaQuorum>(r#"{"min": 4, "max": 4}"#).unwrap_err();
        assert_eq!(e, "settings: min and max are both 4 but odd is true: no replica count would be accepted");
    }

    #[test]
    fn refuses_misspelt_and_mistyped_settings() {
        let e = testing::validate_settings::<ReplicaQuorum>(r#"{"mni": 3}"#).unwrap_err();
        assert!(
            e.starts_with("settings: unknown field `mni`, expected one of `min`, `max`, `odd`, `allowZero`"),
            "{e}"
        );
        let e = testing::validate_settings::<ReplicaQuorum>(r#"{"max": "7"}"#).unwrap_err();
        assert!(e.starts_with("settings: max: invalid type: string \"7\""), "{e}");
    }
}
