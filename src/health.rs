//! `/healthz` and `/metrics` over HTTP, for orchestrators and Prometheus.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::state::BotState;

#[derive(Clone)]
struct HealthState {
    bot: Arc<BotState>,
    metrics: PrometheusHandle,
}

/// Serves until `shutdown` is cancelled. Binding failures are returned; the caller decides
/// whether the bot runs without the server.
pub async fn serve(
    addr: SocketAddr,
    bot: Arc<BotState>,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .with_state(HealthState { bot, metrics });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "health server listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    tracing::info!("health server stopped");
    Ok(())
}

/// Returns 200 when the database responds and the gateway is connected, else 503, with a JSON
/// body that names the failing part.
async fn healthz(State(state): State<HealthState>) -> impl IntoResponse {
    let database = state.bot.db.ping().await.is_ok();
    let gateway = state.bot.gateway_connected();
    let status = if database && gateway {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "degraded" },
        "database": if database { "ok" } else { "failing" },
        "gateway": if gateway { "connected" } else { "disconnected" },
        "uptime_seconds": state.bot.started_at.elapsed().as_secs(),
    });
    (status, Json(body))
}

async fn render_metrics(State(state): State<HealthState>) -> impl IntoResponse {
    state.metrics.render()
}
