//! Builds the service from a [`Config`] and runs it until told to stop.

mod limits;
mod tasks;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use tokio_util::sync::CancellationToken;

use limits::{set_write_timeout, stream_capacity};
use tasks::{run_pruner, spawn_key_warm_up, spawn_stream_closer};

use crate::audit::AuditLog;
use crate::auth::{KeyError, Verifier};
use crate::broker::{Broker, BrokerError, MemoryBroker, RedisBroker, RedisBrokerParts};
use crate::clock::SharedClock;
use crate::config::{Config, TlsSetting};
use crate::db::{BatchWriter, Batching, Database, DbError, StoredEvent};
use crate::dev::DevTokens;
use crate::fleet::Fleet;
use crate::http;
use crate::hub::{Hub, StreamSettings};
use crate::metrics::Metrics;
use crate::redis_link::{RedisLink, RedisLinkError};
use crate::revocation::StreamRegistry;
use crate::ticket::{MemoryStore, RedisStore, TicketStore, run_sweeper};
use crate::tls::{CertResolver, TlsError, TlsFiles};

/// The `retry:` every stream starts with: how long a browser waits before
/// reconnecting on its own.
pub const STREAM_RETRY: Duration = Duration::from_secs(3);
/// How long a graceful shutdown waits for requests in flight.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;
/// Events waiting to be stored, beyond which `/publish` waits.
const HISTORY_QUEUE: usize = 4096;

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configured key cannot be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The development tokens cannot be signed.
    #[error(transparent)]
    DevTokens(#[from] crate::auth::MintError),
    /// The database cannot be opened or migrated.
    #[error(transparent)]
    Database(#[from] DbError),
    /// Redis cannot be used.
    #[error(transparent)]
    Redis(#[from] RedisLinkError),
    /// The broker cannot subscribe.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Two namespaces name one prefix.
    #[error(transparent)]
    Namespaces(#[from] crate::namespace::NamespaceError),
    /// The outbox cannot be configured.
    #[error(transparent)]
    Outbox(#[from] crate::outbox::OutboxError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A started service: listening, with its background tasks running.
pub struct Server {
    addr: SocketAddr,
    server: actix_web::dev::Server,
    stopper: Stopper,
    hub: web::Data<Hub>,
    tls: Option<TlsFiles>,
}

/// Stops a running [`Server`] gracefully: streams get `event: close` with
/// `"reason": "shutdown"`, then the listener closes.
#[derive(Clone)]
pub struct Stopper {
    shutdown: CancellationToken,
    handle: actix_web::dev::ServerHandle,
}

impl Stopper {
    /// Closes every stream, stops accepting, and waits (at most a few seconds)
    /// for requests in flight.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.handle.stop(true).await;
    }
}

impl Server {
    /// Builds and binds the service; it serves once [`Server::run`] is awaited.
    pub async fn build(config: Config, clock: SharedClock) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let verifier = Verifier::new(
            &config.keys,
            config.verifier.clone(),
            clock.clone(),
            metrics.clone(),
        )?;
        // Before anything else is opened: a bad certificate stops start-up at once.
        let tls = match &config.tls {
            None => None,
            Some(TlsSetting::Files(files)) => Some(Arc::new(CertResolver::new(files.clone())?)),
            Some(TlsSetting::DevSelfSigned(dir)) => Some(Arc::new(CertResolver::new(
                crate::tls::dev_certificate(dir)?,
            )?)),
        };
        let namespaces = Arc::new(config.namespace_policies()?);
        let shutdown = CancellationToken::new();
        let db = Database::open(&config.database_url).await?;
        let (tickets, broker, link) = backends(
            &config,
            namespaces.any_history(),
            &db,
            &clock,
            &metrics,
            &shutdown,
        )
        .await?;
        let idempotency = crate::idempotency::Ledger::new(
            idempotency_store(link.as_ref(), &db),
            clock.clone(),
            config.idempotency_ttl,
        );
        let fleet = Arc::new(Fleet::new(link, clock.clone()));
        tokio::spawn(fleet.clone().run_reporter(shutdown.clone()));

        let idle = crate::clock::span(config.tickets.ttl);
        let expired = metrics.tickets_expired.clone();
        tokio::spawn(run_sweeper(
            tickets.clone(),
            clock.clone(),
            idle,
            shutdown.clone(),
            move |n| {
                expired.inc_by(n as u64);
            },
        ));

        let history = namespaces.any_history().then(|| {
            let writer_db = db.clone();
            let (writer, _task) = BatchWriter::spawn(
                HISTORY_QUEUE,
                Batching::AT_ONCE,
                move |events: Vec<StoredEvent>| {
                    let db = writer_db.clone();
                    async move { db.insert_events(&events).await }
                },
            );
            writer
        });
        tokio::spawn(run_pruner(
            db.clone(),
            namespaces.clone(),
            config.retention.audit_ttl,
            clock.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));

        let revocations = crate::hub::load_revocations(&db, clock.now()).await?;
        metrics
            .jti_revocations
            .set(i64::try_from(revocations.jti_count()).unwrap_or(i64::MAX));
        let streams_by_subject = StreamRegistry::new(stream_capacity(config.streams.total));
        metrics
            .streams_max
            .set(i64::try_from(streams_by_subject.capacity()).unwrap_or(i64::MAX));
        let audit = AuditLog::spawn(db.clone(), metrics.clone(), clock.clone());
        let dev_tokens = match (&config.keys, config.dev) {
            (crate::auth::KeySource::Secret(secret), true) => {
                Some(DevTokens::mint(secret, clock.now())?)
            }
            _ => None,
        };
        let outbox = config
            .outbox
            .as_ref()
            .map(|settings| crate::outbox::Outbox::new(settings, metrics.outbox.clone()))
            .transpose()?;
        let hub = web::Data::new(Hub {
            verifier,
            tickets,
            broker,
            clock,
            metrics,
            streams: StreamSettings {
                heartbeat: config.heartbeat,
                retry: STREAM_RETRY,
                write_timeout: config.streams.write_timeout,
            },
            audit,
            revocations,
            streams_by_subject,
            jti_revocation_ttl: config.jti_revocation_ttl,
            dev_tokens,
            db,
            history,
            trusted_proxies: config.trusted_proxies.clone(),
            ip_binding: config.bind_ticket_to_ip,
            fleet,
            namespaces,
            outbox: outbox.as_ref().map(crate::outbox::Outbox::probe),
            idempotency,
        });
        if let Some(outbox) = outbox {
            tokio::spawn(outbox.run(hub.clone().into_inner(), shutdown.clone()));
        }
        spawn_key_warm_up(hub.clone(), shutdown.clone());
        spawn_stream_closer(hub.clone(), shutdown.clone());
        if let Some(notices) = hub.broker.notices() {
            tokio::spawn(crate::hub::apply_notices(
                hub.clone().into_inner(),
                notices,
                shutdown.clone(),
            ));
        }
        tokio::spawn(crate::hub::reload_periodically(
            hub.clone().into_inner(),
            shutdown.clone(),
        ));

        let listener = TcpListener::bind(&config.bind).map_err(|source| StartError::Bind {
            addr: config.bind.clone(),
            source,
        })?;
        set_write_timeout(&listener, config.streams.write_timeout).map_err(|source| {
            StartError::Bind {
                addr: config.bind.clone(),
                source,
            }
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.bind.clone(),
            source,
        })?;
        let origins = config.cors_origins.clone();
        let credentials = config.keys.forwards_cookies();
        let flush_hub = hub.clone();
        let request_timeout = web::Data::new(http::RequestTimeout(config.request_timeout));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(hub.clone())
                .app_data(request_timeout.clone())
                .app_data(web::PayloadConfig::new(http::MAX_BODY))
                .configure(http::configure(&origins, credentials))
                .wrap(from_fn(http::body_deadline))
                .wrap(from_fn(http::access_log))
        })
        // The head must arrive within the request timeout (408, answered by
        // the patched actix-http); the body within as long again after it.
        .client_request_timeout(config.request_timeout)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS);
        let server = match &tls {
            None => server.listen(listener),
            Some(resolver) => {
                tokio::spawn(crate::tls::reload_on_sighup(
                    resolver.clone(),
                    shutdown.clone(),
                ));
                server.listen_rustls_0_23(listener, resolver.clone().server_config()?)
            }
        }
        .map_err(|source| StartError::Bind {
            addr: config.bind.clone(),
            source,
        })?
        .run();
        let stopper = Stopper {
            shutdown,
            handle: server.handle(),
        };
        let tls = tls.map(|resolver| resolver.files().clone());
        tracing::info!(%addr, tls = tls.is_some(), "listening");
        Ok(Self {
            addr,
            server,
            stopper,
            hub: flush_hub,
            tls,
        })
    }

    /// The tokens of `serve --dev` (the demo page serves them too).
    pub fn dev_tokens(&self) -> Option<&DevTokens> {
        self.hub.dev_tokens()
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The certificate and key files, when it serves TLS.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// `https` when it serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// A handle that stops the server.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Serves until stopped.
    pub async fn run(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.stopper.shutdown.cancel();
        // Nothing accepted before the stop is lost.
        self.hub.flush().await;
        result
    }
}

/// Where `Idempotency-Key`s are kept: in Redis when configured, else in the
/// database.
fn idempotency_store(
    link: Option<&Arc<RedisLink>>,
    db: &Database,
) -> Arc<dyn crate::idempotency::IdempotencyStore> {
    match link {
        Some(link) => Arc::new(crate::idempotency::RedisStore::new(link.clone())),
        None => Arc::new(crate::idempotency::DatabaseStore::new(db.clone())),
    }
}

/// The ticket store, the broker and the Redis link: in memory (no link), or
/// in Redis when configured.
async fn backends(
    config: &Config,
    keeps_history: bool,
    db: &Database,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<
    (
        Arc<dyn TicketStore>,
        Arc<dyn Broker>,
        Option<Arc<RedisLink>>,
    ),
    StartError,
> {
    use secrecy::ExposeSecret as _;
    let Some(redis) = &config.redis else {
        return Ok((
            Arc::new(MemoryStore::new(config.tickets)),
            Arc::new(MemoryBroker::new()),
            None,
        ));
    };
    let link = RedisLink::connect(redis.url.expose_secret(), &redis.prefix, redis.cluster).await?;
    let broker = RedisBroker::start(RedisBrokerParts {
        link: link.clone(),
        history: keeps_history.then(|| db.clone()),
        clock: clock.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    })
    .await?;
    tokio::spawn(link.clone().run_prober(shutdown.clone()));
    tracing::info!(prefix = %redis.prefix, "tickets and fan-out go through Redis");
    Ok((
        Arc::new(RedisStore::new(link.clone(), config.tickets)),
        Arc::new(broker),
        Some(link),
    ))
}
