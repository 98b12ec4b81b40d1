//! Quantities in policy settings: [`QuantityText`] (a string or a number, as YAML writes it) and
//! [`Bound`], a limit that names its setting in every message. The parser itself is the core's
//! ([`Quantity`]), shared with the webhook so that a policy and the webhook agree on every value.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

pub use mysql_webhook_core::quantity::{ParseQuantityError, Quantity};

/// A quantity as written in settings: a string, or a number because YAML reads `maxCpu: 4` as
/// one (Kubernetes accepts both too). Kept as text, so that messages quote what the user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityText(String);

impl QuantityText {
    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for QuantityText {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;

        impl Visitor<'_> for Text {
            type Value = QuantityText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as \"512Mi\" or 2")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<QuantityText, E> {
                Ok(v.into())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<QuantityText, E> {
                Ok(QuantityText(v.to_string()))
            }
        }

        deserializer.deserialize_any(Text)
    }
}

/// A lower or upper limit from a policy's settings, remembering the setting's name and how the
/// user wrote it so that every message can quote both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    field: &'static str,
    text: String,
    value: Quantity,
}

impl Bound {
    /// Reads the setting `field`.
    ///
    /// # Errors
    ///
    /// A message naming `field` when `text` is not a quantity or is negative.
    pub fn parse(field: &'static str, text: &str) -> Result<Self, String> {
        let value = Quantity::parse(text).map_err(|e| {
            format!("{field}: {text:?} is not a Kubernetes quantity ({e}); write e.g. 512Mi, 10Gi or 500m")
        })?;
        if value.is_negative() {
            return Err(format!("{field}: {text:?} is negative"));
        }
        Ok(Self { field, text: text.to_string(), value })
    }

    /// Reads the optional setting `field`.
    ///
    /// # Errors
    ///
    /// As [`Bound::parse`].
    pub fn optional(field: &'static str, text: Option<&QuantityText>) -> Result<Option<Self>, String> {
        text.map(|t| Self::parse(field, t.as_str())).transpose()
    }

    /// Refuses a lower bound above an upper one: no object could pass both.
    ///
    /// # Errors
    ///
    /// A message naming both settings, e.g. `minSize (20Gi) is greater than maxSize (10Gi)`.
    pub fn check_order(min: Option<&Self>, max: Option<&Self>) -> Result<(), String> {
        match (min, max) {
            (Some(min), Some(max)) if min.value > max.value => {
                Err(format!("{} ({}) is greater than {} ({})", min.field, min.text, max.field, max.text))
            }
            _ => Ok(()),
        }
    }

    /// The setting's name.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The setting's value as the user wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed value.
    pub fn value(&self) -> Quantity {
        self.value
    }

    /// As a lower bound: `Some("500Mi is below minSize (1Gi)")` when `value` (written `text`) is under it.
    pub fn undershot_by(&self, text: &str, value: Quantity) -> Option<String> {
        (value < self.value).then(|| format!("{text} is below {} ({})", self.field, self.text))
    }

    /// As an upper bound: `Some("8 is above maxCpu (4)")` when `value` (written `text`) is over it.
    pub fn exceeded_by(&self, text: &str, value: Quantity) -> Option<String> {
        (value > self.value).then(|| format!("{text} is above {} ({})", self.field, self.text))
    }
}

/// Why the quantity written `text` (from the object under review) breaks `min` or `max`, if it
/// does: `"10GB" is not a Kubernetes quantity (...)`, `500Mi is below minSize (1Gi)`.
pub fn out_of_bounds(text: &str, min: Option<&Bound>, max: Option<&Bound>) -> Option<String> {
    match Quantity::parse(text) {
        Err(e) => Some(format!("{text:?} is not a Kubernetes quantity ({e})")),
        Ok(value) => min.and_then(|b| b.undershot_by(text, value)).or_else(|| max?.exceeded_by(text, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn bounds_name_their_field() {
        let e = Bound::parse("maxMemory", "16GB").unwrap_err();
        assert!(e.starts_with("maxMemory: \"16GB\" is not a Kubernetes quantity"), "{e}");
        assert_eq!(Bound::parse("minSize", "-1Gi").unwrap_err(), "minSize: \"-1Gi\" is negative");
    }

    #[test]
    fn out_of_bounds_reports_the_first_broken_bound_or_a_bad_quantity() {
        let min = Bound::parse("minSize", "1Gi").ok();
        let max = Bound::parse("maxSize", "1Ti").ok();
        let check = |text| out_of_bounds(text, min.as_ref(), max.as_ref());
        assert_eq!(check("10Gi"), None);
        assert_eq!(check("1M").as_deref(), Some("1M is below minSize (1Gi)"));
        assert_eq!(check("2Ti").as_deref(), Some("2Ti is above maxSize (1Ti)"));
        assert!(
            check("2TB")
                .is_some_and(|m| m.starts_with("\"2TB\" is not a Kubernetes quantity (unknown suffix"))
        );
        assert_eq!(out_of_bounds("2Ti", None, None), None);
    }

    #[test]
    fn settings_may_write_quantities_as_numbers() {
        let texts: Vec<QuantityText> = serde_json::from_str(r#"["512Mi", 4, -1, 0.5]"#).unwrap();
        let texts: Vec<&str> = texts.iter().map(QuantityText::as_str).collect();
        assert_eq!(texts, ["512Mi", "4", "-1", "0.5"]);
        let e = serde_json::from_str::<QuantityText>("true").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid type: boolean `true`, expected a quantity such as \"512Mi\" or 2"),
            "{e}"
        );
    }

    #[test]
    fn bounds_out_of_order_are_refused() {
        let min = Bound::parse("minSize", "20Gi").ok();
        let max = Bound::parse("maxSize", "10Gi").ok();
        let e = Bound::check_order(min.as_ref(), max.as_ref()).unwrap_err();
        assert_eq!(e, "minSize (20Gi) is greater than maxSize (10Gi)");
        assert!(Bound::check_order(max.as_ref(), min.as_ref()).is_ok());
    }

    #[test]
    fn bounds_describe_the_values_they_refuse() {
        let min = Bound::parse("minSize", "1Gi").unwrap();
        assert_eq!(min.undershot_by("500Mi", q("500Mi")).as_deref(), Some("500Mi is below minSize (1Gi)"));
        assert_eq!(min.undershot_by("1024Mi", q("1024Mi")), None);
        let max = Bound::parse("maxCpu", "4").unwrap();
        assert_eq!(max.exceeded_by("4500m", q("4500m")).as_deref(), Some("4500m is above maxCpu (4)"));
    }
}
