//! Kubernetes resource quantities (`10Gi`, `500m`, `1.5e3`): the syntax the API server accepts,
//! so a bad `storage` annotation is refused here with a clear message instead of by the API server
//! with a confusing one.

/// Binary suffixes (powers of 1024) and decimal suffixes (powers of 1000), as in
/// k8s.io/apimachinery `resource.Quantity`.
const BINARY: [(&str, i32); 6] = [("Ki", 10), ("Mi", 20), ("Gi", 30), ("Ti", 40), ("Pi", 50), ("Ei", 60)];
const DECIMAL: [(&str, i32); 8] =
    [("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6), ("G", 9), ("T", 12), ("P", 15)];

/// Parses a quantity and returns its value in base units (bytes for storage), or `None` when the
/// text is not a quantity. Precision is that of `f64`, ample for comparing sizes.
pub fn parse(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    let split = unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(split);
    let digits_ok = !number.is_empty()
        && number != "."
        && number.matches('.').count() <= 1
        && number.bytes().any(|b| b.is_ascii_digit());
    if !digits_ok {
        return None;
    }
    let mantissa: f64 = number.parse().ok()?;
    let factor = if suffix.is_empty() {
        1.0
    } else if let Some((_, power)) = BINARY.iter().find(|(s, _)| *s == suffix) {
        2f64.powi(*power)
    } else if let Some((_, power)) = DECIMAL.iter().find(|(s, _)| *s == suffix) {
        10f64.powi(*power)
    } else if suffix == "E" {
        1e18
    } else {
        let exponent = suffix.strip_prefix(['e', 'E'])?;
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        10f64.powi(exponent.parse().ok()?)
    };
    Some(mantissa * factor)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_the_forms_kubernetes_accepts() {
        assert_eq!(parse("10Gi"), Some(10.0 * 1024f64.powi(3)));
        assert_eq!(parse("500M"), Some(5e8));
        assert_eq!(parse("1.5Ti"), Some(1.5 * 1024f64.powi(4)));
        assert_eq!(parse("100m"), Some(0.1));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("+2k"), Some(2000.0));
        assert_eq!(parse("123"), Some(123.0));
        assert_eq!(parse(".5Gi"), Some(0.5 * 1024f64.powi(3)));
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for bad in ["", "Gi", "10GB", "ten", "10 Gi", "1.2.3Gi", "-5Gi", "10gi", "1e", ".", "5i"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
