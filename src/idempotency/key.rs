//! An `Idempotency-Key` as a publisher sends it, and the digest a store
//! knows it by: the SHA-256 of its scope and the key, never the key itself.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::auth::Subject;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// A valid `Idempotency-Key`: 1–255 printable ASCII characters (space to `~`).
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(Box<str>);

/// Why a value is not an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// It is empty.
    #[error("Idempotency-Key is empty; send 1 to 255 printable ASCII characters")]
    Empty,
    /// It is longer than [`MAX_KEY_LEN`] bytes.
    #[error("Idempotency-Key is {0} bytes long; the most is 255")]
    TooLong(usize),
    /// It holds a byte outside printable ASCII.
    #[error(
        "Idempotency-Key holds a character that is not printable ASCII; send 1 to 255 of space to ~"
    )]
    NotPrintable,
}

impl IdempotencyKey {
    /// Parses a key: 1–255 bytes, each printable ASCII (`0x20`–`0x7E`).
    pub fn parse(raw: &[u8]) -> Result<Self, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        if raw.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(raw.len()));
        }
        if !raw.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(KeyError::NotPrintable);
        }
        // Printable ASCII is UTF-8.
        let text = std::str::from_utf8(raw).map_err(|_| KeyError::NotPrintable)?;
        Ok(Self(text.into()))
    }

    /// The digest a store keeps for this key of `scope`.
    pub fn digest(&self, scope: Scope<'_>) -> KeyDigest {
        // The tags keep the scopes apart; a subject holds no control
        // character, so the NUL after it ends it unambiguously.
        let mut hasher = Sha256::new();
        match scope {
            Scope::Subject(sub) => {
                hasher.update(b"sub\0");
                hasher.update(sub.as_str().as_bytes());
            }
            Scope::Outbox => hasher.update(b"outbox"),
        }
        hasher.update(b"\0");
        hasher.update(self.0.as_bytes());
        KeyDigest(hasher.finalize().into())
    }
}

impl fmt::Debug for IdempotencyKey {
    /// Never prints the key: what a publisher chose is not for the logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdempotencyKey([redacted])")
    }
}

/// Whose key it is: keys of one scope never meet those of another.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A bearer publishing through `POST /publish`: its `sub`.
    Subject(&'a Subject),
    /// The app's outbox (no `sub` names this scope).
    Outbox,
}

/// What a store knows a key by: SHA-256 of its scope and the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The key an outbox row without an `idempotency_key` is published
    /// under: the row itself (its table, id and creation time, so a table
    /// recreated with its ids starting over makes new keys), in a scope of
    /// its own, so that a row published again after a crash answers its
    /// first id instead of publishing twice.
    pub fn outbox_row(table: &str, id: i64, created_micros: i64) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"outbox-row\0");
        hasher.update(table.as_bytes());
        hasher.update(b"\0");
        hasher.update(id.to_be_bytes());
        hasher.update(created_micros.to_be_bytes());
        Self(hasher.finalize().into())
    }

    /// The digest in hex, as stores name it.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({})", self.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_1_to_255_printable_ascii_characters() {
        assert!(IdempotencyKey::parse(b"a").is_ok());
        assert!(IdempotencyKey::parse(b"order 42: ~!").is_ok());
        assert!(IdempotencyKey::parse("k".repeat(255).as_bytes()).is_ok());
        assert_eq!(IdempotencyKey::parse(b""), Err(KeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse("k".repeat(256).as_bytes()),
            Err(KeyError::TooLong(256))
        );
        for bad in [&b"a\tb"[..], b"a\x7fb", b"\0", "é".as_bytes()] {
            assert_eq!(IdempotencyKey::parse(bad), Err(KeyError::NotPrintable));
        }
    }

    #[test]
    fn scopes_never_share_a_digest() {
        let key = IdempotencyKey::parse(b"k").expect("a key");
        let alice = Subject::parse("alice").expect("a subject");
        let bob = Subject::parse("bob").expect("a subject");
        let outbox = Subject::parse("outbox").expect("a subject");
        let digests = [
            key.digest(Scope::Subject(&alice)),
            key.digest(Scope::Subject(&bob)),
            key.digest(Scope::Subject(&outbox)),
            key.digest(Scope::Outbox),
        ];
        for (i, a) in digests.iter().enumerate() {
            for b in &digests[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(digests[0], key.digest(Scope::Subject(&alice)));
        let row = KeyDigest::outbox_row("sse_outbox", 1, 0);
        assert!(!digests.contains(&row));
        assert_ne!(
            row,
            KeyDigest::outbox_row("sse_outbox", 1, 1),
            "a reused id"
        );
        assert_ne!(row, KeyDigest::outbox_row("other_outbox", 1, 0));
        let secret = IdempotencyKey::parse(b"order-42-attempt").expect("a key");
        assert!(!format!("{secret:?}").contains("order-42"));
    }
}
