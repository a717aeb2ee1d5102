//! The HTTP server and the handle that tests use to script it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context};
use axum::routing::any;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::api::{handle_api_request, json_error, API_PREFIX};
use crate::control;
use crate::fault::Fault;
use crate::seed::{AccountStatus, Seed};
use crate::state::{RecordedRequest, SimState};

/// Pause after a failed `accept`, so that running out of file descriptors does not spin the loop.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(50);

/// Entry point of the simulator.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Validates `seed`, binds `addr` (tests pass `127.0.0.1:0`) and serves until the last
    /// [`SimHandle`] is dropped or [`SimHandle::shutdown`] is called.
    pub async fn start(seed: Seed, addr: SocketAddr) -> anyhow::Result<SimHandle> {
        seed.validate().context("invalid simulator seed")?;
        let account_count = seed.accounts.len();

        let listener = TcpListener::bind(addr)
            .await
            .map_err(|error| bind_error(addr, &error))?;
        let addr = listener
            .local_addr()
            .context("failed to read the simulator's listen address")?;

        let state = Arc::new(SimState::new(seed));
        let router = build_router(Arc::clone(&state));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, router, shutdown_rx));

        info!(%addr, accounts = account_count, "Trackly simulator listening");
        Ok(SimHandle {
            inner: Arc::new(HandleInner {
                addr,
                state,
                shutdown_tx,
                server: Mutex::new(Some(server)),
            }),
        })
    }
}

/// Builds the error for a failed bind, with what to do for the common causes.
fn bind_error(addr: SocketAddr, error: &io::Error) -> anyhow::Error {
    let any_port = SocketAddr::new(addr.ip(), 0);
    let advice = match error.kind() {
        io::ErrorKind::AddrInUse => format!(
            "Another process is listening on {addr}. Stop it, choose another port, or use \
             {any_port} to get any free port"
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "{} is not an address of this machine. Use 127.0.0.1 (such as 127.0.0.1:0)",
            addr.ip()
        ),
        io::ErrorKind::PermissionDenied => format!(
            "Ports below 1024 usually need extra privileges. Choose a port from 1024 up, or use \
             {any_port} to get any free port"
        ),
        _ => String::new(),
    };
    if advice.is_empty() {
        anyhow!("failed to bind the simulator to {addr}: {error}")
    } else {
        anyhow!("failed to bind the simulator to {addr}: {error}. {advice}")
    }
}

/// Handle to a running simulator. Clones share one simulator, which stops when the last clone is
/// dropped or when any clone calls [`SimHandle::shutdown`].
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    addr: SocketAddr,
    state: Arc<SimState>,
    shutdown_tx: watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        self.shutdown_tx.send_replace(true);
    }
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// Returns the address the simulator is bound to, with the actual port when bound to port 0.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Returns the API base URL, such as `http://127.0.0.1:8081/api/v2`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}{API_PREFIX}", self.inner.addr)
    }

    /// Adds a fault after the existing ones; the first matching fault applies.
    ///
    /// A fault that fails [`Fault::validate`] is added anyway with a logged warning, and the
    /// control API rejects it instead, because it can report the error. Such a fault applies as
    /// written: a `ServerError` status outside 500..=599 is sent as 500, a fault whose `times` is
    /// 0 never applies, and a fault whose path is not an endpoint applies only to requests for
    /// that path, which otherwise get 404.
    pub fn add_fault(&self, fault: Fault) {
        if let Err(message) = fault.validate() {
            warn!(%message, "fault added with an invalid value");
        }
        info!(fault = ?fault, "fault added");
        self.inner.state.add_fault(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        let cleared = self.inner.state.clear_faults();
        info!(cleared, "faults cleared");
    }

    /// Returns every `/api/v2` request since the start or the last clear, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.state.requests()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.inner.state.clear_requests();
    }

    /// Appends events to an account's feed, in order; each gets the next cursor.
    ///
    /// Each event must be a JSON object. One without `id` gets a generated one, and one without
    /// `occurred_at` gets the current time. Appending an event with an `id` already in the feed
    /// adds it again, as the real feed may deliver an event twice.
    pub fn append_events(&self, account_id: &str, events: Vec<Value>) -> anyhow::Result<()> {
        let cursors = self.inner.state.append_events(account_id, events)?;
        info!(account_id, appended = cursors.len(), "events appended");
        Ok(())
    }

    /// Sets an account's status. Every call with a key of a suspended account gets 403.
    pub fn set_account_status(
        &self,
        account_id: &str,
        status: AccountStatus,
    ) -> anyhow::Result<()> {
        self.inner.state.set_account_status(account_id, status)?;
        info!(account_id, %status, "account status set");
        Ok(())
    }

    /// Revokes a seeded key, so that later calls with it get 401 `invalid_api_key`.
    pub fn revoke_key(&self, key: &str) -> anyhow::Result<()> {
        self.inner.state.revoke_key(key)?;
        info!(key = %crate::seed::key_fingerprint(key), "key revoked");
        Ok(())
    }

    /// Stops the simulator, closing every open connection (held requests included), and waits
    /// for the server task to end. Other clones of the handle stop working too.
    pub async fn shutdown(self) {
        self.inner.shutdown_tx.send_replace(true);
        let server = self
            .inner
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            if let Err(error) = server.await {
                warn!(%error, "simulator server task failed");
            }
        }
    }
}

fn build_router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(API_PREFIX, any(handle_api_request))
        // A wildcard does not match an empty rest, so `/api/v2/` needs its own route.
        .route(&format!("{API_PREFIX}/"), any(handle_api_request))
        .route(&format!("{API_PREFIX}/{{*path}}"), any(handle_api_request))
        .merge(control::routes())
        .fallback(|| async {
            json_error(
                axum::http::StatusCode::NOT_FOUND,
                "Not found: the simulator serves /api/v2/... and /_control/...",
                Some("not_found"),
            )
        })
        .with_state(state)
}

/// Request to close one connection without a response, sent by a request that a `NoAnswer`
/// fault has held long enough.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionCloser(Arc<Notify>);

impl ConnectionCloser {
    pub fn close(&self) {
        self.0.notify_one();
    }

    async fn closed(&self) {
        self.0.notified().await;
    }
}

/// Accepts connections until shutdown. Each connection runs in its own task, and shutdown aborts
/// them all, so requests held by `Delay` or `NoAnswer` faults end at once without a response.
async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, router.clone()));
                }
                Err(error) => {
                    warn!(%error, "failed to accept a connection; retrying");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            },
            // An error means every handle is gone, which also stops the simulator.
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    drop(listener);
    let open = connections.len();
    connections.shutdown().await;
    info!(closed_connections = open, "Trackly simulator stopped");
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, router: Router) {
    let closer = ConnectionCloser::default();
    let request_closer = closer.clone();
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(request_closer.clone());
        router.clone().oneshot(request)
    });

    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);

    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                debug!(%peer, %error, "connection ended with an error");
            }
        }
        () = closer.closed() => {
            debug!(%peer, "closed a connection held by a no_answer fault without a response");
        }
    }
}
