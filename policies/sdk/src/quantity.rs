//! Kubernetes resource quantities (`500m`, `1Gi`, `1.5e3`), parsed exactly so that policies can
//! compare sizes and CPU, and bounds taken from settings that name their field in every message.
//!
//! One implementation for every policy: the storage and resources policies both compare
//! quantities, and two parsers would disagree on some corner (`1e3`, `0.1m`, `Ki` vs `k`).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Nanounits per unit: `n` is the smallest suffix Kubernetes accepts.
const NANOS_PER_UNIT: i32 = 9;

/// A quantity as an exact count of nano-units (1 = 10⁻⁹ of the unit: cores for CPU, bytes for
/// memory and storage), so comparisons never round. Smaller fractions round up, as Kubernetes
/// does. The range (±1.7 × 10²⁹ units) dwarfs anything a cluster can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseQuantityError {
    reason: String,
}

impl fmt::Display for ParseQuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseQuantityError {}

fn invalid(reason: impl Into<String>) -> ParseQuantityError {
    ParseQuantityError { reason: reason.into() }
}

/// What a suffix multiplies by: a power of ten, or a power of 1024.
enum Scale {
    Decimal(i32),
    Binary(u32),
}

fn suffix_scale(suffix: &str) -> Result<Scale, ParseQuantityError> {
    Ok(match suffix {
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "" => Scale::Decimal(0),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        "Ki" => Scale::Binary(1),
        "Mi" => Scale::Binary(2),
        "Gi" => Scale::Binary(3),
        "Ti" => Scale::Binary(4),
        "Pi" => Scale::Binary(5),
        "Ei" => Scale::Binary(6),
        // "E" alone is exa; followed by more it is an exponent, as in Kubernetes.
        exp if exp.starts_with(['e', 'E']) => {
            let digits = &exp[1..];
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("bad exponent {exp:?}")));
            }
            // Beyond ±1000 the value is 0, 1n or overflow anyway; clamping keeps i32 arithmetic safe.
            Scale::Decimal(digits.parse::<i32>().unwrap_or(if digits.starts_with('-') {
                -1000
            } else {
                1000
            }))
        }
        other => {
            return Err(invalid(format!(
                "unknown suffix {other:?} (accepted: n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent like e3)"
            )));
        }
    })
}

impl Quantity {
    /// Zero.
    pub const ZERO: Self = Self { nanos: 0 };

    /// Parses a quantity in Kubernetes' syntax: an optionally signed decimal number, then a
    /// binary suffix (Ki … Ei), a decimal suffix (n, u, m, k, M … E) or an exponent (e3, E-2).
    ///
    /// # Errors
    ///
    /// When `s` is not a quantity, or is too large to represent.
    pub fn parse(s: &str) -> Result<Self, ParseQuantityError> {
        let (negative, unsigned) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len = unsigned.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (number, suffix) = unsigned.split_at(number_len);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(invalid(if s.is_empty() {
                "empty".to_string()
            } else {
                format!("{s:?} has no number")
            }));
        }
        if frac.contains('.') {
            return Err(invalid(format!("{number:?} has more than one decimal point")));
        }
        let too_large = || invalid(format!("{s:?} is too large"));
        let mut mantissa: i128 = 0;
        for digit in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(digit - b'0')))
                .ok_or_else(too_large)?;
        }
        let frac_len = i32::try_from(frac.len()).map_err(|_| too_large())?;
        let (exp10, exp1024) = match suffix_scale(suffix)? {
            Scale::Decimal(e) => (e, 0),
            Scale::Binary(e) => (0, e),
        };
        let binary = 1024_i128.checked_pow(exp1024).ok_or_else(too_large)?;
        let scaled = mantissa.checked_mul(binary).ok_or_else(too_large)?;
        let exp = exp10 + NANOS_PER_UNIT - frac_len;
        let nanos = if scaled == 0 {
            0
        } else if exp >= 0 {
            u32::try_from(exp)
                .ok()
                .and_then(|e| 10_i128.checked_pow(e))
                .and_then(|p| scaled.checked_mul(p))
                .ok_or_else(too_large)?
        } else {
            // A divisor too large for i128 leaves a positive fraction of a nano-unit: 1 after rounding up.
            match u32::try_from(-exp).ok().and_then(|e| 10_i128.checked_pow(e)) {
                Some(p) => (scaled + p - 1) / p,
                None => 1,
            }
        };
        Ok(Self { nanos: if negative { -nanos } else { nanos } })
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }
}

impl FromStr for Quantity {
    type Err = ParseQuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&k8s_openapi::apimachinery::pkg::api::resource::Quantity> for Quantity {
    type Error = ParseQuantityError;

    fn try_from(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Result<Self, Self::Error> {
        Self::parse(&q.0)
    }
}

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

    fn nanos(s: &str) -> i128 {
        q(s).nanos
    }

    #[test]
    fn binary_suffixes_are_powers_of_1024() {
        assert_eq!(nanos("1Ki"), 1024 * 1_000_000_000);
        assert_eq!(q("1Gi"), q("1073741824"));
        assert_eq!(q("1Ei"), q("1152921504606846976"));
        assert_eq!(q("1.5Gi"), q("1536Mi"));
    }

    #[test]
    fn decimal_suffixes_are_powers_of_ten() {
        assert_eq!(q("500m"), q("0.5"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("2M"), q("2000k"));
        assert_eq!(q("1G"), q("1e9"));
        assert_eq!(q("3T"), q("3000G"));
        assert_eq!(q("1P"), q("1e15"));
        assert_eq!(q("1E"), q("1e18"));
        assert_eq!(nanos("1n"), 1);
        assert_eq!(nanos("1u"), 1000);
    }

    #[test]
    fn exponents_may_be_signed_and_either_case() {
        assert_eq!(q("1.5e3"), q("1500"));
        assert_eq!(q("15E-1"), q("1.5"));
        assert_eq!(q("1e+2"), q("100"));
    }

    #[test]
    fn decimal_points_may_lead_or_trail() {
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("2."), q("2"));
        assert_eq!(q("+1"), q("1"));
    }

    #[test]
    fn fractions_of_a_nano_round_up() {
        assert_eq!(nanos("0.1n"), 1);
        assert_eq!(nanos("1e-40"), 1);
        assert_eq!(nanos("0e-40"), 0);
    }

    #[test]
    fn binary_and_decimal_compare_exactly() {
        assert!(q("1Gi") > q("1G"));
        assert!(q("1000Mi") < q("1Gi"));
        assert!(q("999m") < q("1"));
        assert!(q("-1") < Quantity::ZERO);
        assert!(q("-1").is_negative());
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in ["", "Gi", "1GB", "1 Gi", "1.2.3", "ten", "1e", "1e3.5", "1Gi ", "--1", "."] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(Quantity::parse("1GB").unwrap_err().to_string().contains("unknown suffix \"GB\""));
    }

    #[test]
    fn rejects_quantities_too_large_to_hold() {
        assert!(Quantity::parse("1e40").unwrap_err().to_string().contains("too large"));
        assert!(Quantity::parse("99999999999999999999999999999999999999999").is_err());
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
