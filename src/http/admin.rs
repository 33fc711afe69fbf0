//! `/admin`: revocations and the audit trail, for bearers with `sse.admin`.

use actix_web::HttpResponse;
use actix_web::web::{Bytes, Data, Path, Query};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::json;

use super::bearer::{Admin, ClientInfo};
use super::body;
use super::error::ApiError;
use crate::auth::Subject;
use crate::db::AuditQuery;
use crate::hub::Hub;

/// Rows `GET /admin/audit` returns unless told otherwise, and at most.
const DEFAULT_AUDIT_LIMIT: u32 = 100;
const MAX_AUDIT_LIMIT: u32 = 1000;

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    sub: String,
}

pub(crate) async fn revoke(
    hub: Data<Hub>,
    Admin(admin): Admin,
    ClientInfo(client): ClientInfo,
    raw: Result<Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let request: RevokeRequest = body::json(raw)?.ok_or_else(|| {
        ApiError::InvalidBody(r#"the body must be JSON {"sub": "<subject>"}"#.into())
    })?;
    let sub =
        Subject::parse(&request.sub).map_err(|e| ApiError::InvalidBody(format!("sub: {e}")))?;
    let revoked_at = hub.revoke(&admin, sub.clone(), &client).await?;
    Ok(HttpResponse::Ok().json(json!({ "sub": sub, "revoked_at": timestamp(revoked_at) })))
}

pub(crate) async fn revocations(hub: Data<Hub>, Admin(_): Admin) -> Result<HttpResponse, ApiError> {
    let list: Vec<_> = hub
        .list_revocations()
        .await?
        .into_iter()
        .map(|r| json!({ "sub": r.sub, "revoked_at": timestamp(r.revoked_at) }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "revocations": list })))
}

pub(crate) async fn lift(
    hub: Data<Hub>,
    Admin(admin): Admin,
    ClientInfo(client): ClientInfo,
    sub: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sub = Subject::parse(&sub).map_err(|_| ApiError::NotFound)?;
    if hub.lift_revocation(&admin, sub.clone(), &client).await? {
        Ok(HttpResponse::Ok().json(json!({ "sub": sub, "lifted": true })))
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditParams {
    sub: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

pub(crate) async fn audit(
    hub: Data<Hub>,
    Admin(_): Admin,
    params: Result<Query<AuditParams>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let params = params
        .map_err(|_| ApiError::InvalidQuery("the query string cannot be read".into()))?
        .into_inner();
    let query = AuditQuery {
        sub: params
            .sub
            .map(|s| Subject::parse(&s).map(|s| s.to_string()))
            .transpose()
            .map_err(|e| ApiError::InvalidQuery(format!("sub: {e}")))?,
        since: params
            .since
            .map(|s| DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)))
            .transpose()
            .map_err(|_| {
                ApiError::InvalidQuery(
                    "since must be an RFC 3339 time, e.g. 2026-11-25T00:00:00Z".into(),
                )
            })?,
        limit: match params.limit {
            None => DEFAULT_AUDIT_LIMIT,
            Some(raw) => raw
                .parse()
                .ok()
                .filter(|n| (1..=MAX_AUDIT_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::InvalidQuery(format!(
                        "limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}"
                    ))
                })?,
        },
    };
    let records: Vec<_> = hub
        .audit_trail(&query)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "at": timestamp(r.at),
                "action": r.action,
                "reason": r.reason,
                "sub": r.sub,
                "client_ip": r.client_ip,
                "user_agent": r.user_agent,
                "topics": r.topics,
                "ticket_fingerprint": r.ticket_fingerprint,
                "count": r.count,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "records": records })))
}
