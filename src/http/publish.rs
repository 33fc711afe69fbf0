//! `POST /publish`: send an event to a topic.

use actix_web::HttpResponse;
use actix_web::web::{Bytes, Data};
use serde_json::json;

use super::bearer::Bearer;
use super::body;
use super::error::ApiError;
use crate::hub::Hub;

pub(crate) async fn publish(
    hub: Data<Hub>,
    Bearer(claims): Bearer,
    raw: Result<Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let request = body::json(raw)?.ok_or_else(|| {
        ApiError::InvalidBody(
            r#"the body must be JSON {"topic": ..., "event": ..., "data": ...}"#.into(),
        )
    })?;
    let id = hub.publish(&claims, request).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id })))
}
