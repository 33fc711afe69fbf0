//! `POST /publish`: send an event to a topic.

use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::bearer::Bearer;
use super::body::{self, string_not_null};
use super::error::ApiError;
use crate::hub::{Hub, Publication, PublicationError, Publisher};
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
        // Checked in this order: the topic, the event type, then the data.
        let has_data = self.data.is_some();
        let data = self.data.unwrap_or_default();
        let publication =
            Publication::parse(&self.topic, self.event.as_deref(), data).map_err(|e| match e {
                PublicationError::Topic { .. } => ApiError::InvalidTopic(e.to_string()),
                PublicationError::EventType(_) => ApiError::InvalidBody(e.to_string()),
            })?;
        if !has_data {
            return Err(ApiError::InvalidBody("the body has no data field".into()));
        }
        Ok(publication)
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
