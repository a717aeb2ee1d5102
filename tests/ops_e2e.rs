//! Operating the bot: health and metrics over HTTP, and graceful shutdown on SIGTERM.

mod common;

use common::{final_text, Harness, Options};

const CAROL: u64 = 100_000_000_000_000_003;

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
}
