//! Tickets in Redis, shared by every instance of a deployment.
//!
//! Keys (all under the configured prefix, all with a TTL):
//! - `ticket:<digest>`: the ticket, JSON; set with `SET NX PX`, redeemed with `GETDEL`.
//! - `{tickets}`: every outstanding ticket's digest, scored by its expiry
//!   (Unix ms), for the total cap and the sweeper.
//! - `{tickets}:subject:<sub>`: the same for one subject, for its cap.
//!
//! A ticket's digest is the SHA-256 of its id, in hex: whoever reads Redis
//! (`SCAN`, `MONITOR`, a dump) learns no redeemable ticket. Ids carry 122
//! random bits, so an unkeyed hash cannot be reversed by guessing.
//!
//! The two sorted sets share the hash tag `{tickets}`, so the one script that
//! checks both caps and reserves a place touches a single Redis Cluster slot;
//! ticket keys spread over the cluster. On one Redis an issue is one round
//! trip: the script and the ticket's `SET` go in one pipeline (on a cluster,
//! one after the other, as they live on different slots). The script prunes
//! expired places from a set only when the set is at its cap, where they
//! could change the answer; below it, an issue costs no `ZREMRANGEBYSCORE`.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Grant, IssueError, RedeemError, StoreLimits, Ticket, TicketId, TicketStore};
use crate::auth::{Subject, TopicPattern};
use crate::redis_link::{RedisFailure, RedisLink};

/// Checks both caps and reserves a place, atomically. A set is pruned of
/// expired places only when it is at its cap: below it, they cannot change
/// the answer, and most issues skip the `ZREMRANGEBYSCORE`.
/// KEYS: all tickets, the subject's tickets.
/// ARGV: now (ms), expiry (ms), id, per-subject cap, total cap, TTL (ms).
/// Returns `{0, _}` when reserved, `{1, oldest expiry}` when the subject is
/// at its cap, `{2, _}` when the store is.
static RESERVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local now = tonumber(ARGV[1])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {1, oldest[2]}
  end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then
    return {2, '0'}
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {0, '0'}
",
    )
});

/// Forgets every ticket of a subject; returns their ids.
/// KEYS: all tickets, the subject's tickets.
static FORGET_SUBJECT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
end
redis.call('DEL', KEYS[2])
return ids
",
    )
});

/// A ticket as stored in Redis.
#[derive(Serialize, Deserialize)]
struct Stored {
    sub: Subject,
    topics: Vec<TopicPattern>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    bearer_exp: DateTime<Utc>,
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
    bearer_iat: Option<DateTime<Utc>>,
    #[serde(default)]
    bearer_jti: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_ip: Option<IpAddr>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    issued_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    expires_at: DateTime<Utc>,
}

/// Tickets in Redis: issued on one instance, redeemable exactly once on any.
#[derive(Debug)]
pub struct RedisStore {
    link: Arc<RedisLink>,
    limits: StoreLimits,
    all: String,
}

impl RedisStore {
    /// A store on `link` with these bounds.
    pub fn new(link: Arc<RedisLink>, limits: StoreLimits) -> Self {
        Self {
            all: link.key("{tickets}"),
            link,
            limits,
        }
    }

    fn ticket_key(&self, id: TicketId) -> String {
        self.digest_key(&digest(id))
    }

    fn digest_key(&self, digest: &str) -> String {
        self.link.key(&format!("ticket:{digest}"))
    }

    fn subject_key(&self, sub: &Subject) -> String {
        format!("{}:subject:{}", self.all, sub.as_str())
    }

    /// One attempt at issuing: the answer, or why Redis gave none.
    async fn try_issue(
        &self,
        ticket: &Ticket,
        now: DateTime<Utc>,
    ) -> Result<Result<Ticket, IssueError>, RedisFailure> {
        let stored = match serde_json::to_string(&Stored {
            sub: ticket.sub().clone(),
            topics: ticket.topics().to_vec(),
            bearer_exp: ticket.bearer_exp(),
            bearer_iat: ticket.bearer_iat(),
            bearer_jti: ticket.bearer_jti().map(Into::into),
            client_ip: ticket.client_ip(),
            issued_at: ticket.issued_at(),
            expires_at: ticket.expires_at(),
        }) {
            Ok(stored) => stored,
            Err(e) => return Ok(Err(IssueError::Unavailable(e.to_string()))),
        };
        let ticket_key = self.ticket_key(ticket.id());
        let subject_key = self.subject_key(ticket.sub());
        let mut reserve = RESERVE.key(&self.all);
        reserve
            .key(&subject_key)
            .arg(millis(now))
            .arg(millis(ticket.expires_at()))
            .arg(digest(ticket.id()))
            .arg(self.limits.per_subject)
            .arg(self.limits.total)
            .arg(self.ttl_ms());
        let mut pipe = redis::pipe();
        pipe.invoke_script(&reserve)
            .cmd("SET")
            .arg(&ticket_key)
            .arg(stored)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms());
        let ((verdict, oldest), set): ((i64, String), Option<String>) = self
            .link
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let refusal = match verdict {
            0 if set.is_some() => return Ok(Ok(ticket.clone())),
            // A UUID v4 collision: in practice never.
            0 => IssueError::Unavailable("ticket id collision; retry".into()),
            1 => {
                let oldest = oldest
                    .parse::<f64>()
                    .ok()
                    .and_then(|ms| DateTime::from_timestamp_millis(ms as i64))
                    .unwrap_or(now);
                IssueError::TooMany {
                    retry_after: (oldest - now).to_std().unwrap_or_default(),
                }
            }
            _ => IssueError::Full,
        };
        // Refused: the ticket written beside the check goes again (nobody
        // has seen its id), and so does a place reserved for it. Should this
        // fail, their TTLs remove them.
        let id = digest(ticket.id());
        let (written, reserved) = (set.is_some(), verdict == 0);
        if !(written || reserved) {
            return Ok(Err(refusal));
        }
        let _ = self
            .link
            .run(|mut c| async move {
                let mut undo = redis::pipe();
                // Not a key this attempt did not write (an id collision).
                if written {
                    undo.del(&ticket_key).ignore();
                }
                if reserved {
                    undo.zrem(&self.all, &id)
                        .ignore()
                        .zrem(&subject_key, &id)
                        .ignore();
                }
                undo.query_async::<()>(&mut c).await
            })
            .await;
        Ok(Err(refusal))
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.limits.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// What Redis knows a ticket by: the SHA-256 of its id, in hex.
fn digest(id: TicketId) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

#[async_trait]
impl TicketStore for RedisStore {
    async fn issue(&self, grant: Grant, now: DateTime<Utc>) -> Result<Ticket, IssueError> {
        let ticket = Ticket::new(grant, now, self.limits.ttl);
        match self.try_issue(&ticket, now).await {
            // Redis forgets its scripts when it restarts: load it, drop what
            // the attempt's SET wrote, and try again under a new id.
            Err(failure) if failure.is_unknown_script() => {
                let written = self.ticket_key(ticket.id());
                self.link
                    .run(|mut c| async move {
                        redis::pipe()
                            .load_script(&RESERVE)
                            .ignore()
                            .del(written)
                            .ignore()
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await
                    .map_err(|e| IssueError::Unavailable(e.to_string()))?;
                self.try_issue(&ticket.with_fresh_id(), now).await
            }
            other => other,
        }
        .map_err(|e| IssueError::Unavailable(e.to_string()))?
    }

    async fn redeem(&self, id: TicketId, now: DateTime<Utc>) -> Result<Ticket, RedeemError> {
        let member = digest(id);
        let key = self.digest_key(&member);
        let taken = member.clone();
        let (stored, _): (Option<String>, i64) = self
            .link
            .run(|mut c| async move {
                redis::pipe()
                    .cmd("GETDEL")
                    .arg(&key)
                    .zrem(&self.all, &taken)
                    .query_async(&mut c)
                    .await
            })
            .await
            .map_err(|e| RedeemError::Unavailable(e.to_string()))?;
        let stored: Stored = stored
            .and_then(|raw| serde_json::from_str(&raw).ok())
            .ok_or(RedeemError::Unknown)?;
        // The subject's place; if this fails, expiry frees it.
        let subject_key = self.subject_key(&stored.sub);
        let _ = self
            .link
            .run(|mut c| async move { c.zrem::<_, _, i64>(subject_key, member).await })
            .await;
        let grant = Grant {
            sub: stored.sub,
            topics: stored.topics,
            bearer_exp: stored.bearer_exp,
            bearer_iat: stored.bearer_iat,
            bearer_jti: stored.bearer_jti,
            client_ip: stored.client_ip,
        };
        let ticket = Ticket::restore(id, grant, stored.issued_at, stored.expires_at);
        if ticket.is_expired(now) {
            return Err(RedeemError::Expired);
        }
        Ok(ticket)
    }

    async fn revoke_subject(&self, sub: &Subject) -> usize {
        let subject_key = self.subject_key(sub);
        let forgotten = self
            .link
            .run(|mut c| async move {
                FORGET_SUBJECT
                    .key(&self.all)
                    .key(subject_key)
                    .invoke_async::<Vec<String>>(&mut c)
                    .await
            })
            .await;
        let ids = match forgotten {
            Ok(ids) if ids.is_empty() => return 0,
            Ok(ids) => ids,
            Err(error) => {
                // The revocation time still refuses them at redemption.
                tracing::warn!(%error, "cannot drop the subject's tickets in Redis");
                return 0;
            }
        };
        let mut unlink = redis::pipe();
        for digest in &ids {
            unlink.unlink(self.digest_key(digest));
        }
        self.link
            .run(|mut c| async move { unlink.query_async::<Vec<usize>>(&mut c).await })
            .await
            .map_or(0, |removed| removed.into_iter().sum())
    }

    async fn sweep_expired(&self, now: DateTime<Utc>) -> usize {
        self.link
            .run(|mut c| async move {
                c.zrembyscore::<_, _, _, usize>(&self.all, "-inf", millis(now))
                    .await
            })
            .await
            .unwrap_or(0)
    }

    async fn next_expiry(&self) -> Option<DateTime<Utc>> {
        let first: Vec<(String, f64)> = self
            .link
            .run(|mut c| async move { c.zrange_withscores(&self.all, 0, 0).await })
            .await
            .ok()?;
        first
            .first()
            .and_then(|(_, ms)| DateTime::from_timestamp_millis(*ms as i64))
    }

    async fn outstanding(&self) -> usize {
        self.link
            .run(|mut c| async move { c.zcard::<_, usize>(&self.all).await })
            .await
            .unwrap_or(0)
    }

    async fn ping(&self) -> Result<(), RedisFailure> {
        self.link.ping().await
    }
}
