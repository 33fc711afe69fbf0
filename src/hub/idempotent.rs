//! Publishing under an `Idempotency-Key`: a repeat answers the first
//! publish's id instead of publishing again (see [`crate::idempotency`]).

use uuid::Uuid;

use crate::idempotency::{
    Begun, Fingerprint, Holder, IdempotencyError, IdempotencyKey, KeyDigest, Scope,
};

use super::Hub;
use super::publishing::{Publication, PublishError, Publisher};

/// What a publish answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The event's id.
    pub id: Uuid,
    /// Whether this was a repeat of an earlier publish with the same
    /// `Idempotency-Key`, answered with its id (nothing was published).
    pub replayed: bool,
}

impl Hub {
    /// Publishes for `publisher` as [`Hub::publish_as`] does; with a `key`,
    /// at most once per key of the publisher (its `sub`, or the outbox)
    /// within `SSE_TICKET_IDEMPOTENCY_TTL`: a repeat with the same
    /// publication answers the first one's id, with another is
    /// [`PublishError::KeyReused`]. A publish that is refused or fails
    /// leaves the key free for a retry.
    #[tracing::instrument(skip_all, fields(topic = %publication.topic.as_str()))]
    pub async fn publish_idempotent(
        &self,
        publisher: Publisher<'_>,
        key: Option<IdempotencyKey>,
        publication: Publication,
    ) -> Result<Published, PublishError> {
        let key = key.map(|key| {
            key.digest(match publisher {
                Publisher::Bearer(claims) => Scope::Subject(&claims.sub),
                Publisher::Outbox => Scope::Outbox,
            })
        });
        self.publish_keyed(publisher, key, publication).await
    }

    /// [`Hub::publish_idempotent`] under a key digest already made: the
    /// outbox's, for a row's own `idempotency_key` or the row itself.
    pub(crate) async fn publish_keyed(
        &self,
        publisher: Publisher<'_>,
        key: Option<KeyDigest>,
        publication: Publication,
    ) -> Result<Published, PublishError> {
        let Some(key) = key else {
            let id = self.publish_as(publisher, publication).await?;
            return Ok(Published {
                id,
                replayed: false,
            });
        };
        let fingerprint = Fingerprint::of(
            publication.topic.as_str(),
            publication.kind.as_str(),
            &publication.data,
        );
        // Checked before the key is looked at: a refused publish leaves no trace.
        let checked = self.check(publisher, publication)?;
        let keeps_history = checked.keeps_history;
        let held = |id| self.history_holds(id, keeps_history);
        let outcomes = &self.metrics.idempotency;
        let holder = match publisher {
            Publisher::Bearer(_) => Holder::Shared,
            // The consumer holds the row's topic in the app's database.
            Publisher::Outbox => Holder::Exclusive,
        };
        let begun = self
            .idempotency
            .begin(key, fingerprint, held, holder)
            .await?;
        let claimed = match begun {
            Begun::Publish(claimed) => claimed,
            Begun::Replay(id) => {
                outcomes.record("replayed");
                tracing::debug!(%id, "repeated publish answered with the first one's id");
                return Ok(Published { id, replayed: true });
            }
            Begun::Reused => {
                outcomes.record("reused");
                return Err(PublishError::KeyReused);
            }
            Begun::InProgress { retry_after } => {
                outcomes.record("in_progress");
                return Err(PublishError::KeyInProgress { retry_after });
            }
        };
        let id = claimed.id();
        if let Err(error) = self.deliver(checked, id).await {
            // Not remembered: the next request with the key takes over.
            if let Err(cause) = self.idempotency.abandon(&claimed).await {
                tracing::warn!(error = %cause, "cannot release an Idempotency-Key; its lease will");
            }
            return Err(error);
        }
        outcomes.record(if claimed.taken_over() {
            "taken_over"
        } else {
            "first"
        });
        match self.idempotency.finish(&claimed).await {
            Ok(true) => {}
            // It ran past its lease and another request took the key over.
            Ok(false) => tracing::warn!(%id, "a publish outlived its Idempotency-Key lease"),
            // Left pending: a repeat finds the event in the history after the lease.
            Err(error) => tracing::warn!(%error, %id, "cannot mark an Idempotency-Key done"),
        }
        Ok(Published {
            id,
            replayed: false,
        })
    }

    /// Whether the history holds the event `id` (never, for a topic that
    /// keeps none).
    async fn history_holds(&self, id: Uuid, keeps_history: bool) -> Result<bool, IdempotencyError> {
        if !keeps_history {
            return Ok(false);
        }
        self.db
            .holds_event(id)
            .await
            .map_err(IdempotencyError::Database)
    }
}
