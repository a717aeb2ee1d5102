//! Alert pipeline benchmark: N events go through poll, route and outbox against the Trackly
//! simulator, then through the dispatcher to the fake Discord, with the production pacing.
//!
//! Run with `cargo bench --bench alerts`. `BENCH_EVENTS` (default 1000), `BENCH_USERS` (linked
//! users of the account, default 20) and `BENCH_DIGEST_WINDOW_SECS` (default 10) change the
//! sizes. It prints events per second for ingest and end to end, and the share of Discord's
//! allowed send rate that the dispatcher used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use fake_discord::{FakeDiscord, FakeDiscordConfig, FakeUser};
use poise::serenity_prelude as serenity;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use trackly_bot::alerts::{AlertsState, Dispatcher, Poller};
use trackly_bot::config::{AlertsConfig, GuildConfig, LinkingConfig, TracklyConfig};
use trackly_bot::crypto::KeyCipher;
use trackly_bot::discord::DiscordAlertSender;
use trackly_bot::linking::LinkService;
use trackly_bot::storage::Db;
use trackly_bot::trackly::TracklyClient;
use trackly_sim::{Seed, SeedKey, Simulator};

/// Discord's global limit for a bot, in requests per second.
const DISCORD_GLOBAL_PER_SEC: f64 = 50.0;
/// Discord's usual limit for messages in one channel, per 5 seconds.
const DISCORD_CHANNEL_PER_5S: f64 = 5.0;
const ACCOUNT: &str = "acc_bench";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn bench_key(index: u64) -> String {
    format!("trk_bench{index:027}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let events = env_number("BENCH_EVENTS", 1000);
    let users = env_number("BENCH_USERS", 20).max(1);
    let window = env_number("BENCH_DIGEST_WINDOW_SECS", 10);

    let mut seed = Seed::demo();
    let mut account = seed.accounts[0].clone();
    account.id = ACCOUNT.to_owned();
    account.name = "Bench Account".to_owned();
    account.keys = (0..users)
        .map(|index| SeedKey {
            key: bench_key(index),
            role: "member".to_owned(),
        })
        .collect();
    seed.accounts = vec![account];
    let sim = Simulator::start(seed, "127.0.0.1:0".parse()?).await?;
    let fake = FakeDiscord::start(FakeDiscordConfig::default()).await?;
    let all_alerts = fake.add_channel("all-alerts", 0, None);

    let dir = tempfile::tempdir()?;
    let db = Db::open(&dir.path().join("bench.db"), Duration::from_secs(5), 5).await?;
    let trackly = TracklyClient::new(&TracklyConfig {
        base_url: sim.base_url(),
        ..TracklyConfig::default()
    })?;
    let links = LinkService::new(
        db.clone(),
        trackly,
        Arc::new(KeyCipher::new(&[9; 32], "bench")),
        LinkingConfig::default(),
    );
    for index in 0..users {
        let user_id = 200_000_000_000_000_000 + index;
        fake.add_user(FakeUser::new(user_id, format!("bench{index}")));
        links
            .link(user_id, &bench_key(index), Utc::now())
            .await
            .map_err(|error| anyhow::anyhow!("linking bench user {index}: {error}"))?;
    }

    let config = AlertsConfig {
        digest_window_secs: window,
        all_alerts_channel_id: Some(all_alerts),
        page_size: 500,
        ..AlertsConfig::default()
    };
    let http = Arc::new(
        serenity::HttpBuilder::new("bench-token")
            .proxy(fake.rest_base())
            .ratelimiter_disabled(true)
            .build(),
    );
    let sender = Arc::new(DiscordAlertSender::new(
        http,
        db.clone(),
        GuildConfig::default(),
        Duration::from_secs(10),
    )?);
    let state = Arc::new(AlertsState::new());
    let poller = Arc::new(Poller::new(
        links.clone(),
        Arc::clone(&sender),
        Arc::clone(&state),
        config.clone(),
    ));
    // The first poll only sets the cursor at the newest event.
    Arc::clone(&poller).run_once().await;

    // One critical event in 200, a few payment failures, the rest delivery failures.
    let feed: Vec<_> = (0..events)
        .map(|index| {
            let kind = match index % 200 {
                0 => "service.outage",
                1..=4 => "billing.payment_failed",
                _ => "delivery_failure",
            };
            json!({"id": format!("b{index}"), "type": kind, "data": {
                "to": "+14155551234", "list_number": "+18005551234", "status": "undeliverable",
                "status_detail": "REJECTED_ABSENT_SUBSCRIBER", "provider": "infobip",
                "reason": "card declined", "component": "api"}})
        })
        .collect();
    sim.append_events(ACCOUNT, feed)?;

    let started = Instant::now();
    let status = Arc::clone(&poller).run_once().await;
    let ingest = started.elapsed();
    let deliveries = db.pending_delivery_count().await?;
    println!(
        "ingest: {events} events, {deliveries} deliveries in {:.3} s ({:.0} events/s; poll, route and outbox)",
        ingest.as_secs_f64(),
        events as f64 / ingest.as_secs_f64(),
    );
    assert_eq!(
        status.accounts_polled, 1,
        "the bench account was not polled"
    );

    let shutdown = CancellationToken::new();
    let dispatch_started = Instant::now();
    let dispatcher = Dispatcher::new(db.clone(), Arc::clone(&sender), state, &config);
    let task = tokio::spawn(dispatcher.run(shutdown.clone()));
    while db.pending_delivery_count().await? > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if dispatch_started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("dispatch did not finish within 600 s");
        }
    }
    let dispatch = dispatch_started.elapsed();
    shutdown.cancel();
    let _ = task.await;

    let posts: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|request| {
            request.method == "POST" && request.path.ends_with("/messages") && request.status == 200
        })
        .collect();
    let messages = posts.len();
    let mut busiest_window = 0usize;
    let mut per_channel: HashMap<String, Vec<Instant>> = HashMap::new();
    for post in &posts {
        per_channel
            .entry(post.path.clone())
            .or_default()
            .push(post.at);
    }
    for times in per_channel.values() {
        for (index, start) in times.iter().enumerate() {
            let within = times[index..]
                .iter()
                .take_while(|at| at.duration_since(*start) < Duration::from_secs(5))
                .count();
            busiest_window = busiest_window.max(within);
        }
    }
    let rate = messages as f64 / dispatch.as_secs_f64();
    let total = ingest + dispatch;
    println!(
        "dispatch: {messages} messages for {deliveries} deliveries in {:.2} s ({rate:.1} messages/s)",
        dispatch.as_secs_f64()
    );
    println!(
        "share of Discord's global limit ({DISCORD_GLOBAL_PER_SEC:.0}/s): {:.0}%",
        100.0 * rate / DISCORD_GLOBAL_PER_SEC
    );
    println!(
        "busiest channel: {busiest_window} messages in 5 s ({:.0}% of Discord's {DISCORD_CHANNEL_PER_5S:.0} per 5 s)",
        100.0 * busiest_window as f64 / DISCORD_CHANNEL_PER_5S
    );
    println!(
        "end to end: {events} events in {:.2} s ({:.0} events/s), {} channels, {users} linked users",
        total.as_secs_f64(),
        events as f64 / total.as_secs_f64(),
        per_channel.len()
    );
    fake.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
