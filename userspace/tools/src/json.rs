//! Minimal JSON output for the machine-readable result lines.
//!
//! The guest tools are static binaries in the initramfs; a serializer
//! dependency would cost more than these few lines. Only what the lines
//! need: objects of strings, integers, floats and booleans.

use std::fmt::Write;

/// A JSON object built field by field, in insertion order.
#[derive(Default)]
pub struct Object {
    body: String,
}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, k: &str) {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        push_str(&mut self.body, k);
        self.body.push(':');
    }

    /// Adds a string field.
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_str(&mut self.body, v);
        self
    }

    /// Adds an integer field.
    pub fn int(mut self, k: &str, v: u64) -> Self {
        self.key(k);
        let _ = write!(self.body, "{v}");
        self
    }

    /// Adds a number field; non-finite values become `null` (JSON has none).
    pub fn num(mut self, k: &str, v: f64) -> Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.body, "{v}");
        } else {
            self.body.push_str("null");
        }
        self
    }

    /// Adds a boolean field.
    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.body.push_str(if v { "true" } else { "false" });
        self
    }

    /// The object as one line of JSON.
    pub fn finish(&self) -> String {
        format!("{{{}}}", self.body)
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_order_with_escapes() {
        let o = Object::new()
            .str("kind", "lat\"ency\n")
            .int("size", 64)
            .num("mib_s", 1.5)
            .num("bad", f64::NAN)
            .bool("ok", true);
        assert_eq!(
            o.finish(),
            r#"{"kind":"lat\"ency\u000a","size":64,"mib_s":1.5,"bad":null,"ok":true}"#
        );
        assert_eq!(Object::new().finish(), "{}");
    }
}
