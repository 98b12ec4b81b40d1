//! The Kubernetes name rules the project checks, in one place: the webhook refuses a bad
//! annotation with them, `policies.yaml` refuses a bad policy name with them, and the messages
//! quote the same rule text everywhere.

/// A kind of Kubernetes name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: ConfigMap, Secret, StorageClass and most object names.
    Dns1123Subdomain,
    /// RFC 1123 label: a single DNS label; policy names, label-like identifiers.
    Dns1123Label,
    /// RFC 1035 label: Service names, whose DNS records peers resolve.
    Dns1035Label,
}

impl NameRule {
    /// Whether `value` follows the rule.
    pub fn accepts(self, value: &str) -> bool {
        let label_chars =
            |label: &str| label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let alphanumeric_ends =
            |label: &str| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-');
        match self {
            NameRule::Dns1123Subdomain => {
                value.len() <= 253
                    && value.split('.').all(|label| label_chars(label) && alphanumeric_ends(label))
            }
            NameRule::Dns1123Label => value.len() <= 63 && label_chars(value) && alphanumeric_ends(value),
            NameRule::Dns1035Label => {
                value.len() <= 63
                    && label_chars(value)
                    && alphanumeric_ends(value)
                    && value.starts_with(|c: char| c.is_ascii_lowercase())
            }
        }
    }

    /// What the rule accepts, for messages.
    pub fn description(self) -> &'static str {
        match self {
            NameRule::Dns1123Subdomain => {
                "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
            }
            NameRule::Dns1123Label => {
                "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
            }
            NameRule::Dns1035Label => {
                "lowercase letters, digits and '-', starting with a letter, at most 63 characters"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NameRule::*;

    #[test]
    fn subdomains_take_dots_and_253_characters() {
        assert!(Dns1123Subdomain.accepts("mysql-credentials.v2"));
        assert!(Dns1123Subdomain.accepts("0db"));
        assert!(Dns1123Subdomain.accepts(&"a".repeat(253)));
        for bad in ["", "Mysql", "a..b", "-a", "a-", "a.-b", "a_b", &"a".repeat(254)] {
            assert!(!Dns1123Subdomain.accepts(bad), "{bad:?}");
        }
    }

    #[test]
    fn labels_take_neither_dots_nor_more_than_63_characters() {
        assert!(Dns1123Label.accepts("replica-quorum"));
        assert!(Dns1123Label.accepts("3dbs"));
        for bad in ["", "a.b", "A", "-a", "a-", &"a".repeat(64)] {
            assert!(!Dns1123Label.accepts(bad), "{bad:?}");
        }
    }

    #[test]
    fn service_names_start_with_a_letter() {
        assert!(Dns1035Label.accepts("mysql-read"));
        for bad in ["3dbs", "", "a.b", "a-", "Mysql", &"a".repeat(64)] {
            assert!(!Dns1035Label.accepts(bad), "{bad:?}");
        }
    }
}
