//! The fingerprint of a publish: what makes a repeat "the same body".

use std::fmt;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// SHA-256 over a publish as parsed: its topic, its event type (`message`
/// when the body named none) and its data in a canonical form: object keys
/// sorted, no whitespace, strings re-escaped as `serde_json` writes them,
/// numbers as `serde_json` prints them (so `1` and `1.0` differ, as the
/// events they publish do). Two bodies with the same fingerprint publish the
/// same event.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a publish to `topic` of type `kind` with `data`.
    pub fn of(topic: &str, kind: &str, data: &Value) -> Self {
        let mut hasher = Sha256::new();
        // Neither a topic nor an event type holds a NUL.
        hasher.update(b"publish/1\0");
        hasher.update(topic.as_bytes());
        hasher.update(b"\0");
        hasher.update(kind.as_bytes());
        hasher.update(b"\0");
        canonical(data, &mut hasher);
        Self(hasher.finalize().into())
    }

    /// The fingerprint in hex, as stores keep it.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads back [`Fingerprint::hex`].
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.hex())
    }
}

/// Feeds `value` to `hasher` as canonical JSON. Recursion is bounded by the
/// parser's own depth limit (128).
fn canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Null => hasher.update(b"null"),
        Value::Bool(true) => hasher.update(b"true"),
        Value::Bool(false) => hasher.update(b"false"),
        Value::Number(n) => hasher.update(n.to_string().as_bytes()),
        Value::String(s) => string(s, hasher),
        Value::Array(items) => {
            hasher.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                canonical(item, hasher);
            }
            hasher.update(b"]");
        }
        Value::Object(map) => {
            // Sorted here whatever order the map keeps (serde_json's
            // `preserve_order` feature would keep the body's).
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            hasher.update(b"{");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                string(key, hasher);
                hasher.update(b":");
                canonical(item, hasher);
            }
            hasher.update(b"}");
        }
    }
}

/// A JSON string literal, escaped as `serde_json` writes it.
fn string(s: &str, hasher: &mut Sha256) {
    // Writing a string into a hasher cannot fail.
    let _ = serde_json::to_writer(HashWriter(hasher), s);
}

/// `io::Write` into a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).expect("JSON")
    }

    #[test]
    fn whitespace_key_order_and_escapes_do_not_count() {
        let a = parsed(r#"{"b": [1, {"y": 2, "x": "A"}], "a": null}"#);
        let b = parsed(r#"{"a":null,"b":[1,{"x":"\u0041","y":2}]}"#);
        assert_eq!(Fingerprint::of("t", "m", &a), Fingerprint::of("t", "m", &b));
    }

    #[test]
    fn topic_type_and_data_each_count() {
        let base = Fingerprint::of("t", "message", &json!({"n": 1}));
        assert_ne!(base, Fingerprint::of("u", "message", &json!({"n": 1})));
        assert_ne!(base, Fingerprint::of("t", "other", &json!({"n": 1})));
        assert_ne!(base, Fingerprint::of("t", "message", &json!({"n": 2})));
        assert_ne!(
            base,
            Fingerprint::of("t", "message", &parsed(r#"{"n": 1.0}"#))
        );
        assert_ne!(base, Fingerprint::of("t", "message", &json!([{"n": 1}])));
        // The parts cannot slide into one another.
        assert_ne!(
            Fingerprint::of("ab", "c", &json!(1)),
            Fingerprint::of("a", "bc", &json!(1))
        );
        assert_eq!(Fingerprint::from_hex(&base.hex()), Some(base));
    }
}
