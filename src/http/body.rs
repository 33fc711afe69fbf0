//! JSON request bodies, whatever `Content-Type` the client sent (curl's `-d`
//! says form-encoded), with size and syntax errors in the contract's terms.

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The outcome of the `Bytes` extractor in the contract's terms: too large,
/// too slow, or unreadable.
pub(crate) fn bytes(body: Result<Bytes, actix_web::Error>) -> Result<Bytes, ApiError> {
    body.map_err(|e| match e.as_error::<PayloadError>() {
        Some(PayloadError::Overflow) => {
            ApiError::PayloadTooLarge(format!("the body is larger than {} bytes", super::MAX_BODY))
        }
        Some(PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            ApiError::RequestTimeout
        }
        _ => ApiError::InvalidBody("the body could not be read".into()),
    })
}

/// What a body holds, by its first byte that is not white space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Nothing but white space.
    Empty,
    /// Something beginning with `{`: a JSON object, or garbage that says it is one.
    Object,
    /// Anything else.
    Other,
}

/// The [`Shape`] of `bytes`.
pub(crate) fn shape(bytes: &[u8]) -> Shape {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Shape::Empty,
        Some(b'{') => Shape::Object,
        Some(_) => Shape::Other,
    }
}

/// Parses a body read by the `Bytes` extractor; `None` for an empty body.
pub(crate) fn json<T: DeserializeOwned>(
    body: Result<Bytes, actix_web::Error>,
) -> Result<Option<T>, ApiError> {
    parse_json(bytes(body)?)
}

/// Parses a body already read; `None` for an empty body.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: Bytes) -> Result<Option<T>, ApiError> {
    match shape(&bytes) {
        Shape::Empty => return Ok(None),
        Shape::Object => {}
        // serde would also build a struct from a JSON array; the contract speaks of objects.
        Shape::Other => {
            return Err(ApiError::InvalidBody(
                "the body must be a JSON object".into(),
            ));
        }
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        ApiError::InvalidBody(format!("the body is not valid JSON for this endpoint: {e}"))
    })
}

/// For a field that may be absent but, when present, is a string: `null` is
/// refused, as the spec says string (`#[serde(default, deserialize_with = …)]`).
pub(crate) fn string_not_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    <String as serde::Deserialize>::deserialize(d).map(Some)
}
