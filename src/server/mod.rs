//! The HTTPS admission webhook: axum routes served over rustls by a hyper-util accept loop.
//!
//! Endpoints: `POST /mutate`, `POST /validate`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
//! Bad input gets a 4xx with a message and never takes the server down: bodies are limited in
//! size ([`BODY_LIMIT`]) and in time ([`BODY_TIMEOUT`]), handshakes and headers too. SIGTERM and
//! SIGINT stop accepting and drain the requests in flight.
//!
//! `/validate` runs the policies off the async executor (`spawn_blocking`), at most
//! [`AppState::evaluations`] at a time, so a slow policy never stalls the accept loop, the probes
//! or `/mutate`.

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
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::namespaces::NamespaceLabels;
use crate::policy::{Policies, PolicyError, Source, Target};
use crate::scale::{ClusterLookup, ParentLookup};
use mysql_webhook_core::admission::{self, Outcome};
use mysql_webhook_core::consts::{TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
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
    let input = match admission::validation(&request)? {
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
    let permit = state.evaluations.clone().acquire_owned().await.expect("the semaphore is never closed");
    let (policies, metrics, span) = (state.policies.clone(), state.metrics.clone(), tracing::Span::current());
    let namespace_labels = state.namespaces.as_ref().and_then(|cache| cache.labels(&input.subject.namespace));
    let evaluation = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let _span = span.enter();
        let target = Target { subject: &input.subject, namespace_labels: namespace_labels.as_ref() };
        policies.evaluate_scoped(&input.request, target, Some(&metrics))
    })
    .await
    .map_err(|e| HandlerError::Internal(format!("the policy evaluation panicked: {e}")))?;
    for finding in &evaluation.findings {
        tracing::debug!(policy = %finding.policy, outcome = finding.outcome(), micros = finding.duration.as_micros() as u64, "policy evaluated");
    }
    Ok(admission::evaluation_response(&request, &evaluation.denials(), evaluation.warnings()))
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
    let (outcome, response) = match read_body(request.into_body()).await {
        Err(response) => (Outcome::Invalid, response),
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

/// The body, or the 4xx that says why it can't be read: too large (413), too slow (408), broken (400).
async fn read_body(body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the limit of {BODY_LIMIT} bytes"),
        )
    };
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, BODY_LIMIT).collect()).await {
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs()),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(e)) => Err(error(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
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
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let (acceptor, builder, app, watcher) =
            (acceptor.clone(), builder.clone(), app.clone(), graceful.watcher());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(app))
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(connections = graceful.count(), "shutting down: draining requests in flight");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("drain timed out; exiting with connections still open");
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
    if let Some(client) = client {
        state = state
            .with_lookup(Arc::new(ClusterLookup::start(client.clone())))
            .with_namespaces(Arc::new(NamespaceLabels::start(client)));
    }
    tracing::info!(addr = %local, cert = %cert.display(), "serving the admission webhook");
    serve(listener, certificates, router(state), until_stopped(stopped)).await;
    if let Some(controller) = controller {
        let _ = controller.await;
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
