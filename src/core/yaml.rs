//! YAML output that every Kubernetes tool reads back as the same JSON.
//!
//! kubectl, Helm and Argo CD read YAML 1.1, where plain `yes`, `on`, `n`, `12:30` or `1_000` are
//! booleans and numbers, not strings; YAML 1.2 emitters (serde_yaml and its forks) leave them
//! plain, so a ConfigMap value `"on"` would come back as `true`. This emitter writes a string
//! plain only when it can't be read as anything else in either version, multi-line strings as
//! literal blocks (the scripts stay readable), and everything else double-quoted (a JSON string
//! literal is a valid YAML double-quoted scalar).

use std::fmt::Write;

use serde_json::Value;

/// Renders one document (without the `---` separator).
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            write_inline(&mut out, scalar, 0);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, level: usize) {
    out.extend(std::iter::repeat_n(' ', level));
}

/// Writes `map` at `level`; with `after_dash` the first key continues the current line (a list
/// item's `- `) and the rest align under it.
fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, level: usize, after_dash: bool) {
    for (index, (key, value)) in map.iter().enumerate() {
        if after_dash && index == 0 {
            out.push(' ');
        } else {
            indent(out, level);
        }
        write_string(out, key, level, true);
        out.push(':');
        write_value_after_key(out, value, level);
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    for item in items {
        indent(out, level);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => write_map(out, map, level + 2, true),
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, level + 2);
            }
            scalar => {
                out.push(' ');
                write_inline(out, scalar, level + 2);
                out.push('\n');
            }
        }
    }
}

/// After `key:`: a nested block on the next lines, or a scalar on the same line.
fn write_value_after_key(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, level + 2, false);
        }
        // kubectl's style: a list under a key at the key's own indentation.
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, level);
        }
        scalar => {
            out.push(' ');
            write_inline(out, scalar, level + 2);
            out.push('\n');
        }
    }
}

/// A scalar or an empty collection; `level` is the indentation of a literal block's lines.
fn write_inline(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s, level, false),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn write_string(out: &mut String, s: &str, level: usize, is_key: bool) {
    if is_plain(s) {
        out.push_str(s);
    } else if !is_key && is_literal_block(s) {
        let chomp = match s.strip_suffix('\n') {
            None => "-",
            Some(rest) if rest.ends_with('\n') => "+",
            Some(_) => "",
        };
        let _ = write!(out, "|{chomp}");
        let body = s.strip_suffix('\n').unwrap_or(s);
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                indent(out, level);
                out.push_str(line);
            }
        }
    } else {
        out.push_str(&serde_json::to_string(s).expect("a string always serialises"));
    }
}

/// Words YAML 1.1 reads as booleans or null.
const SPECIAL_WORDS: [&str; 11] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null", "=", "<<"];

/// Plain only when no YAML version can read it as anything but this string: it starts with a
/// letter or `/` (not a number, timestamp, sexagesimal, `~`, `.inf`, indicator), has no spaces
/// or flow/comment characters, doesn't end with `:`, and isn't a 1.1 boolean or null word.
fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    (first.is_ascii_alphabetic() || first == '/')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./:@=+-".contains(c))
        && !s.ends_with(':')
        && !SPECIAL_WORDS.contains(&s.to_ascii_lowercase().as_str())
}

/// Multi-line text that a literal block preserves exactly: printable, no carriage returns, and
/// a first line that doesn't start with a space (which would need an indentation indicator).
fn is_literal_block(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && !s.lines().any(|line| line.ends_with([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: &Value) -> Value {
        serde_yaml_ng::from_str(&to_string(value)).expect("valid YAML")
    }

    #[test]
    fn quotes_what_yaml_1_1_would_read_as_another_type() {
        let data = json!({"a": "yes", "b": "on", "c": "2026-11-24T10:00:00Z", "d": "0777", "e": "12:30",
            "f": "1_000", "g": "~", "h": "N", "i": "null", "j": "10Gi", "k": "500m", "l": ""});
        let text = to_string(&data);
        for line in text.lines() {
            let value = line.split_once(": ").unwrap().1;
            assert!(value.starts_with('"'), "{line}");
        }
        assert_eq!(round_trip(&data), data);
    }

    #[test]
    fn keeps_names_paths_and_images_plain() {
        let data = json!({"app.kubernetes.io/name": "mysql", "image": "mysql:8.4", "path": "/var/lib/mysql",
            "mysql-webhook.io/replicated": "true"});
        assert_eq!(
            to_string(&data),
            "app.kubernetes.io/name: mysql\nimage: mysql:8.4\npath: /var/lib/mysql\nmysql-webhook.io/replicated: \"true\"\n"
        );
    }

    #[test]
    fn writes_scripts_as_literal_blocks_with_exact_trailing_newlines() {
        for script in ["set -e\necho hi\n", "a\n  b\n\nc", "x\ny\n\n\n", "tab\there\n"] {
            let data = json!({"spec": {"containers": [{"command": ["bash", "-c", script]}]}});
            let text = to_string(&data);
            assert!(text.contains('|'), "{text}");
            assert_eq!(round_trip(&data), data, "{text}");
        }
    }

    #[test]
    fn round_trips_nested_structures_and_empty_collections() {
        let data = json!({"a": [], "b": {}, "c": [[1, 2], [{"x": null}], {"y": [true, 1.5, "two words"]}],
            "d": [{"name": "x", "items": [{"k": "v"}]}], "e": "line with \"quotes\" and \\ backslash"});
        assert_eq!(round_trip(&data), data);
    }
}
