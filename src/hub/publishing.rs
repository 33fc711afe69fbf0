//! Publishing: an event accepted, stored for replay, then fanned out.

use std::sync::Arc;

use bytestring::ByteString;
use uuid::Uuid;

use crate::auth::{Claims, Topic};
use crate::broker::{BrokerError, Event, EventType, MAX_EVENT_DATA};
use crate::db::BatchError;

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

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The data is larger than [`MAX_EVENT_DATA`] serialized.
    #[error("data is {0} bytes serialized; the limit is {MAX_EVENT_DATA}")]
    TooLarge(usize),
    /// The token may not publish to the topic.
    #[error("the token may not publish to {0:?}")]
    Forbidden(String),
    /// The broker cannot take it: refused before anything was stored, or
    /// (Redis lost between the check and the publish) after the history
    /// stored it, where a resume may still deliver it.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The history could not store it (nobody received it).
    #[error("the event could not be stored")]
    History(#[source] BatchError),
}

impl Hub {
    /// Publishes an event for a bearer allowed to; returns its id.
    #[tracing::instrument(skip_all, fields(sub = %claims.sub, topic = %publication.topic.as_str()))]
    pub async fn publish(
        &self,
        claims: &Claims,
        publication: Publication,
    ) -> Result<Uuid, PublishError> {
        let Publication { topic, kind, data } = publication;
        // A `Value` always serializes (its map keys are strings).
        let data = data.to_string();
        if data.len() > MAX_EVENT_DATA {
            return Err(PublishError::TooLarge(data.len()));
        }
        if !claims.may_publish(&topic) {
            return Err(PublishError::Forbidden(topic.as_str().to_owned()));
        }
        // Refused before it is stored, so a 503 leaves nothing behind.
        self.broker.ready()?;
        let id = Uuid::now_v7();
        let event = Arc::new(Event::new(
            id,
            topic,
            kind.as_str(),
            ByteString::from(data),
            self.clock.now(),
        ));
        // Stored before anyone receives it, so a client that saw it can resume after it.
        if let Some(history) = &self.history {
            history
                .write(event.to_stored())
                .await
                .map_err(PublishError::History)?;
        }
        let fanout = self.broker.publish(event).await?;
        self.metrics.events_published.inc();
        self.metrics.record_fanout(fanout);
        tracing::debug!(%id, delivered = fanout.delivered, "event published");
        Ok(id)
    }
}
