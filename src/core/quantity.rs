//! Kubernetes resource quantities (`500m`, `1Gi`, `1.5e3`), parsed exactly: the one parser of
//! the project. The webhook checks the `storage` annotation with it, the policies (through the
//! SDK) compare sizes and CPU with it; two parsers used to disagree (a float one accepted `1e400`
//! as infinity).

use std::fmt;
use std::str::FromStr;

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

    /// `units` whole units (bytes, cores).
    pub const fn from_units(units: i64) -> Self {
        Self { nanos: units as i128 * 1_000_000_000 }
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
}
