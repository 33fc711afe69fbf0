//! The `Authorization: Bearer` extractor: yields verified [`Claims`].

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use super::error::ApiError;
use crate::auth::Claims;
use crate::hub::Hub;

/// The verified claims of the request's bearer token.
#[derive(Debug)]
pub(crate) struct Bearer(pub(crate) Claims);

impl FromRequest for Bearer {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let hub = req.app_data::<web::Data<Hub>>().cloned();
        let token = req.headers().get(header::AUTHORIZATION).map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim().to_owned())
                .filter(|token| !token.is_empty())
        });
        Box::pin(async move {
            let hub =
                hub.ok_or_else(|| ApiError::Unavailable("the hub is not configured".into()))?;
            match token {
                None => Err(ApiError::MissingToken),
                Some(None) => Err(ApiError::InvalidToken(
                    "the Authorization header is not of the form Bearer <token>".into(),
                )),
                Some(Some(token)) => hub.authenticate(&token).await.map(Bearer),
            }
        })
    }
}
