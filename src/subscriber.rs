//! One subscriber's stream, from `ready` to its end: the frames it sends
//! (`ready`, any replay, live events, `: ping` while idle), the events the
//! replay already sent and the subscription may bring again, and why it
//! ends: `event: close` when the bearer token behind the ticket expires, when
//! its subject is revoked, when it falls too far behind, or at shutdown; or
//! silently when the client leaves or stops taking bytes.
//!
//! A client that resumes (`Last-Event-ID` header or `lastEventId` parameter)
//! gets, after `ready`, the retained events it missed (preceded by
//! `event: reset` when some may be lost), then live ones, none twice.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix_web_lab::sse;
use futures_util::future::BoxFuture;
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::time::{Instant, Sleep};

use crate::broker::{Detached, Event, Subscription};
use crate::fleet::CountedStream;
use crate::hub::{Hub, OpenedStream};
use crate::metrics::{CloseLabels, Metrics};
use crate::revocation::{Closed, Closing, Registration};

/// How long after subscribing a replayed event may still arrive live too: a
/// publish stores its event, then fans it out, within this window.
const DEDUPE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Why a stream ended, for the `close` frame and the metrics.
#[derive(Debug, Clone, Copy)]
enum CloseReason {
    TokenExpired,
    Revoked,
    Lagging,
    WriteTimeout,
    Shutdown,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::TokenExpired => "token_expired",
            Self::Revoked => "revoked",
            Self::Lagging => "lagging",
            Self::WriteTimeout => "write_timeout",
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
    Live(Box<Live>),
    Done,
}

struct Live {
    /// Frames to send before live events: `ready`, then any replay.
    pending: VecDeque<sse::Event>,
    /// Replayed events that may still arrive live, to skip them then.
    replayed: HashSet<uuid::Uuid>,
    subscription: Subscription,
    bearer_expired: BoxFuture<'static, ()>,
    /// Fires on revocation of the subject or the token, or at shutdown.
    closed: Closing,
    /// Keeps the stream listed under its subject while it lives.
    _registration: Registration,
    /// Counts the stream under each of its patterns while it lives.
    _counted: CountedStream,
    /// Fires `period` after the last frame sent; re-armed when it finds a
    /// frame was sent since, so sending an event never touches the timer.
    heartbeat: std::pin::Pin<Box<Sleep>>,
    last_sent: Instant,
    period: Duration,
    /// When the HTTP layer last asked for a frame: it stops asking while the
    /// client takes no bytes.
    last_polled: Instant,
    write_timeout: Duration,
    guard: OpenStreamGuard,
}

/// How long frames may wait untaken before a stream counts as stalled.
const STALLED_AFTER: Duration = Duration::from_millis(250);

impl Drop for Live {
    /// A stream dropped without a reason of ours was closed by the client,
    /// or by the kernel because the client took no bytes for the write
    /// timeout (`TCP_USER_TIMEOUT`). It was the latter when frames were
    /// waiting and the HTTP layer had stopped asking for them: it asks
    /// whenever the connection can take more.
    fn drop(&mut self) {
        let idle = self.last_polled.elapsed();
        let stalled = idle >= STALLED_AFTER.min(self.write_timeout)
            && (self.subscription.has_pending() || idle >= self.period + STALLED_AFTER);
        if self.guard.reason.is_none() && stalled {
            self.guard.reason = Some(CloseReason::WriteTimeout);
        }
    }
}

impl Live {
    /// The next frame, or the reason to close.
    async fn next(&mut self) -> Result<sse::Event, CloseReason> {
        self.last_polled = Instant::now();
        if let Some(frame) = self.pending.pop_front() {
            if self.pending.is_empty() {
                // Drained for good: give its room back (~400 bytes per stream).
                self.pending = VecDeque::new();
            }
            return Ok(frame);
        }
        loop {
            if let Some(next) = self.next_live().await {
                return next;
            }
        }
    }

    /// The next live frame; `None` for an event already sent by the replay,
    /// or a heartbeat that found the stream not idle.
    async fn next_live(&mut self) -> Option<Result<sse::Event, CloseReason>> {
        Some(tokio::select! {
            biased;
            why = &mut self.closed => Err(match why {
                Closed::Revoked => CloseReason::Revoked,
                Closed::Shutdown => CloseReason::Shutdown,
            }),
            () = &mut self.bearer_expired => Err(CloseReason::TokenExpired),
            event = self.subscription.recv() => match event {
                Some(event) => {
                    if !self.replayed.is_empty() && self.replayed.remove(&event.id()) {
                        return None;
                    }
                    self.last_sent = Instant::now();
                    Ok(event.frame().into())
                }
                None => Err(match self.subscription.detached() {
                    Some(Detached::Lagging) | None => CloseReason::Lagging,
                }),
            },
            () = &mut self.heartbeat => {
                let now = Instant::now();
                let due = self.last_sent + self.period;
                if due > now {
                    // Not idle: an event went out since the timer was set.
                    self.heartbeat.as_mut().reset(due);
                    return None;
                }
                self.last_sent = now;
                self.heartbeat.as_mut().reset(now + self.period);
                Ok(sse::Event::Comment("ping".into()))
            }
        })
    }
}

/// The frames of the stream `opened`, up to its end.
pub fn frames(hub: &Hub, opened: OpenedStream) -> impl Stream<Item = sse::Event> + use<> {
    let settings = hub.stream_settings();
    let OpenedStream {
        ticket,
        subscription,
        replay,
        subscribed_at,
        registration,
    } = opened;
    let metrics = hub.metrics_handle();
    metrics.streams_open.inc();
    let mut pending = VecDeque::new();
    pending.push_back(
        sse::Data::new(json!({ "sub": ticket.sub(), "topics": ticket.topics() }).to_string())
            .event("ready")
            .into(),
    );
    let mut replayed = HashSet::new();
    if let Some(replay) = replay {
        if replay.gap {
            pending.push_back(
                sse::Data::new(json!({ "reason": "history_gap" }).to_string())
                    .event("reset")
                    .into(),
            );
        }
        for stored in replay.events {
            if stored.published_at >= subscribed_at - DEDUPE_WINDOW {
                replayed.insert(stored.id);
            }
            let id = stored.id;
            match Event::from_stored(stored) {
                Ok(event) => pending.push_back(event.frame().into()),
                Err(reason) => metrics.record_invalid_event(id, "history", &reason),
            }
        }
    }
    let live = Live {
        pending,
        replayed,
        subscription,
        bearer_expired: hub.clock().sleep_until(ticket.bearer_exp()),
        closed: registration.closing(),
        _registration: registration,
        _counted: hub.fleet().open(ticket.topics()),
        heartbeat: Box::pin(tokio::time::sleep(settings.heartbeat)),
        last_sent: Instant::now(),
        period: settings.heartbeat,
        last_polled: Instant::now(),
        write_timeout: settings.write_timeout,
        guard: OpenStreamGuard {
            metrics,
            reason: None,
        },
    };
    stream::unfold(State::Live(Box::new(live)), |state| async move {
        match state {
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
