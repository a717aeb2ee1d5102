//! Wiring: configuration, storage, clients, the Discord client and the health server, and an
//! orderly shutdown on SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusBuilder;
use poise::serenity_prelude as serenity;
use tokio_util::sync::CancellationToken;

use crate::alerts::{AlertsState, Dispatcher, Poller};
use crate::cli::ConfigFile;
use crate::config::{Config, ConfigErrors, Secrets};
use crate::crypto::KeyCipher;
use crate::discord::{self, Data, DiscordAlertSender, GuildAccess};
use crate::linking::LinkService;
use crate::state::BotState;
use crate::storage::{Db, MIGRATOR};
use crate::tickets::TicketService;
use crate::trackly::TracklyClient;
use crate::{health, telemetry};

/// Runs the bot until SIGTERM or Ctrl-C stops it.
pub async fn run(config_file: &ConfigFile) -> anyhow::Result<()> {
    let (config, secrets) = load_all(config_file)?;
    let mut log_secrets = telemetry::env_secrets();
    log_secrets.push(secrets.discord_token.to_string());
    telemetry::init(log_secrets);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %config_file.path.display(), "trackly-bot starting");
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }

    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let config = Arc::new(config);
    let db = open_db(&config).await?;
    let trackly =
        TracklyClient::new(&config.trackly).context("cannot build the Trackly HTTP client")?;
    let cipher = Arc::new(KeyCipher::new(
        &secrets.encryption_key,
        secrets.encryption_key_id.clone(),
    ));
    let links = LinkService::new(db.clone(), trackly, cipher, config.linking.clone());
    links.check_encryption_key().await?;
    let state = Arc::new(BotState::new(db.clone()));
    let tickets = TicketService::new(db.clone(), config.support.clone());
    let alerts = Arc::new(AlertsState::new());
    let poller_links = links.clone();
    let http = build_http(&config, &secrets)?;

    // Signals are watched from here on, so that they also stop the wait for Discord.
    let shutdown = CancellationToken::new();
    let signal_task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            shutdown.cancel();
        })
    };
    // The health server runs from here on, so that probes see the bot while it waits for
    // Discord.
    let health_task = config.health_listen_addr().map(|addr| {
        let (state, shutdown) = (Arc::clone(&state), shutdown.clone());
        tokio::spawn(async move {
            if let Err(error) = health::serve(addr, state, metrics, shutdown).await {
                tracing::error!(%addr, %error, "health server failed; the bot keeps running without it");
            }
        })
    });
    // Every way out below goes through the one cleanup after this block.
    let mut alert_tasks = Vec::new();
    let outcome: anyhow::Result<bool> = async {
        let probe = discord::connect::DiscordProbe::new(
            &config.discord.rest_base_url,
            secrets.discord_token.as_str(),
            Duration::from_millis(config.discord.request_timeout_ms),
        )?;
        let gateway_url = match discord::connect::reach_discord(&probe, &shutdown).await {
            Ok(Some(url)) => url,
            Ok(None) => return Ok(false),
            Err(error) => {
                tracing::error!(%error, "cannot use Discord");
                return Err(error.into());
            }
        };

        let framework = {
            let config = Arc::clone(&config);
            let state = Arc::clone(&state);
            let alerts = Arc::clone(&alerts);
            discord::framework(Arc::clone(&config), move |ctx, ready| {
                state.set_gateway_connected(true);
                Data {
                    guild: GuildAccess::new(
                        Arc::clone(&ctx.http),
                        ready.user.id.get(),
                        config.guild.clone(),
                    ),
                    config,
                    links,
                    state,
                    alerts,
                    tickets,
                }
            })
        };
        // GUILDS is the only intent needed: commands arrive as interactions.
        let intents = serenity::GatewayIntents::GUILDS;
        let mut client = serenity::ClientBuilder::new_with_http(http, intents)
            .framework(framework)
            .await
            .context("cannot build the Discord client")?;
        state.set_shard_manager(Arc::clone(&client.shard_manager));
        *client.ws_url.lock().await = gateway_url;
        if shutdown.is_cancelled() {
            return Ok(false);
        }

        alert_tasks = start_alerts(
            &config,
            &alerts,
            poller_links,
            Arc::clone(&client.http),
            &shutdown,
        )?;
        let disconnect_task = {
            let (manager, shutdown) = (Arc::clone(&client.shard_manager), shutdown.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tracing::info!("disconnecting from Discord");
                manager.shutdown_all().await;
            })
        };

        // shutdown_all returns at once when no shard is running, as while serenity waits to
        // reconnect, and then client.start() would never return: give it a bounded time.
        let result = tokio::select! {
            result = client.start() => result,
            () = async {
                shutdown.cancelled().await;
                tokio::time::sleep(DISCONNECT_GRACE).await;
            } => {
                tracing::warn!(
                    grace_ms = DISCONNECT_GRACE.as_millis() as u64,
                    "the Discord connection did not close in time after shutdown; stopping without it"
                );
                Ok(())
            }
        };
        disconnect_task.abort();
        match result {
            Ok(()) => Ok(true),
            Err(error) => {
                tracing::error!(%error, "Discord client stopped with an error");
                Err(match discord::connect::fatal_gateway_error(&error) {
                    Some(problem) => problem.into(),
                    None => anyhow::Error::new(error).context("the Discord client failed"),
                })
            }
        }
    }
    .await;

    shutdown.cancel();
    signal_task.abort();
    if let Some(task) = health_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    stop_alerts(alert_tasks, &db, config.alerts.shutdown_grace_ms).await;
    db.close().await;
    match outcome {
        Ok(true) => tracing::info!("trackly-bot stopped"),
        Ok(false) => tracing::info!("trackly-bot stopped before connecting to Discord"),
        Err(_) => {}
    }
    outcome.map(|_| ())
}

/// How long the Discord connection may take to close after shutdown was requested.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);

/// Starts the alert poller and dispatcher, sending with the client's `Http`. `run` calls this
/// once, before the gateway connects, so a gateway reconnect starts nothing; the guard in
/// `AlertsState` also refuses a second call.
fn start_alerts(
    config: &Config,
    alerts: &Arc<AlertsState>,
    links: LinkService,
    http: Arc<serenity::Http>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    if !config.alerts.enabled {
        tracing::info!("alerts are disabled (alerts.enabled = false); the poller does not run");
        return Ok(Vec::new());
    }
    if !alerts.claim_start() {
        tracing::warn!("the alert poller is already running; not starting a second one");
        return Ok(Vec::new());
    }
    let sender = Arc::new(
        DiscordAlertSender::new(
            http,
            links.db().clone(),
            config.guild.clone(),
            Duration::from_millis(config.discord.request_timeout_ms),
        )
        .context("cannot build the HTTP client for alerts")?,
    );
    let db = links.db().clone();
    let poller = Arc::new(Poller::new(
        links,
        Arc::clone(&sender),
        Arc::clone(alerts),
        config.alerts.clone(),
    ));
    let dispatcher = Dispatcher::new(db, sender, Arc::clone(alerts), &config.alerts);
    alerts.set_running(true);
    Ok(vec![
        tokio::spawn(poller.run(shutdown.clone())),
        tokio::spawn(dispatcher.run(shutdown.clone())),
    ])
}

/// Waits up to `grace_ms` for the poller and the dispatcher to finish their in-flight work
/// after shutdown was requested, aborts what is still running, then logs what is still
/// pending in the outbox. An aborted send keeps its deliveries pending, so they are sent after
/// the next start; Discord drops the repeat when the first attempt did arrive and the repeat
/// comes within its nonce window.
async fn stop_alerts(mut tasks: Vec<tokio::task::JoinHandle<()>>, db: &Db, grace_ms: u64) {
    if tasks.is_empty() {
        return;
    }
    let grace = Duration::from_millis(grace_ms);
    let all = async {
        for task in tasks.iter_mut() {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            grace_ms,
            "alert tasks did not stop within the grace time; aborting in-flight sends, whose \
             deliveries stay pending"
        );
        let running: Vec<_> = tasks
            .into_iter()
            .filter(|task| !task.is_finished())
            .collect();
        for task in &running {
            task.abort();
        }
        for task in running {
            let _ = task.await;
        }
    }
    match db.pending_delivery_count().await {
        Ok(0) => tracing::info!("alert outbox empty at shutdown"),
        Ok(pending) => tracing::warn!(
            pending,
            "alert deliveries left pending at shutdown; they are sent after the next start"
        ),
        Err(error) => tracing::error!(%error, "cannot count pending alert deliveries at shutdown"),
    }
}

/// Applies pending migrations and prints what was applied.
pub async fn migrate(config_file: &ConfigFile) -> anyhow::Result<()> {
    let config = config_file.load()?;
    telemetry::init(Vec::new());
    let db = open_db(&config).await?;
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(db.pool())
            .await?;
    println!(
        "database {} is at migration {} of {}",
        config.database.path.display(),
        applied,
        MIGRATOR.iter().count()
    );
    db.close().await;
    Ok(())
}

/// Reports every configuration and secret problem at once; fails when there is any.
pub fn check_config(config_file: &ConfigFile) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let config = match config_file.load() {
        Ok(config) => Some(config),
        Err(ConfigErrors(found)) => {
            problems.extend(found);
            None
        }
    };
    if let Err(ConfigErrors(found)) = Secrets::from_env() {
        problems.extend(found);
    }
    match config {
        Some(config) if problems.is_empty() => {
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            crate::cli::print_stdout(&crate::cli::config_summary(&config, config_file))
                .context("cannot write the summary to stdout")?;
            Ok(())
        }
        _ => Err(ConfigErrors(problems).into()),
    }
}

fn load_all(config_file: &ConfigFile) -> anyhow::Result<(Config, Secrets)> {
    let config = config_file.load();
    let secrets = Secrets::from_env();
    match (config, secrets) {
        (Ok(config), Ok(secrets)) => Ok((config, secrets)),
        (config, secrets) => {
            let mut problems = Vec::new();
            if let Err(ConfigErrors(found)) = config {
                problems.extend(found);
            }
            if let Err(ConfigErrors(found)) = secrets {
                problems.extend(found);
            }
            Err(ConfigErrors(problems).into())
        }
    }
}

async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::open(
        &config.database.path,
        Duration::from_millis(config.database.busy_timeout_ms),
        config.database.max_connections,
    )
    .await?;
    tracing::info!(path = %config.database.path.display(), "database open and migrated");
    Ok(db)
}

/// Builds the REST client. With `discord.rest_base_url` set, requests go to that base instead of
/// discord.com; serenity honours the base only with its own rate limiter off, so the proxy in
/// front of Discord is expected to do the rate limiting.
fn build_http(config: &Config, secrets: &Secrets) -> anyhow::Result<serenity::Http> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_millis(config.discord.request_timeout_ms))
        .build()
        .context("cannot build the Discord HTTP client")?;
    let mut builder = serenity::HttpBuilder::new(secrets.discord_token.as_str()).client(client);
    if !config.discord.rest_base_url.is_empty() {
        builder = builder
            .proxy(config.discord.rest_base_url.trim_end_matches('/'))
            .ratelimiter_disabled(true);
    }
    Ok(builder.build())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the bot");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("received Ctrl-C"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Sets its flag when dropped, as a task's future is when the task is aborted.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn stop_alerts_aborts_after_grace() {
        let (db, _dir) = crate::storage::test_db().await;
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(Arc::clone(&dropped));
        let stuck = tokio::spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        let done = tokio::spawn(async {});

        let started = std::time::Instant::now();
        stop_alerts(vec![done, stuck], &db, 100).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(dropped.load(Ordering::SeqCst), "the stuck task was aborted");
    }
}
