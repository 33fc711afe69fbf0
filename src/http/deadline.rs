//! The request timeout's second half: a body must arrive within
//! `SSE_TICKET_REQUEST_TIMEOUT` of its request's head (actix's
//! `client_request_timeout` bounds the head itself). A body that does not
//! fails the read with `TimedOut`, which `body.rs` answers `408 request_timeout`.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage as _;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, Data};
use futures_util::Stream;
use prometheus_client::metrics::counter::Counter;
use tokio::time::{Instant, Sleep};

use crate::hub::Hub;
use crate::metrics::TimeoutLabels;

/// How long a request's head and then its body may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeout(pub Duration);

/// Bounds the read of the request's body, if it has one: it must be complete
/// within the request timeout, counted from now (the head has arrived).
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let timeout = req.app_data::<Data<RequestTimeout>>().map(|t| t.0);
    if let Some(timeout) = timeout {
        let payload = req.take_payload();
        if matches!(payload, Payload::None) {
            req.set_payload(payload);
        } else {
            let timed_out = req.app_data::<Data<Hub>>().map(|hub| {
                hub.metrics()
                    .requests_timed_out
                    .get_or_create(&TimeoutLabels { phase: "body" })
                    .clone()
            });
            req.set_payload(Payload::Stream {
                payload: Box::pin(Deadline {
                    inner: payload,
                    deadline: Instant::now() + timeout,
                    sleep: None,
                    timed_out,
                    done: false,
                }),
            });
        }
    }
    next.call(req).await
}

/// A body stream that fails with `TimedOut` at its deadline.
struct Deadline {
    inner: Payload,
    deadline: Instant,
    /// Armed on the first poll: a body nobody reads costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Option<Counter>,
    done: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            this.done = item.is_none();
            return Poll::Ready(item);
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.done = true;
        if let Some(counter) = &this.timed_out {
            counter.inc();
        }
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request body did not arrive within the request timeout",
        )))))
    }
}
