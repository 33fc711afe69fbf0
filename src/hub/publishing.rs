//! Publishing: an event accepted, stored for replay, then fanned out.

use std::sync::Arc;

use bytestring::ByteString;
use uuid::Uuid;

use crate::auth::{Claims, Topic, TopicError};
use crate::broker::{BrokerError, Event, EventType, EventTypeError};
use crate::db::BatchError;
use crate::idempotency::IdempotencyError;

use super::Hub;

/// An event a publisher sends, its parts parsed.
#[derive(Debug)]
pub struct Publication {
    /// Where it goes.
    pub topic: Topic,
    /// Its type (`message` when the publisher named none).
    pub kind: EventType,
    /// Its data, any JSON value.
    pub data: serde_json::Value,
}

/// Why a publisher's topic or event type was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    /// The topic is not a topic.
    #[error("{raw:?} is not a topic: {source}")]
    Topic {
        /// The topic as the publisher sent it.
        raw: String,
        /// What is wrong with it.
        source: TopicError,
    },
    /// The event type is malformed or reserved.
    #[error(transparent)]
    EventType(#[from] EventTypeError),
}

impl Publication {
    /// Parses a publisher's topic, event type (`None`: `message`) and data:
    /// the one parse `POST /publish` and the outbox share.
    pub fn parse(
        topic: &str,
        event: Option<&str>,
        data: serde_json::Value,
    ) -> Result<Self, PublicationError> {
        let topic = Topic::parse(topic).map_err(|source| PublicationError::Topic {
            raw: topic.to_owned(),
            source,
        })?;
        let kind = match event {
            None => EventType::message(),
            Some(raw) => EventType::parse(raw)?,
        };
        Ok(Self { topic, kind, data })
    }
}

/// Who publishes: a bearer through `POST /publish`, or the outbox.
#[derive(Debug, Clone, Copy)]
pub enum Publisher<'a> {
    /// A bearer whose `sse.publish` must cover the topic, in a namespace
    /// that accepts `/publish`.
    Bearer(&'a Claims),
    /// The app's outbox consumer: trusted like the app's own database,
    /// allowed where `publish = false`, and holding the row's topic lock in
    /// that database while it publishes (so an idempotency claim still
    /// pending is a dead instance's, taken over at once).
    Outbox,
}

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The data is larger than the topic's namespace allows serialized.
    #[error("data is {size} bytes serialized; the limit for this topic is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The topic's limit.
        limit: usize,
    },
    /// The token may not publish to the topic.
    #[error("the token may not publish to {0:?}")]
    Forbidden(String),
    /// The topic's namespace takes events only from the outbox.
    #[error("{0:?} is in a namespace with publish = false: only the outbox publishes there")]
    NamespaceClosed(String),
    /// The broker cannot take it: refused before anything was stored, or
    /// (Redis lost between the check and the publish) after the history
    /// stored it, where a resume may still deliver it.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The history could not store it (nobody received it).
    #[error("the event could not be stored")]
    History(#[source] BatchError),
    /// The `Idempotency-Key` was used for another publish.
    #[error(
        "this Idempotency-Key was already used with another body; send a new key for a new event"
    )]
    KeyReused,
    /// Another request is still publishing this `Idempotency-Key`.
    #[error("a request with this Idempotency-Key is still being published")]
    KeyInProgress {
        /// When it should be settled.
        retry_after: std::time::Duration,
    },
    /// The `Idempotency-Key` store did not answer.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
}

/// An event checked for its publisher, ready to go out under an id.
#[derive(Debug)]
pub(super) struct Checked {
    topic: Topic,
    kind: EventType,
    data: String,
    /// Whether its topic keeps history.
    pub(super) keeps_history: bool,
}

impl Hub {
    /// Publishes an event for a bearer allowed to; returns its id.
    pub async fn publish(
        &self,
        claims: &Claims,
        publication: Publication,
    ) -> Result<Uuid, PublishError> {
        self.publish_as(Publisher::Bearer(claims), publication)
            .await
    }

    /// Publishes an event for `publisher` once it is allowed to: checked,
    /// stored for replay (when the topic keeps history), then fanned out.
    #[tracing::instrument(skip_all, fields(topic = %publication.topic.as_str()))]
    pub async fn publish_as(
        &self,
        publisher: Publisher<'_>,
        publication: Publication,
    ) -> Result<Uuid, PublishError> {
        let checked = self.check(publisher, publication)?;
        let id = Uuid::now_v7();
        self.deliver(checked, id).await?;
        Ok(id)
    }

    /// Checks that `publisher` may publish `publication` and that the
    /// broker can take it; nothing is stored or sent yet.
    pub(super) fn check(
        &self,
        publisher: Publisher<'_>,
        publication: Publication,
    ) -> Result<Checked, PublishError> {
        let Publication { topic, kind, data } = publication;
        let (_, policy) = self.namespaces.of(topic.as_str());
        // A `Value` always serializes (its map keys are strings).
        let data = data.to_string();
        if data.len() > policy.max_event_bytes {
            return Err(PublishError::TooLarge {
                size: data.len(),
                limit: policy.max_event_bytes,
            });
        }
        if let Publisher::Bearer(claims) = publisher {
            if !claims.may_publish(&topic) {
                return Err(PublishError::Forbidden(topic.as_str().to_owned()));
            }
            if !policy.publish {
                return Err(PublishError::NamespaceClosed(topic.as_str().to_owned()));
            }
        }
        // Refused before it is stored, so a 503 leaves nothing behind.
        self.broker.ready()?;
        Ok(Checked {
            topic,
            kind,
            data,
            keeps_history: policy.history_max_per_topic > 0 && self.history.is_some(),
        })
    }

    /// Stores a checked event for replay (when its topic keeps history),
    /// then fans it out, under `id`.
    pub(super) async fn deliver(&self, checked: Checked, id: Uuid) -> Result<(), PublishError> {
        let Checked {
            topic,
            kind,
            data,
            keeps_history,
        } = checked;
        let event = Arc::new(Event::new(
            id,
            topic,
            kind.as_str(),
            ByteString::from(data),
            self.clock.now(),
        ));
        // Stored before anyone receives it, so a client that saw it can resume after it.
        if let (Some(history), true) = (&self.history, keeps_history) {
            history
                .write(event.to_stored())
                .await
                .map_err(PublishError::History)?;
        }
        let fanout = self.broker.publish(event).await?;
        self.metrics.events_published.inc();
        self.metrics.record_fanout(fanout);
        tracing::debug!(%id, delivered = fanout.delivered, "event published");
        Ok(())
    }
}
