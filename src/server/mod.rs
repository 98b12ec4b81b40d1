//! The HTTPS admission webhook: axum routes served over rustls by a hyper-util accept loop.
//!
//! Endpoints: `POST /mutate`, `POST /validate`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
//! Bad input gets a 4xx with a message and never takes the server down: bodies are limited in
//! size ([`BODY_LIMIT`]) and in time ([`BODY_TIMEOUT`]), handshakes and headers too. SIGTERM and
//! SIGINT stop accepting and drain the requests in flight.
//!
//! `/validate` runs the policies off the async executor, on the policy workers
//! ([`crate::policy::workers`]), at most [`AppState::evaluations`] at a time, so a slow policy
//! never stalls the accept loop, the probes or `/mutate`.
//!
//! The server is bounded everywhere, and answers at once when full instead of queueing without
//! end: at most [`MAX_CONNECTIONS`] connections (more are closed as they arrive), idle ones
//! closed after [`IDLE_TIMEOUT`] (HTTP/2 peers also pinged), at most [`BODY_BUDGET`] bytes of
//! admission bodies in flight and [`MAX_QUEUED_EVALUATIONS`] reviews waiting for a policy slot
//! (beyond either, 503 with `Retry-After`). `/healthz` and `/readyz` take none of these budgets.

pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::namespaces::NamespaceLabels;
use crate::policy::workers::Workers;
use crate::policy::{Evaluation, Policies, PolicyError, PolicySet, Source, Target};
use crate::scale::{ClusterLookup, ParentLookup};
use mysql_webhook_core::admission::{self, Outcome};
use mysql_webhook_core::consts::{TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use mysql_webhook_core::scope::Labels;
use tls::CertificateStore;

/// Largest AdmissionReview accepted. The API server takes request bodies up to 3 MiB but etcd
/// stores objects of at most 1.5 MiB (its default request limit); a review carries the object
/// and, for an UPDATE, the stored old one, so every review of a write that can succeed fits in
/// 4 MiB with room for metadata. A larger one is refused with 413.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// A body must arrive within this; the API server gives up on the webhook sooner (≤ 30 s).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake, and the request headers, must complete within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long SIGTERM waits for requests in flight before exiting anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Admission bodies being read or answered at once, in bytes (counted by `Content-Length`, or
/// as [`BODY_LIMIT`] when a body doesn't say): what keeps a flood of 4 MiB reviews within the
/// Deployment's 256 MiB limit (a review costs some ten times its size while it is parsed,
/// expanded and diffed; two of the largest at once peaked near 150 MiB in
/// `tests/server.rs`). The API server's reviews are 2–30 KB: hundreds fit.
pub const BODY_BUDGET: usize = 8 << 20;
/// `/validate` reviews waiting for a policy evaluation slot; more are answered 503 at once.
pub const MAX_QUEUED_EVALUATIONS: usize = 64;
/// Connections open at once; more are closed as they are accepted. The API server needs a few
/// (HTTP/2 multiplexes), each costs some 50 KiB (TLS and HTTP buffers).
pub const MAX_CONNECTIONS: usize = 1024;
/// A connection with no request in progress for this long is closed (gracefully).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 pings: a peer that doesn't answer within the timeout is gone.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent HTTP/2 streams per connection.
pub const MAX_STREAMS: u32 = 128;
/// Units of [`BODY_BUDGET`]'s semaphore.
const BUDGET_UNIT: usize = 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    /// Ready once certificates are loaded and policies compiled.
    pub ready: Arc<AtomicBool>,
    pub policies: Arc<Policies>,
    /// Finds the parent of a Scale; `None` without a cluster.
    pub lookup: Option<Arc<dyn ParentLookup>>,
    /// Namespace labels for the policies' scopes; `None` without a cluster (unknown labels).
    pub namespaces: Option<Arc<NamespaceLabels>>,
    /// Bounds the policy evaluations running at once (one per core): more would only queue
    /// for CPU inside the blocking pool.
    pub evaluations: Arc<tokio::sync::Semaphore>,
    /// Reviews waiting for an evaluation slot.
    pub queued_evaluations: Arc<std::sync::atomic::AtomicUsize>,
    /// The threads evaluations run on, one per slot.
    pub workers: Arc<Workers>,
    /// [`BODY_BUDGET`] in units of [`BUDGET_UNIT`] bytes.
    pub body_budget: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// Ready, with no cluster to look Scale parents up in.
    pub fn new(metrics: Arc<Metrics>, policies: Arc<Policies>) -> AppState {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        AppState {
            metrics,
            ready: Arc::new(AtomicBool::new(true)),
            policies,
            lookup: None,
            namespaces: None,
            evaluations: Arc::new(tokio::sync::Semaphore::new(cores)),
            queued_evaluations: Arc::default(),
            workers: Arc::new(Workers::start(cores)),
            body_budget: Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET / BUDGET_UNIT)),
        }
    }

    pub fn with_lookup(self, lookup: Arc<dyn ParentLookup>) -> AppState {
        AppState { lookup: Some(lookup), ..self }
    }

    pub fn with_namespaces(self, namespaces: Arc<NamespaceLabels>) -> AppState {
        AppState { namespaces: Some(namespaces), ..self }
    }
}

/// The routes, without TLS or sockets: tests can call it directly.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", only(post(mutate_handler)))
        .route("/validate", only(post(validate_handler)))
        .route("/healthz", only(get(|| async { "ok\n" })))
        .route("/readyz", only(get(readyz_handler)))
        .route("/metrics", only(get(metrics_handler)))
        .fallback(|| async {
            error(StatusCode::NOT_FOUND, "no such endpoint; the webhook serves POST /mutate, POST /validate, GET /healthz, GET /readyz, GET /metrics".into())
        })
        .with_state(state)
}

/// A route that answers other methods with 405 and a message rather than an empty body.
fn only(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(|| async {
        error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint".into())
    })
}

fn error(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], message + "\n")
        .into_response()
}

async fn readyz_handler(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "not ready".into())
    }
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn mutate_handler(State(state): State<AppState>, request: Request) -> Response {
    review(state, "mutate", request, |_, request| async move { Ok(admission::mutate_review(&request)?) })
        .await
}

async fn validate_handler(State(state): State<AppState>, request: Request) -> Response {
    review(state, "validate", request, validate).await
}

/// Why a review got no AdmissionReview answer.
enum HandlerError {
    /// Not a usable review: 400.
    Invalid(admission::ReviewError),
    /// The server is at one of its limits: 503 at once, with the limit named.
    Overloaded(String),
    /// Our failure: 500 with a generic message (the detail is logged), and the webhook's
    /// `failurePolicy` decides.
    Internal(String),
}

impl From<admission::ReviewError> for HandlerError {
    fn from(rejection: admission::ReviewError) -> HandlerError {
        HandlerError::Invalid(rejection)
    }
}

/// `/validate`: the policies on the expanded StatefulSet, or on the parent of a Scale.
async fn validate(state: AppState, request: admission::Request) -> Result<admission::Response, HandlerError> {
    let judged = match admission::validation(&request)? {
        admission::Validation::Answer(response) => return Ok(response),
        admission::Validation::Evaluate(judged) => judged,
        admission::Validation::Scale { namespace, name, replicas } => {
            let Some(lookup) = &state.lookup else {
                return Ok(admission::allow_with_warning(
                    &request,
                    "the policies did not check this scale: the webhook has no cluster connection to read the StatefulSet"
                        .into(),
                ));
            };
            match lookup.managed_parent(&namespace, &name).await {
                Ok(Some(parent)) => match admission::scale_request(&request, &parent, replicas) {
                    Ok(judged) => judged,
                    Err(answer) => return Ok(*answer),
                },
                Ok(None) => return Ok(admission::Response::allow(&request.uid)),
                Err(error) => return Err(HandlerError::Internal(error.to_string())),
            }
        }
    };
    let permit = match state.evaluations.clone().try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            // A slot is busy: wait in a bounded queue, or say at once that it is full.
            let queued = QueuedEvaluation::enter(&state.queued_evaluations).ok_or_else(|| {
                HandlerError::Overloaded(format!(
                    "the webhook is at its limit of {MAX_QUEUED_EVALUATIONS} reviews waiting for the policies; retry"
                ))
            })?;
            let permit =
                state.evaluations.clone().acquire_owned().await.expect("the semaphore is never closed");
            drop(queued);
            permit
        }
    };
    let set = state.policies.current();
    let namespace_labels =
        state.namespaces.as_ref().and_then(|cache| cache.labels(&judged.subject.namespace));
    let job = Arc::new(EvaluationJob {
        set: set.clone(),
        policies: state.policies.clone(),
        metrics: state.metrics.clone(),
        span: tracing::Span::current(),
        judged,
        namespace_labels,
    });
    // A second free slot is an idle worker: the review's policies are split between the two so
    // that a quiet server's review uses both cores (README "Performance").
    // Under load no second slot is free and each review keeps to one worker, as before.
    let second = if set.len() > 1 { state.evaluations.clone().try_acquire_owned().ok() } else { None };
    let evaluation = match second {
        None => state.workers.run(job.part(permit, 0..set.len())).await,
        Some(second) => {
            let middle = set.len().div_ceil(2);
            let (first, rest) = tokio::join!(
                state.workers.run(job.part(permit, 0..middle)),
                state.workers.run(job.part(second, middle..set.len())),
            );
            first.and_then(|first| Ok(first.join(rest?)))
        }
    }
    .map_err(|panicked| HandlerError::Internal(panicked.to_string()))?;
    for finding in &evaluation.findings {
        tracing::debug!(policy = %finding.policy, outcome = finding.outcome(), micros = finding.duration.as_micros() as u64, "policy evaluated");
    }
    Ok(admission::evaluation_response(&request, &evaluation.denials(), evaluation.warnings()))
}

/// What the evaluation of one review needs on a worker: one snapshot of the policy set for all
/// its parts, so that a reload between two parts can't mix two sets' findings.
struct EvaluationJob {
    set: Arc<PolicySet>,
    policies: Arc<Policies>,
    metrics: Arc<Metrics>,
    span: tracing::Span,
    judged: admission::Judged,
    namespace_labels: Option<Labels>,
}

impl EvaluationJob {
    /// The work of the policies at `part`, holding `slot` until it is done.
    fn part(
        self: &Arc<Self>,
        slot: OwnedSemaphorePermit,
        part: std::ops::Range<usize>,
    ) -> impl FnOnce() -> Evaluation + Send + 'static {
        let job = self.clone();
        move || {
            let _slot = slot;
            let _span = job.span.enter();
            let target =
                Target { subject: &job.judged.subject, namespace_labels: job.namespace_labels.as_ref() };
            job.set.evaluate_part(
                job.policies.host(),
                &job.judged.input,
                Some(target),
                Some(&job.metrics),
                part,
            )
        }
    }
}

/// A place in the queue for an evaluation slot, given back on drop.
struct QueuedEvaluation<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> QueuedEvaluation<'a> {
    fn enter(queued: &'a std::sync::atomic::AtomicUsize) -> Option<QueuedEvaluation<'a>> {
        let entered = queued.fetch_add(1, Ordering::AcqRel) < MAX_QUEUED_EVALUATIONS;
        let place = QueuedEvaluation(queued);
        entered.then_some(place)
    }
}

impl Drop for QueuedEvaluation<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The 503 of a server at one of its limits: says which, and when to retry.
fn overloaded(message: String) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Takes the share of [`BODY_BUDGET`] that `request`'s body announces (`Content-Length`), or
/// answers why it can't: 413 for a body announced over [`BODY_LIMIT`], 503 when the budget is
/// spent. A body that announces nothing takes its share as it arrives ([`read_body`]).
#[allow(clippy::result_large_err, reason = "the error is the answer itself, made once per refused request")]
fn reserve_body(
    state: &AppState,
    request: &Request,
) -> Result<Option<OwnedSemaphorePermit>, (Outcome, Response)> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<usize>().ok());
    match announced {
        None => Ok(None),
        Some(length) if length > BODY_LIMIT => Err((Outcome::Invalid, body_too_large())),
        Some(length) => grow_reservation(&state.body_budget, None, length).map(Some),
    }
}

/// `reserved`, grown to cover `bytes`; the 503 when the budget can't cover them.
#[allow(clippy::result_large_err, reason = "the error is the answer itself, made once per refused request")]
fn grow_reservation(
    budget: &Arc<tokio::sync::Semaphore>,
    reserved: Option<OwnedSemaphorePermit>,
    bytes: usize,
) -> Result<OwnedSemaphorePermit, (Outcome, Response)> {
    let needed = bytes.div_ceil(BUDGET_UNIT).max(1);
    let held = reserved.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
    let more = u32::try_from(needed.saturating_sub(held)).expect("bodies are limited to BODY_LIMIT");
    if more == 0 {
        return Ok(reserved.expect("a reservation covering the bytes exists"));
    }
    let extra = budget.clone().try_acquire_many_owned(more).map_err(|_| {
        let message =
            format!("the webhook is at its limit of {BODY_BUDGET} bytes of reviews in flight; retry");
        (Outcome::Overloaded, overloaded(message))
    })?;
    Ok(match reserved {
        Some(mut permit) => {
            permit.merge(extra);
            permit
        }
        None => extra,
    })
}

/// Reads a body to its end, up to [`BODY_LIMIT`] bytes and within [`BODY_TIMEOUT`], keeping none
/// of it.
async fn discard_body(body: &mut Limited<Body>) {
    let _ = tokio::time::timeout(BODY_TIMEOUT, async { while let Some(Ok(_)) = body.frame().await {} }).await;
}

fn body_too_large() -> Response {
    error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than the limit of {BODY_LIMIT} bytes"))
}

/// The shell shared by both admission endpoints: read the body within limits, parse the
/// review, decide, answer, log with the request's uid and count.
async fn review<Decide, Decided>(
    state: AppState,
    endpoint: &'static str,
    request: Request,
    decide: Decide,
) -> Response
where
    Decide: FnOnce(AppState, admission::Request) -> Decided,
    Decided: Future<Output = Result<admission::Response, HandlerError>>,
{
    let started = Instant::now();
    let _in_flight = state.metrics.start_request();
    let mut reserved = match reserve_body(&state, &request) {
        Ok(permit) => permit,
        Err((outcome, response)) => {
            tracing::warn!(endpoint, outcome = outcome.as_str(), "admission request refused at a limit");
            if outcome == Outcome::Overloaded {
                // Read and drop the body (nothing is kept) so the client gets the answer rather
                // than a broken pipe while it is still sending.
                discard_body(&mut Limited::new(request.into_body(), BODY_LIMIT)).await;
            }
            state.metrics.record_request(endpoint, outcome, started);
            return response;
        }
    };
    let (outcome, response) = match read_body(request.into_body(), &state.body_budget, &mut reserved).await {
        Err(refused) => refused,
        Ok(body) => match admission::parse(&body) {
            Err(rejection) => {
                tracing::info!(endpoint, %rejection, "invalid admission review");
                (Outcome::Invalid, error(StatusCode::BAD_REQUEST, rejection.0))
            }
            Ok(request) => {
                let span = tracing::info_span!("admission", uid = %request.uid, endpoint, operation = %request.operation,
                    namespace = request.namespace.as_deref().unwrap_or(""), object = request.name.as_deref().unwrap_or(""),
                    dry_run = request.dry_run);
                let state_for_decision = state.clone();
                async move {
                    match decide(state_for_decision, request).await {
                        Ok(answer) => {
                            let outcome = answer.outcome();
                            match &answer.status {
                                Some(status) => {
                                    tracing::info!(outcome = outcome.as_str(), reason = %status.message, "answered")
                                }
                                None => tracing::info!(outcome = outcome.as_str(), "answered"),
                            }
                            let json = HeaderValue::from_static("application/json");
                            (outcome, ([(header::CONTENT_TYPE, json)], answer.to_review_json()).into_response())
                        }
                        Err(HandlerError::Invalid(rejection)) => {
                            tracing::info!(%rejection, "invalid admission request");
                            (Outcome::Invalid, error(StatusCode::BAD_REQUEST, rejection.0))
                        }
                        Err(HandlerError::Overloaded(message)) => {
                            tracing::warn!(%message, "admission request refused at a limit");
                            (Outcome::Overloaded, overloaded(message))
                        }
                        Err(HandlerError::Internal(detail)) => {
                            tracing::error!(error = %detail, "internal error");
                            let message = "internal error; the webhook's log has the details".into();
                            (Outcome::Error, error(StatusCode::INTERNAL_SERVER_ERROR, message))
                        }
                    }
                }
                .instrument(span)
                .await
            }
        },
    };
    state.metrics.record_request(endpoint, outcome, started);
    response
}

/// The body, or the answer that says why it can't be read: too large (413), too slow (408),
/// broken (400), or more than the budget has left (503, the rest of the body read and dropped).
/// Bytes beyond what `reserved` covers take more of the budget as they arrive.
async fn read_body(
    body: Body,
    budget: &Arc<tokio::sync::Semaphore>,
    reserved: &mut Option<OwnedSemaphorePermit>,
) -> Result<Bytes, (Outcome, Response)> {
    let invalid = |response| (Outcome::Invalid, response);
    let mut body = Limited::new(body, BODY_LIMIT);
    let read = async {
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    return Err(invalid(body_too_large()));
                }
                Err(e) => {
                    return Err(invalid(error(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}"),
                    )));
                }
            };
            let Ok(data) = frame.into_data() else { continue };
            bytes.extend_from_slice(&data);
            *reserved = Some(grow_reservation(budget, reserved.take(), bytes.len())?);
        }
        Ok(Bytes::from(bytes))
    };
    let result = match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(invalid(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs()),
        ))),
        Ok(result) => result,
    };
    if matches!(&result, Err((Outcome::Overloaded, _))) {
        discard_body(&mut body).await;
    }
    result
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then stops accepting and
/// waits up to [`DRAIN_TIMEOUT`] for the connections in flight to finish their requests.
pub async fn serve(
    listener: TcpListener,
    certificates: Arc<CertificateStore>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(certificates.server_config());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HANDSHAKE_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(KEEPALIVE_INTERVAL))
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(MAX_STREAMS);
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let (drain, draining) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = connections.clone().try_acquire_owned() else {
            // Closing at once is the fast answer; a queue of accepted sockets would grow without end.
            tracing::debug!(%peer, limit = MAX_CONNECTIONS, "connection refused: at the connection limit");
            continue;
        };
        // An answer is written as a few small TLS records: without NODELAY, Nagle holds the last
        // until the client acknowledges the first, which a client delaying its ACKs makes tens of
        // milliseconds (p99 of 44 ms at 1,000 req/s with hey over HTTP/2).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%peer, %error, "TCP_NODELAY could not be set");
        }
        let (acceptor, builder, app, mut draining) =
            (acceptor.clone(), builder.clone(), app.clone(), draining.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let activity = Arc::new(Activity::default());
            // `app`, counting the requests in progress on this connection (for the idle timeout).
            let counted = activity.clone();
            let service = tower::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (app, activity) = (app.clone(), counted.clone());
                activity.begin();
                async move {
                    let response = tower::ServiceExt::oneshot(app, request).await;
                    activity.end();
                    response
                }
            });
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(service));
            tokio::pin!(connection);
            let mut idle_check = tokio::time::interval(IDLE_TIMEOUT / 4);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%peer, %error, "connection ended with an error");
                        }
                        break;
                    }
                    _ = idle_check.tick(), if !closing => {
                        if activity.idle_for() >= IDLE_TIMEOUT {
                            tracing::debug!(%peer, "closing an idle connection");
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                    _ = draining.wait_for(|drain| *drain), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        });
    }
    drop(listener);
    let open = MAX_CONNECTIONS - connections.available_permits();
    tracing::info!(connections = open, "shutting down: draining requests in flight");
    let _ = drain.send(true);
    let all_closed = connections.acquire_many(MAX_CONNECTIONS as u32);
    if tokio::time::timeout(DRAIN_TIMEOUT, all_closed).await.is_err() {
        tracing::warn!("drain timed out; exiting with connections still open");
    }
}

/// When a connection last had no request in progress, and how many it has now.
#[derive(Default)]
struct Activity {
    in_progress: std::sync::atomic::AtomicUsize,
    /// Milliseconds since `origin` when the last request ended (or the connection began).
    last_ended: std::sync::atomic::AtomicU64,
    origin: OnceInstant,
}

/// An `Instant` that defaults to now.
struct OnceInstant(Instant);

impl Default for OnceInstant {
    fn default() -> Self {
        OnceInstant(Instant::now())
    }
}

impl Activity {
    fn idle_for(&self) -> Duration {
        if self.in_progress.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let ended = Duration::from_millis(self.last_ended.load(Ordering::Acquire));
        self.origin.0.elapsed().saturating_sub(ended)
    }

    fn begin(&self) {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
    }

    fn end(&self) {
        let now = u64::try_from(self.origin.0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ended.store(now, Ordering::Release);
        self.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Loads the set of `--policies` (the built-ins without it) in the blocking pool.
async fn load_policies(
    file: Option<std::path::PathBuf>,
    cache: Option<std::path::PathBuf>,
) -> Result<Arc<Policies>, PolicyError> {
    let started = Instant::now();
    let policies = tokio::task::spawn_blocking(move || {
        let source = file.map_or(Source::Builtins, Source::File);
        Policies::load(crate::policy::Host::new(cache)?, source)
    })
    .await
    .expect("loading the policies doesn't panic")?;
    tracing::info!(policies = ?policies.current().names(), source = ?policies.source(), millis = started.elapsed().as_millis() as u64, "policies loaded");
    Ok(Arc::new(policies))
}

/// Reloads the policy set when its files change, until the process ends.
pub fn spawn_policy_reloader(policies: Arc<Policies>, metrics: Arc<Metrics>) {
    if *policies.source() == Source::Builtins {
        return;
    }
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(crate::policy::RELOAD_INTERVAL);
        loop {
            interval.tick().await;
            let (policies, metrics) = (policies.clone(), metrics.clone());
            let _ = tokio::task::spawn_blocking(move || policies.reload_and_report(&metrics)).await;
        }
    });
}

/// Runs the certificate reloader until the process ends.
pub fn spawn_reloader(certificates: Arc<CertificateStore>, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tls::RELOAD_INTERVAL);
        loop {
            interval.tick().await;
            let (certificates, metrics) = (certificates.clone(), metrics.clone());
            // File reads and key parsing are blocking work.
            let _ = tokio::task::spawn_blocking(move || certificates.reload(&metrics)).await;
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}

/// Binds `addr` and reports the address actually bound (for `127.0.0.1:0` in tests).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum Certificates {
    Files {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
    /// `--dev`: made at start-up for localhost and 127.0.0.1.
    Development,
}

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub certificates: Certificates,
    pub policies: Option<std::path::PathBuf>,
    /// Where precompiled policies are kept; `None` compiles at every start.
    pub policy_cache: Option<std::path::PathBuf>,
    pub controller: bool,
    /// The audit's period (with the controller); `None`: no audit.
    pub audit_interval: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Certs(#[from] crate::certs::CertsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the policies can't be loaded: {0}")]
    Policies(#[from] PolicyError),
}

/// Runs the webhook until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    let (cert, key) = match config.certificates {
        Certificates::Files { cert, key } => (cert, key),
        Certificates::Development => development_certificates()?,
    };
    let certificates = CertificateStore::open(&cert, &key, &metrics)?;
    // Before binding: readiness means the policies are compiled and their settings accepted.
    let policies = load_policies(config.policies.clone(), config.policy_cache.clone()).await?;
    metrics.set_policies_loaded(policies.current().names().len());
    let (listener, local) =
        bind(config.addr).await.map_err(|source| ServeError::Bind { addr: config.addr, source })?;
    spawn_reloader(certificates.clone(), metrics.clone());
    spawn_policy_reloader(policies.clone(), metrics.clone());
    // One signal stops both the server and the controller.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let client = crate::controller::connect().await;
    let controller = match (config.controller, &client) {
        (true, Some(client)) => Some(tokio::spawn(crate::controller::run(
            client.clone(),
            metrics.clone(),
            until_stopped(stopped.clone()),
        ))),
        _ => None,
    };
    let mut state = AppState::new(metrics, policies);
    let mut audit = None;
    if let Some(client) = client {
        let lookup = ClusterLookup::start(client.clone());
        let namespaces = Arc::new(NamespaceLabels::start(client.clone()));
        if let (true, Some(interval)) = (config.controller, config.audit_interval) {
            audit = Some(crate::audit::spawn(
                client,
                &state,
                namespaces.clone(),
                lookup.cache(),
                interval,
                until_stopped(stopped.clone()),
            ));
        }
        state = state.with_lookup(Arc::new(lookup)).with_namespaces(namespaces);
    }
    tracing::info!(addr = %local, cert = %cert.display(), "serving the admission webhook");
    serve(listener, certificates, router(state), until_stopped(stopped)).await;
    for task in controller.into_iter().chain(audit) {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Makes the `--dev` CA and certificate in `certs/dev/` when run from the repository, else in a
/// temporary directory, and says where the CA is.
fn development_certificates() -> Result<(std::path::PathBuf, std::path::PathBuf), ServeError> {
    let dir = if std::path::Path::new("certs").is_dir() {
        std::path::PathBuf::from("certs/dev")
    } else {
        std::env::temp_dir().join("mysql-webhook-dev")
    };
    let bundle =
        crate::certs::generate("mysql-webhook-dev", vec!["localhost".into(), "127.0.0.1".into()], 30)?;
    crate::certs::write(&bundle, &dir, true)?;
    let ca = dir.join(TLS_CA_FILE);
    tracing::info!(ca = %ca.display(), "development certificates made; trust the CA to call the webhook, e.g. curl --cacert {}", ca.display());
    Ok((dir.join(TLS_CERT_FILE), dir.join(TLS_KEY_FILE)))
}
