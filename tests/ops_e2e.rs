//! Operating the bot: health and metrics over HTTP, graceful shutdown on SIGTERM and Ctrl-C
//! (SIGINT), and what it does when Discord rejects its token or cannot be reached.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{final_text, query_i64, test_key, Harness, Options};
use fake_discord::{HeldReply, ScriptedError};
use serde_json::json;

const ALICE: u64 = 100_000_000_000_000_001;
const CAROL: u64 = 100_000_000_000_000_003;
const ACME: &str = "acc_8f2k1q";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_served() {
    let harness = Harness::start_with(Options {
        health_server: true,
        ..Options::default()
    })
    .await;
    let text = final_text(&harness.run_sms(CAROL, "ping", vec![]).await);
    assert!(text.contains("Pong"), "{text}");

    let base = format!("http://{}", harness.health_addr());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["gateway"], "connected");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("trackly_bot_commands_total{command=\"sms ping\"} 1"),
        "{metrics}"
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly() {
    let mut harness = Harness::start().await;
    let text = final_text(&harness.run_sms(CAROL, "ping", vec![]).await);
    assert!(text.contains("Pong"), "{text}");

    let status = harness.terminate_bot().await;
    assert!(
        status.success(),
        "exit status {status}\n{}",
        harness.tail_logs()
    );
    let logs = harness.logs();
    assert!(logs.contains("received SIGTERM"), "{}", harness.tail_logs());
    assert!(
        logs.contains("trackly-bot stopped"),
        "{}",
        harness.tail_logs()
    );
    harness.finish().await;
}

/// Ctrl-C while an alert is being sent: the send finishes within the grace time and is recorded
/// as sent, and the database is closed cleanly, which removes its WAL file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_lets_an_alert_in_flight_finish() {
    let options = Options {
        acme_keys: vec!["AcmeOwner"],
        ..Options::default()
    };
    let mut harness = Harness::start_with_setup(options, |_| {
        "[alerts]\npoll_interval_ms = 200\nshutdown_grace_ms = 8000\n".to_owned()
    })
    .await;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    let db = harness.db_path();
    let cursor_sql = format!(
        "SELECT COUNT(*) FROM alert_cursors WHERE account_id = '{ACME}' AND cursor IS NOT NULL"
    );
    harness
        .wait_for_db(
            "the poller never stored the feed cursor",
            &cursor_sql,
            |n| n > 0,
        )
        .await;

    let dm_path = format!(
        "/api/v10/channels/{}/messages",
        harness.discord.dm_channel_id(ALICE)
    );
    harness.discord.hold_replies(HeldReply::new(
        "POST",
        dm_path.clone(),
        Duration::from_millis(1500),
    ));
    harness
        .sim
        .append_events(
            ACME,
            vec![json!({"id": "q1", "type": "billing.payment_failed",
                        "data": {"reason": "card declined"}})],
        )
        .unwrap();
    harness
        .discord
        .wait_for_request(Duration::from_secs(20), |request| {
            request.method == "POST" && request.path == dm_path
        })
        .await
        .expect("the DM is in flight");
    assert_eq!(harness.discord.dm_messages_to(ALICE).len(), 1);

    let status = harness.signal_bot("INT").await;
    assert!(
        status.success(),
        "exit status {status}\n{}",
        harness.tail_logs()
    );
    let logs = harness.logs();
    assert!(logs.contains("received Ctrl-C"), "{}", harness.tail_logs());
    assert!(
        !logs.contains("did not stop within the grace time"),
        "{}",
        harness.tail_logs()
    );
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    assert!(
        !Path::new(&wal).exists(),
        "the database was not closed cleanly: its WAL file is left"
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT COUNT(*) FROM alert_deliveries WHERE target_kind = 'dm' AND status = 'sent'"
        )
        .await,
        1,
        "the DM in flight at Ctrl-C was recorded as sent\n{}",
        harness.tail_logs()
    );
    assert_eq!(harness.discord.dm_messages_to(ALICE).len(), 1);
    harness.finish().await;
}

fn unready() -> Options {
    Options {
        wait_until_ready: false,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_token_stops_with_advice() {
    let mut harness = Harness::start_with_setup(unready(), |discord| {
        discord.script_error(ScriptedError::new(
            "GET",
            "/api/v10/users/@me",
            401,
            0,
            "401: Unauthorized",
        ));
        String::new()
    })
    .await;
    let status = harness.wait_for_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(1), "{}", harness.tail_logs());
    let logs = harness.logs();
    assert!(
        logs.contains("Discord rejected DISCORD_TOKEN") && logs.contains("developer portal"),
        "{}",
        harness.tail_logs()
    );
    assert!(!logs.contains("panicked"), "{}", harness.tail_logs());
    assert!(
        !harness
            .discord
            .requests()
            .iter()
            .any(|request| request.path.ends_with("/commands")),
        "the bot went on after Discord rejected its token"
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_discord_is_retried_until_it_answers() {
    let harness = Harness::start_with_setup(unready(), |discord| {
        discord.script_error(
            ScriptedError::new("GET", "/api/v10/gateway", 503, 0, "Service Unavailable").times(2),
        );
        String::new()
    })
    .await;
    harness
        .discord
        .wait_for_commands(Duration::from_secs(20))
        .await
        .expect("the bot connects once Discord answers");
    let logs = harness.logs();
    assert_eq!(
        logs.matches("cannot reach Discord").count(),
        2,
        "{}",
        harness.tail_logs()
    );
    assert!(
        logs.contains("Discord can be reached again"),
        "{}",
        harness.tail_logs()
    );
    let text = final_text(&harness.run_sms(CAROL, "ping", vec![]).await);
    assert!(text.contains("Pong"), "{text}");
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_wait_for_discord() {
    let mut harness = Harness::start_with_setup(
        Options {
            health_server: true,
            ..unready()
        },
        |discord| {
            discord.script_error(ScriptedError::new(
                "GET",
                "/api/v10/users/@me",
                502,
                0,
                "Bad Gateway",
            ));
            String::new()
        },
    )
    .await;
    harness.wait_for_log("cannot reach Discord").await;

    // Probes reach the health server while the bot waits for Discord.
    harness.wait_for_log("health server listening").await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let health: serde_json::Value = client
        .get(format!("http://{}/healthz", harness.health_addr()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["gateway"], "disconnected", "{health}");

    let started = Instant::now();
    let status = harness.terminate_bot().await;
    assert!(status.success(), "{status}\n{}", harness.tail_logs());
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "stopping took {:?}",
        started.elapsed()
    );
    let logs = harness.logs();
    assert!(
        logs.contains("stopped before connecting to Discord"),
        "{}",
        harness.tail_logs()
    );
    harness.finish().await;
}

/// While the gateway refuses connections serenity waits to reconnect with no shard running,
/// and its shutdown alone never ends the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_during_a_gateway_outage() {
    let mut harness = Harness::start_with_setup(unready(), |discord| {
        discord.refuse_gateway(true);
        String::new()
    })
    .await;
    let started = Instant::now();
    while !harness.discord.request_log().contains("connection refused") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the bot never tried the gateway\n{}",
            harness.discord.request_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let status = harness.terminate_bot().await;
    assert!(status.success(), "{status}\n{}", harness.tail_logs());
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "stopping took {:?}",
        started.elapsed()
    );
    assert!(
        harness.logs().contains("trackly-bot stopped"),
        "{}",
        harness.tail_logs()
    );
    harness.finish().await;
}

/// Returns the number of interaction callbacks the bot has made so far.
fn callbacks(harness: &Harness) -> usize {
    harness
        .discord
        .requests()
        .iter()
        .filter(|request| request.method == "POST" && request.path.ends_with("/callback"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_errors_are_sorted() {
    let harness = Harness::start().await;
    let callback = "/api/v10/interactions/*/*/callback";

    // An interaction that expired before the reply is ignored: no retry, no error report.
    harness.discord.script_error(
        ScriptedError::new("POST", callback, 404, 10062, "Unknown interaction").times(1),
    );
    let before = callbacks(&harness);
    harness
        .discord
        .send_command(harness.sms(CAROL, "ping", vec![]))
        .await
        .unwrap();
    harness.wait_for_log("command error ignored").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        callbacks(&harness),
        before + 1,
        "the bot retried an expired reply"
    );
    assert!(!harness.logs().contains("command failed"));

    // A fault on the bot's side is logged, and the user gets a reference to quote.
    harness.discord.script_error(
        ScriptedError::new("POST", callback, 500, 0, "Internal Server Error").times(1),
    );
    let sent = harness
        .discord
        .send_command(harness.sms(CAROL, "ping", vec![]))
        .await
        .unwrap();
    let text = final_text(&harness.wait_final(&sent).await);
    assert!(
        text.contains("Something went wrong on our side") && text.contains("reference"),
        "{text}"
    );
    assert!(
        harness.logs().contains("command failed"),
        "{}",
        harness.tail_logs()
    );

    let text = final_text(&harness.run_sms(CAROL, "ping", vec![]).await);
    assert!(text.contains("Pong"), "{text}");
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_start_waits_for_retry_after() {
    let harness = Harness::start_with_setup(unready(), |discord| {
        discord
            .script_error(ScriptedError::rate_limited("GET", "/api/v10/users/@me", 1.5).times(1));
        String::new()
    })
    .await;
    harness
        .discord
        .wait_for_commands(Duration::from_secs(20))
        .await
        .expect("the bot connects after the rate limit");
    let calls: Vec<Instant> = harness
        .discord
        .requests()
        .iter()
        .filter(|request| request.path == "/api/v10/users/@me")
        .map(|request| request.at)
        .collect();
    assert!(calls.len() >= 2, "{calls:?}");
    assert!(
        calls[1] - calls[0] >= Duration::from_millis(1500),
        "the retry came before Retry-After: {:?}",
        calls[1] - calls[0]
    );
    assert!(
        harness.logs().contains("Discord rate limited the start"),
        "{}",
        harness.tail_logs()
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_rest_base_stops_with_advice() {
    let mut harness = Harness::start_with_setup(unready(), |discord| {
        discord.script_error(ScriptedError::new(
            "GET",
            "/api/v10/users/@me",
            404,
            0,
            "404: Not Found",
        ));
        String::new()
    })
    .await;
    let status = harness.wait_for_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(1), "{}", harness.tail_logs());
    assert!(
        harness.logs().contains("check discord.rest_base_url"),
        "{}",
        harness.tail_logs()
    );
    harness.finish().await;
}
