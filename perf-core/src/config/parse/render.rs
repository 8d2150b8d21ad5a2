//! How keys and values are shown in errors: as TOML would write them, cut short when long.

use std::fmt::Write as _;

use toml::Value;

use super::section::sorted_entries;

/// Rendered values longer than this many bytes are cut short.
const MAX_RENDERED: usize = 60;

/// Appends `key` to a dotted path, quoting it when it is not a bare TOML key.
pub(super) fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        render_str(key)
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// A value as TOML would write it, cut short when long.
pub(super) fn render(v: &Value) -> String {
    let mut out = String::new();
    render_into(v, &mut out);
    if out.len() > MAX_RENDERED {
        let mut end = MAX_RENDERED;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...");
    }
    out
}

pub(super) fn render_str(s: &str) -> String {
    let mut out = String::new();
    push_str_literal(s, &mut out);
    out
}

fn render_into(v: &Value, out: &mut String) {
    if out.len() > MAX_RENDERED {
        return;
    }
    match v {
        Value::String(s) => push_str_literal(s, out),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(x) if x.is_nan() => out.push_str("nan"),
        Value::Float(x) if x.is_infinite() => out.push_str(if *x > 0.0 { "inf" } else { "-inf" }),
        Value::Float(x) => {
            let _ = write!(out, "{x:?}");
        }
        Value::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Datetime(d) => {
            let _ = write!(out, "{d}");
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_into(item, out);
            }
            out.push(']');
        }
        Value::Table(table) if table.is_empty() => out.push_str("{}"),
        Value::Table(table) => {
            out.push_str("{ ");
            for (i, (key, value)) in sorted_entries(table).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&join("", key));
                out.push_str(" = ");
                render_into(value, out);
            }
            out.push_str(" }");
        }
    }
}

/// Appends `s` as a TOML basic string, stopping early when the output is long.
fn push_str_literal(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if out.len() > MAX_RENDERED {
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
