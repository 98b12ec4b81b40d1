//! The SDK's verdict: what a policy answers, with builders so policies read as rules, not plumbing.

/// The answer to one admission request.
///
/// Mirrors the WIT `verdict` record; the export glue converts it. Warnings are shown by `kubectl`
/// whether or not the request is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why it was denied; shown to the user. `None` when allowed.
    pub message: Option<String>,
    /// Returned to `kubectl` as warnings, allowed or not.
    pub warnings: Vec<String>,
}

impl Verdict {
    /// Lets the request through.
    pub fn allow() -> Self {
        Self { allowed: true, message: None, warnings: Vec::new() }
    }

    /// Refuses the request; `message` should name the offending field and what is accepted.
    pub fn deny(message: impl Into<String>) -> Self {
        Self { allowed: false, message: Some(message.into()), warnings: Vec::new() }
    }

    /// Allows when there are no violations, else denies with all of them joined by "; ", so a
    /// user fixes everything in one round trip instead of one finding per `kubectl apply`.
    pub fn from_violations(violations: Vec<String>) -> Self {
        if violations.is_empty() { Self::allow() } else { Self::deny(violations.join("; ")) }
    }

    /// Adds a warning.
    #[must_use]
    pub fn warn(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// Adds several warnings.
    #[must_use]
    pub fn with_warnings(mut self, warnings: impl IntoIterator<Item = String>) -> Self {
        self.warnings.extend(warnings);
        self
    }

    /// The deny message, or "" when allowed; handy in assertions.
    pub fn message(&self) -> &str {
        self.message.as_deref().unwrap_or("")
    }
}

impl From<Verdict> for crate::bindings::exports::mysql_webhook::policy::validator::Verdict {
    fn from(v: Verdict) -> Self {
        Self { allowed: v.allowed, message: v.message, warnings: v.warnings }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_violations_allow() {
        assert_eq!(Verdict::from_violations(Vec::new()), Verdict::allow());
    }

    #[test]
    fn violations_are_joined_into_one_deny() {
        let v = Verdict::from_violations(vec!["a is bad".into(), "b is bad".into()]);
        assert!(!v.allowed);
        assert_eq!(v.message(), "a is bad; b is bad");
    }

    #[test]
    fn warnings_survive_a_deny() {
        let v = Verdict::deny("no").warn("careful").with_warnings(["again".to_string()]);
        assert_eq!(v.warnings, ["careful", "again"]);
        assert_eq!(v.message(), "no");
    }
}
