//! `GET /stream?token=<ticket>`: redeem a ticket and stream its topics' events.
//!
//! A stream is `retry:`, then `event: ready`, then events as they are
//! published, with `: ping` while idle. It ends with `event: close` when the
//! bearer token behind the ticket expires, when the stream falls too far
//! behind, or at shutdown; or silently when the client leaves.

use std::sync::Arc;
use std::time::Duration;

use actix_web::Responder;
use actix_web::web::{Data, Query};
use actix_web_lab::sse;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::json;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::error::ApiError;
use crate::broker::{Detached, Subscription};
use crate::hub::{Hub, OpenedStream};
use crate::metrics::{CloseLabels, Metrics};

#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    token: Option<String>,
}

pub(crate) async fn open(
    hub: Data<Hub>,
    query: Result<Query<StreamQuery>, actix_web::Error>,
) -> Result<impl Responder, ApiError> {
    let token = query.ok().and_then(|q| q.into_inner().token);
    let opened = hub.open_stream(token.as_deref()).await?;
    let settings = hub.stream_settings();
    let events = events(&hub, opened, settings.heartbeat);
    Ok(sse::Sse::from_infallible_stream(events)
        .with_retry_duration(settings.retry)
        .customize()
        .insert_header(("X-Accel-Buffering", "no")))
}

/// Why a stream ended, for the `close` frame and the metrics.
#[derive(Debug, Clone, Copy)]
enum CloseReason {
    TokenExpired,
    Lagging,
    Shutdown,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::TokenExpired => "token_expired",
            Self::Lagging => "lagging",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Counts the stream open while it lives and records why it closed.
struct OpenStreamGuard {
    metrics: Arc<Metrics>,
    reason: Option<CloseReason>,
}

impl Drop for OpenStreamGuard {
    fn drop(&mut self) {
        self.metrics.streams_open.dec();
        let reason = self.reason.map_or("client", CloseReason::as_str);
        self.metrics
            .streams_closed
            .get_or_create(&CloseLabels { reason })
            .inc();
    }
}

enum State {
    Ready(Box<Live>, sse::Event),
    Live(Box<Live>),
    Done,
}

struct Live {
    subscription: Subscription,
    bearer_expired: BoxFuture<'static, ()>,
    shutdown: std::pin::Pin<Box<WaitForCancellationFutureOwned>>,
    heartbeat: std::pin::Pin<Box<Sleep>>,
    period: Duration,
    guard: OpenStreamGuard,
}

impl Live {
    /// The next frame, or the reason to close.
    async fn next(&mut self) -> Result<sse::Event, CloseReason> {
        tokio::select! {
            biased;
            () = &mut self.shutdown => Err(CloseReason::Shutdown),
            () = &mut self.bearer_expired => Err(CloseReason::TokenExpired),
            event = self.subscription.recv() => match event {
                Some(event) => {
                    self.heartbeat.as_mut().reset(Instant::now() + self.period);
                    Ok(event.frame().into())
                }
                None => Err(match self.subscription.detached() {
                    Some(Detached::Lagging) | None => CloseReason::Lagging,
                }),
            },
            () = &mut self.heartbeat => {
                self.heartbeat.as_mut().reset(Instant::now() + self.period);
                Ok(sse::Event::Comment("ping".into()))
            }
        }
    }
}

fn events(
    hub: &Hub,
    opened: OpenedStream,
    period: Duration,
) -> impl Stream<Item = sse::Event> + use<> {
    let OpenedStream {
        ticket,
        subscription,
    } = opened;
    let metrics = hub.metrics_handle();
    metrics.streams_open.inc();
    let ready =
        sse::Data::new(json!({ "sub": ticket.sub(), "topics": ticket.topics() }).to_string())
            .event("ready")
            .into();
    let live = Live {
        subscription,
        bearer_expired: hub.clock().sleep_until(ticket.bearer_exp()),
        shutdown: Box::pin(hub.shutdown().clone().cancelled_owned()),
        heartbeat: Box::pin(tokio::time::sleep(period)),
        period,
        guard: OpenStreamGuard {
            metrics,
            reason: None,
        },
    };
    stream::unfold(State::Ready(Box::new(live), ready), |state| async move {
        match state {
            State::Ready(live, ready) => Some((ready, State::Live(live))),
            State::Live(mut live) => match live.next().await {
                Ok(frame) => Some((frame, State::Live(live))),
                Err(reason) => {
                    live.guard.reason = Some(reason);
                    let close = sse::Data::new(json!({ "reason": reason.as_str() }).to_string())
                        .event("close");
                    Some((close.into(), State::Done))
                }
            },
            State::Done => None,
        }
    })
}
