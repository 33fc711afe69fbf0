//! `POST /publish`: send an event to a topic.

use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::bearer::Bearer;
use super::body::{self, string_not_null};
use super::error::ApiError;
use crate::auth::Topic;
use crate::broker::EventType;
use crate::hub::{Hub, Publication, Publisher};
use crate::idempotency::IdempotencyKey;

/// The request header naming a publish so that its repeats publish nothing.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header of a repeat answered with the first publish's id.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// Body of `POST /publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    /// The topic to publish to.
    topic: String,
    /// Event type; `message` when absent (`null` is refused: the spec says string).
    #[serde(default, deserialize_with = "string_not_null")]
    event: Option<String>,
    /// Any JSON value; required (it may be `null`).
    #[serde(default, deserialize_with = "present")]
    data: Option<serde_json::Value>,
}

/// Distinguishes `"data": null` (present) from a missing `data`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

impl PublishRequest {
    /// The request's parts, parsed.
    fn publication(self) -> Result<Publication, ApiError> {
        let topic = Topic::parse(&self.topic)
            .map_err(|e| ApiError::InvalidTopic(format!("{:?} is not a topic: {e}", self.topic)))?;
        let kind = match self.event {
            None => EventType::message(),
            Some(raw) => {
                EventType::parse(&raw).map_err(|e| ApiError::InvalidBody(e.to_string()))?
            }
        };
        let data = self
            .data
            .ok_or_else(|| ApiError::InvalidBody("the body has no data field".into()))?;
        Ok(Publication { topic, kind, data })
    }
}

/// The `Idempotency-Key` of `request`, if it has one.
fn idempotency_key(request: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = request.headers().get_all(IDEMPOTENCY_KEY);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidBody(
            "send one Idempotency-Key header, not several".into(),
        ));
    }
    IdempotencyKey::parse(value.as_bytes())
        .map(Some)
        .map_err(|e| ApiError::InvalidBody(e.to_string()))
}

pub(crate) async fn publish(
    hub: Data<Hub>,
    Bearer(claims): Bearer,
    http: HttpRequest,
    raw: Result<Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&http)?;
    let request: PublishRequest = body::json(raw)?.ok_or_else(|| {
        ApiError::InvalidBody(
            r#"the body must be JSON {"topic": ..., "event": ..., "data": ...}"#.into(),
        )
    })?;
    let published = hub
        .publish_idempotent(Publisher::Bearer(&claims), key, request.publication()?)
        .await?;
    let mut response = HttpResponse::Ok();
    if published.replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, "true"));
    }
    Ok(response.json(json!({ "id": published.id })))
}
