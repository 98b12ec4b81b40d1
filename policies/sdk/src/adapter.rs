//! The one code path between the WIT exports and a [`Policy`]: the wasm glue that
//! [`export_policy!`](crate::export_policy) emits and the native [`testing`](crate::testing) helpers
//! both call these functions, so a policy tested natively behaves as it will in the host.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Policy, Request, Verdict, Whole};

/// The `validate-settings` export.
///
/// # Errors
///
/// Settings that do not parse or that the policy refuses, prefixed with "settings: ".
pub fn validate_settings<P: Policy>(settings: &str) -> Result<(), String> {
    checked_settings::<P>(settings).map(drop)
}

/// The `validate` export: `view` is the request with its objects as views, `whole` where the
/// whole request comes from. Settings are checked again on every call, so a policy's `validate`
/// only ever sees settings its `validate_settings` accepted, whatever the host does.
pub fn validate<P: Policy>(view: &str, settings: &str, whole: Whole) -> Verdict {
    let settings = match checked_settings::<P>(settings) {
        Ok(settings) => settings,
        Err(e) => return Verdict::deny(e),
    };
    match Request::from_view(view, whole) {
        Ok(request) => P::validate(&request, &settings),
        Err(e) => Verdict::deny(format!("the policy could not read the admission request: {e}")),
    }
}

fn checked_settings<P: Policy>(json: &str) -> Result<P::Settings, String> {
    let settings = parse_settings::<P::Settings>(json).map_err(|e| format!("settings: {e}"))?;
    P::validate_settings(&settings).map_err(|e| format!("settings: {e}"))?;
    Ok(settings)
}

/// Empty and `null` settings are the defaults: the host sends those when the user gave none.
fn parse_settings<S: DeserializeOwned + Default>(json: &str) -> Result<S, String> {
    if json.trim().is_empty() {
        return Ok(S::default());
    }
    // Via a `Value`: its errors carry no line and column, which would point into JSON the host
    // made from the user's YAML, not into anything the user wrote.
    let value: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    if value.is_null() {
        return Ok(S::default());
    }
    S::deserialize(&value).map_err(|e| name_field::<S>(&value, e.to_string()))
}

/// serde names the field only for unknown and missing fields; for a value of the wrong type
/// ("invalid type: string \"3\", expected u32") find the culprit by deserializing each top-level
/// field alone, which works because policy settings are `#[serde(default)]`.
fn name_field<S: DeserializeOwned>(value: &Value, message: String) -> String {
    let Value::Object(fields) = value else { return message };
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        return message;
    }
    fields
        .iter()
        .find_map(|(key, field)| {
            let alone = Value::Object(Map::from_iter([(key.clone(), field.clone())]));
            match S::deserialize(&alone) {
                Err(e) if !e.to_string().starts_with("missing field") => Some(format!("{key}: {e}")),
                _ => None,
            }
        })
        .unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
    struct Settings {
        min: u32,
        allow_zero: bool,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self { min: 1, allow_zero: true }
        }
    }

    struct Echo;

    impl Policy for Echo {
        type Settings = Settings;

        fn validate_settings(settings: &Settings) -> Result<(), String> {
            if settings.min > 9 { Err(format!("min ({}) is above 9", settings.min)) } else { Ok(()) }
        }

        fn validate(request: &Request, settings: &Settings) -> Verdict {
            Verdict::deny(format!("{} min={}", request.statefulset_name(), settings.min))
        }
    }

    #[test]
    fn empty_and_null_settings_are_the_defaults() {
        for json in ["", "  ", "null", "{}"] {
            assert_eq!(parse_settings::<Settings>(json), Ok(Settings::default()), "{json:?}");
        }
    }

    #[test]
    fn unknown_settings_fields_are_named_with_the_accepted_ones() {
        let e = validate_settings::<Echo>(r#"{"mni": 3}"#).unwrap_err();
        assert_eq!(e, "settings: unknown field `mni`, expected `min` or `allowZero`");
    }

    #[test]
    fn mistyped_settings_fields_are_named() {
        let e = validate_settings::<Echo>(r#"{"min": 2, "allowZero": "yes"}"#).unwrap_err();
        assert_eq!(e, "settings: allowZero: invalid type: string \"yes\", expected a boolean");
    }

    #[test]
    fn settings_that_are_not_json_are_refused() {
        let e = validate_settings::<Echo>("{min: 3}").unwrap_err();
        assert!(e.starts_with("settings: not JSON: key must be a string"), "{e}");
    }

    #[test]
    fn the_policys_own_settings_check_is_prefixed() {
        assert_eq!(validate_settings::<Echo>(r#"{"min": 10}"#).unwrap_err(), "settings: min (10) is above 9");
    }

    #[test]
    fn validate_refuses_settings_the_policy_refuses() {
        let request = crate::testing::create(crate::testing::expanded_statefulset()).to_string();
        let v = validate::<Echo>(&request, r#"{"min": 10}"#, Whole::Json(request.clone()));
        assert_eq!(v.message(), "settings: min (10) is above 9");
        assert_eq!(validate::<Echo>(&request, "null", Whole::Json(request.clone())).message(), "mysql min=1");
    }

    #[test]
    fn unreadable_requests_are_denied_with_the_reason() {
        let unread = || Whole::Json(String::new());
        let v = validate::<Echo>("42", "", unread());
        assert!(!v.allowed);
        assert!(v.message().starts_with("the policy could not read the admission request: invalid type: integer `42`, expected struct AdmissionRequest"), "{v:?}");
        let scale = r#"{"operation": "UPDATE", "object": {"apiVersion": "autoscaling/v1", "kind": "Scale"}}"#;
        let v = validate::<Echo>(scale, "", unread());
        assert!(v.message().contains("autoscaling/v1"), "{v:?}");
        let v = validate::<Echo>(r#"{"operation": "CREATE"}"#, "", unread());
        assert!(v.message().ends_with("object is missing"), "{v:?}");
    }
}
