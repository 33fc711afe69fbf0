//! Keys in Redis, shared by every instance on it (one Redis or a Cluster).
//!
//! One hash per key, `idempotency:<digest>` under the configured prefix
//! (the digest is the SHA-256 of the key's scope and the key: neither the
//! key nor the `sub` appears in Redis), with the fields `s` (`pending` or
//! `done`), `f` (fingerprint), `id` (event id), `o` (owner token), `l`
//! (lease end) and `e` (expiry), times in Unix ms of the service's clock.
//! Each change is one script on that one key, so it is atomic and lives on
//! one Cluster slot: a claim writes the hash only where none is live (the
//! `SET NX` of a key whose expiry is judged by the service's clock, so
//! tests can move time), the other scripts compare the owner token before
//! they write. `PEXPIRE` drops the hash at its expiry as well.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Claim, Entry, Fingerprint, IdempotencyError, IdempotencyStore, KeyDigest, Owner, Times,
};
use crate::redis_link::RedisLink;

/// Writes a pending claim unless a live entry is there; returns that entry.
/// KEYS: the key. ARGV: now, fingerprint, id, owner, lease end, expiry, TTL (ms).
/// Returns nil when claimed, else `{state, fingerprint, id, owner, lease end}`.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local found = redis.call('HMGET', KEYS[1], 'e', 's', 'f', 'id', 'o', 'l')
if found[1] and tonumber(found[1]) > tonumber(ARGV[1]) then
  return {found[2], found[3], found[4], found[5], found[6]}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', 'pending', 'f', ARGV[2], 'id', ARGV[3], 'o', ARGV[4],
  'l', ARGV[5], 'e', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return false
",
    )
});

/// Replaces a pending claim whose lease has ended, if its owner is still `stale`.
/// KEYS: the key. ARGV: now, stale owner, fingerprint, id, owner, lease end,
/// expiry, TTL (ms). Returns 1 when replaced.
static TAKE_OVER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local s = redis.call('HMGET', KEYS[1], 's', 'o', 'l', 'e')
local now = tonumber(ARGV[1])
if s[1] ~= 'pending' or s[2] ~= ARGV[2] or tonumber(s[3]) > now or tonumber(s[4]) <= now then
  return 0
end
redis.call('HSET', KEYS[1], 'f', ARGV[3], 'id', ARGV[4], 'o', ARGV[5], 'l', ARGV[6], 'e', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return 1
",
    )
});

/// Settles a pending claim of `owner`: done until the expiry, or abandoned
/// (its lease ends now).
/// KEYS: the key. ARGV: owner, `done` or `abandon`, expiry, TTL (ms).
/// Returns 1 when the claim was that owner's.
static SETTLE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local s = redis.call('HMGET', KEYS[1], 's', 'o')
if s[1] ~= 'pending' or s[2] ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'done' then
  redis.call('HSET', KEYS[1], 's', 'done', 'l', '0', 'e', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('HSET', KEYS[1], 'l', '0')
end
return 1
",
    )
});

/// Keys in Redis.
#[derive(Debug)]
pub struct RedisStore {
    link: Arc<RedisLink>,
}

impl RedisStore {
    /// A store on `link`.
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self { link }
    }

    fn redis_key(&self, key: KeyDigest) -> String {
        self.link.key(&format!("idempotency:{}", key.hex()))
    }

    /// Runs `script` on `key` with `args`.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        key: KeyDigest,
        args: Vec<String>,
    ) -> Result<T, IdempotencyError> {
        let key = self.redis_key(key);
        self.link
            .run(|mut c| async move {
                let mut invocation = script.key(key);
                for arg in args {
                    invocation.arg(arg);
                }
                invocation.invoke_async::<T>(&mut c).await
            })
            .await
            .map_err(IdempotencyError::Redis)
    }
}

fn millis(at: DateTime<Utc>) -> String {
    at.timestamp_millis().to_string()
}

/// Milliseconds from `now` until `at`, at least 1 (a `PEXPIRE` argument).
fn ttl_ms(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    (at - now).num_milliseconds().max(1).to_string()
}

/// Reads the entry a claim found.
fn entry(found: Vec<String>) -> Result<Entry, IdempotencyError> {
    let corrupt = IdempotencyError::Corrupt("an idempotency hash in Redis is unreadable");
    let [state, fingerprint, id, owner, lease_until]: [String; 5] =
        found.try_into().map_err(|_| corrupt)?;
    let corrupt = || IdempotencyError::Corrupt("an idempotency hash in Redis is unreadable");
    let fingerprint = Fingerprint::from_hex(&fingerprint).ok_or_else(corrupt)?;
    let id = Uuid::parse_str(&id).map_err(|_| corrupt())?;
    if state == "done" {
        return Ok(Entry::Done { fingerprint, id });
    }
    let lease_until = lease_until
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(corrupt)?;
    Ok(Entry::Pending {
        claim: Claim {
            owner: Owner::stored(owner),
            fingerprint,
            id,
        },
        lease_until,
    })
}

#[async_trait]
impl IdempotencyStore for RedisStore {
    async fn peek(
        &self,
        key: KeyDigest,
        now: DateTime<Utc>,
    ) -> Result<Option<Entry>, IdempotencyError> {
        let redis_key = self.redis_key(key);
        let found: Vec<Option<String>> = self
            .link
            .run(|mut c| async move {
                redis::cmd("HMGET")
                    .arg(redis_key)
                    .arg(&["e", "s", "f", "id", "o", "l"])
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(IdempotencyError::Redis)?;
        let mut fields = found.into_iter();
        let live = fields
            .next()
            .flatten()
            .and_then(|e| e.parse::<i64>().ok())
            .is_some_and(|e| e > now.timestamp_millis());
        if !live {
            return Ok(None);
        }
        let rest: Option<Vec<String>> = fields.collect();
        let rest = rest.ok_or(IdempotencyError::Corrupt(
            "an idempotency hash in Redis is unreadable",
        ))?;
        entry(rest).map(Some)
    }

    async fn claim(
        &self,
        key: KeyDigest,
        claim: &Claim,
        times: Times,
    ) -> Result<Option<Entry>, IdempotencyError> {
        let args = vec![
            millis(times.now),
            claim.fingerprint.hex(),
            claim.id.hyphenated().to_string(),
            claim.owner.as_str().to_owned(),
            millis(times.lease_until),
            millis(times.expires_at),
            ttl_ms(times.now, times.expires_at),
        ];
        let found: Option<Vec<String>> = self.run(&CLAIM, key, args).await?;
        found.map(entry).transpose()
    }

    async fn take_over(
        &self,
        key: KeyDigest,
        stale: &Owner,
        claim: &Claim,
        times: Times,
    ) -> Result<bool, IdempotencyError> {
        let args = vec![
            millis(times.now),
            stale.as_str().to_owned(),
            claim.fingerprint.hex(),
            claim.id.hyphenated().to_string(),
            claim.owner.as_str().to_owned(),
            millis(times.lease_until),
            millis(times.expires_at),
            ttl_ms(times.now, times.expires_at),
        ];
        let replaced: i64 = self.run(&TAKE_OVER, key, args).await?;
        Ok(replaced == 1)
    }

    async fn complete(
        &self,
        key: KeyDigest,
        owner: &Owner,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, IdempotencyError> {
        let args = vec![
            owner.as_str().to_owned(),
            "done".to_owned(),
            millis(expires_at),
            ttl_ms(now, expires_at),
        ];
        let settled: i64 = self.run(&SETTLE, key, args).await?;
        Ok(settled == 1)
    }

    async fn abandon(&self, key: KeyDigest, owner: &Owner) -> Result<bool, IdempotencyError> {
        let args = vec![
            owner.as_str().to_owned(),
            "abandon".to_owned(),
            String::new(),
            String::new(),
        ];
        let settled: i64 = self.run(&SETTLE, key, args).await?;
        Ok(settled == 1)
    }
}
