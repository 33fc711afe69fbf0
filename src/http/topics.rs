//! `GET /admin/topics`: open streams per subscribed pattern across the
//! instances sharing the Redis, for bearers with `sse.admin`.

use actix_web::HttpResponse;
use actix_web::web::{Data, Query};
use serde::Deserialize;
use serde_json::json;

use super::bearer::Admin;
use super::error::ApiError;
use crate::auth::{MAX_TOPIC_LEN, TopicPrefix};
use crate::hub::Hub;

#[derive(Debug, Deserialize)]
pub(crate) struct TopicsParams {
    prefix: Option<String>,
}

pub(crate) async fn streams(
    hub: Data<Hub>,
    Admin(_): Admin,
    params: Result<Query<TopicsParams>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let params = params
        .map_err(|_| ApiError::InvalidQuery("the query string cannot be read".into()))?
        .into_inner();
    let prefix = params
        .prefix
        .map(|raw| TopicPrefix::parse(&raw))
        .transpose()
        .map_err(|_| {
            ApiError::InvalidQuery(format!(
                "prefix must be at most {MAX_TOPIC_LEN} characters of A-Z a-z 0-9 . _ ~ : @ - and '/'"
            ))
        })?;
    let topics = hub.streams_by_pattern(prefix.as_ref()).await?;
    Ok(HttpResponse::Ok().json(json!({ "topics": topics })))
}
