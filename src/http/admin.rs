//! `/admin`: revocations and the audit trail, for bearers with `sse.admin`.

use std::sync::Arc;

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
use crate::hub::{Hub, MAX_JTI_LEN};

/// Rows `GET /admin/audit` returns unless told otherwise, and at most.
const DEFAULT_AUDIT_LIMIT: u32 = 100;
const MAX_AUDIT_LIMIT: u32 = 1000;

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What `POST /admin/revoke` answers when the body names neither or both.
const EXACTLY_ONE: &str = r#"the body must name exactly one of sub and jti: {"sub": "<subject>"} or {"jti": "<token id>", "until": "<RFC 3339, optional>"}"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    #[serde(default, deserialize_with = "body::string_not_null")]
    sub: Option<String>,
    #[serde(default, deserialize_with = "body::string_not_null")]
    jti: Option<String>,
    #[serde(default, deserialize_with = "body::string_not_null")]
    until: Option<String>,
}

/// A `jti` a revocation can name: 1 to [`MAX_JTI_LEN`] bytes.
fn parse_jti(raw: String) -> Option<Arc<str>> {
    (!raw.is_empty() && raw.len() <= MAX_JTI_LEN).then(|| raw.into())
}

pub(crate) async fn revoke(
    hub: Data<Hub>,
    Admin(admin): Admin,
    ClientInfo(client): ClientInfo,
    raw: Result<Bytes, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let request: RevokeRequest =
        body::json(raw)?.ok_or_else(|| ApiError::InvalidBody(EXACTLY_ONE.into()))?;
    match (request.sub, request.jti) {
        (Some(sub), None) => {
            if request.until.is_some() {
                return Err(ApiError::InvalidBody(
                    "until applies to a revocation by jti only; a subject stays revoked until lifted"
                        .into(),
                ));
            }
            let sub =
                Subject::parse(&sub).map_err(|e| ApiError::InvalidBody(format!("sub: {e}")))?;
            let revoked_at = hub.revoke(&admin, sub.clone(), &client).await?;
            Ok(HttpResponse::Ok().json(sub_entry(sub.as_str(), revoked_at)))
        }
        (None, Some(jti)) => {
            let jti = parse_jti(jti).ok_or_else(|| {
                ApiError::InvalidBody(format!("jti must be 1 to {MAX_JTI_LEN} bytes"))
            })?;
            let until = request
                .until
                .map(|raw| DateTime::parse_from_rfc3339(&raw).map(|t| t.with_timezone(&Utc)))
                .transpose()
                .map_err(|_| {
                    ApiError::InvalidBody(
                        "until must be an RFC 3339 time, e.g. 2026-12-31T00:00:00Z".into(),
                    )
                })?;
            let revoked = hub.revoke_jti(&admin, jti.clone(), until, &client).await?;
            Ok(HttpResponse::Ok().json(jti_entry(&jti, revoked.revoked_at, revoked.until)))
        }
        _ => Err(ApiError::InvalidBody(EXACTLY_ONE.into())),
    }
}

fn sub_entry(sub: &str, revoked_at: DateTime<Utc>) -> serde_json::Value {
    json!({ "kind": "sub", "sub": sub, "revoked_at": timestamp(revoked_at) })
}

fn jti_entry(jti: &str, revoked_at: DateTime<Utc>, until: DateTime<Utc>) -> serde_json::Value {
    json!({
        "kind": "jti",
        "jti": jti,
        "until": timestamp(until),
        "revoked_at": timestamp(revoked_at),
    })
}

pub(crate) async fn revocations(hub: Data<Hub>, Admin(_): Admin) -> Result<HttpResponse, ApiError> {
    let subjects = hub.list_revocations().await?;
    let jtis = hub.list_jti_revocations().await?;
    let list: Vec<_> = subjects
        .into_iter()
        .map(|r| sub_entry(&r.sub, r.revoked_at))
        .chain(
            jtis.into_iter()
                .map(|r| jti_entry(&r.jti, r.revoked_at, r.until)),
        )
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
pub(crate) struct LiftJtiParams {
    jti: Option<String>,
}

pub(crate) async fn lift_jti(
    hub: Data<Hub>,
    Admin(admin): Admin,
    ClientInfo(client): ClientInfo,
    params: Result<Query<LiftJtiParams>, actix_web::Error>,
) -> Result<HttpResponse, ApiError> {
    let missing =
        || ApiError::InvalidQuery("name the token: DELETE /admin/revoke?jti=<jti>".into());
    let raw = params
        .map_err(|_| missing())?
        .into_inner()
        .jti
        .ok_or_else(missing)?;
    let jti = parse_jti(raw).ok_or(ApiError::NotFound)?;
    if hub
        .lift_jti_revocation(&admin, jti.clone(), &client)
        .await?
    {
        Ok(HttpResponse::Ok().json(json!({ "jti": jti, "lifted": true })))
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
