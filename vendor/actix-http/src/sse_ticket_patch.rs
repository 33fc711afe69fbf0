//! sse-ticket patch: limits on the request head and the answers and counters
//! of the connection-level refusals (408, 431), which never reach the
//! application. See `PATCHED.md`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use crate::{
    body::BoxBody,
    header::{self, HeaderValue},
    Response, StatusCode,
};

/// Largest request head accepted, in bytes: on HTTP/1.1 the request line and
/// every header line up to the blank line; on HTTP/2 the value advertised as
/// `SETTINGS_MAX_HEADER_LIST_SIZE`. Larger heads are answered `431`.
pub const MAX_REQUEST_HEAD_SIZE: usize = 16 * 1024;

static HEADS_TIMED_OUT: AtomicU64 = AtomicU64::new(0);
static HEADS_TOO_LARGE: AtomicU64 = AtomicU64::new(0);

/// Requests (or HTTP/2 handshakes) answered `408` because their head did not
/// arrive within the client request timeout, since the process started.
pub fn request_heads_timed_out() -> u64 {
    HEADS_TIMED_OUT.load(Ordering::Relaxed)
}

/// HTTP/1 requests answered `431` because their head was larger than
/// [`MAX_REQUEST_HEAD_SIZE`] (or had too many headers), since the process started.
pub fn request_heads_too_large() -> u64 {
    HEADS_TOO_LARGE.load(Ordering::Relaxed)
}

pub(crate) fn count_head_timed_out() {
    HEADS_TIMED_OUT.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_head_too_large() {
    HEADS_TOO_LARGE.fetch_add(1, Ordering::Relaxed);
}

/// The body of an error the dispatcher answers by itself: for `408` and
/// `431`, sse-ticket's JSON error shape (its `Content-Type` and
/// `Cache-Control` are set on `res`); for anything else, none, as upstream.
pub(crate) fn error_body(res: &mut Response<()>) -> BoxBody {
    let body: &'static [u8] = match res.status() {
        StatusCode::REQUEST_TIMEOUT => {
            br#"{"error":"request_timeout","message":"the request's headers or body took too long to arrive"}"#
        }
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            br#"{"error":"headers_too_large","message":"the request's headers are larger than 16384 bytes"}"#
        }
        _ => return BoxBody::new(()),
    };
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    BoxBody::new(Bytes::from_static(body))
}

/// Put in a response's extensions: over HTTP/2, a stream whose client grants
/// no flow-control window (takes no bytes) for this long while its body has
/// bytes to send is reset (`RST_STREAM`, `CANCEL`) and its body dropped. The
/// connection and its other streams carry on. (A connection that takes no
/// bytes at all is the kernel's to drop: `TCP_USER_TIMEOUT`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamWriteTimeout(pub Duration);
