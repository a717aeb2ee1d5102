//! Checks of requests against Discord's OpenAPI description.

mod common;

use std::path::PathBuf;
use std::process::Command;

use fake_discord::{FakeDiscord, FakeDiscordConfig};
use serde_json::{json, Value};

use common::{raw_client, BOT_TOKEN};

/// Starts a fake that must have found the OpenAPI description.
async fn checked_fake() -> FakeDiscord {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    assert!(
        fake.openapi_checked(),
        "the OpenAPI description was not found; restore the bundled copy \
         crates/fake-discord/openapi/discord-openapi.json or set DISCORD_OPENAPI_SPEC to a copy"
    );
    fake
}

async fn post_json(fake: &FakeDiscord, path: &str, body: Value) -> reqwest::Response {
    raw_client()
        .post(format!("{}{path}", fake.rest_base()))
        .header("authorization", format!("Bot {BOT_TOKEN}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn messages_path(fake: &FakeDiscord) -> String {
    format!(
        "/api/v10/channels/{}/messages",
        fake.config().general_channel_id()
    )
}

#[tokio::test]
async fn valid_message_body_passes() {
    let fake = checked_fake().await;
    let body = json!({
        "content": "Your balance is 5",
        "embeds": [{"title": "Usage", "fields": [{"name": "Sent", "value": "5"}], "color": 255}],
        "allowed_mentions": {"parse": []}
    });

    let response = post_json(&fake, &messages_path(&fake), body).await;

    assert_eq!(response.status(), 200, "{}", fake.request_log());
    assert!(
        fake.openapi_violations().is_empty(),
        "{:?}",
        fake.openapi_violations()
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn content_as_number_is_flagged() {
    let fake = checked_fake().await;
    let path = messages_path(&fake);

    post_json(
        &fake,
        &path,
        json!({"content": 5, "embeds": [{"title": "x"}]}),
    )
    .await;

    let violations = fake.openapi_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].starts_with(&format!("POST {path}: ")),
        "{violations:?}"
    );
    assert!(violations[0].contains("body/content"), "{violations:?}");
    assert!(
        fake.request_log().contains(&violations[0]),
        "the log shows the violation"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn interaction_callback_body_is_checked() {
    let fake = checked_fake().await;

    // The interaction is unknown, but the body is still checked.
    let path = "/api/v10/interactions/1/token/callback";
    let response = post_json(&fake, path, json!({"type": 3})).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 10062);

    post_json(
        &fake,
        path,
        json!({"type": 4, "data": {"content": 5, "flags": 64}}),
    )
    .await;

    let violations = fake.openapi_violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations[0].starts_with(&format!("POST {path}: ")),
        "{violations:?}"
    );
    assert!(violations[0].contains("body/type"), "{violations:?}");
    assert!(violations[1].contains("body/data"), "{violations:?}");
    assert!(
        violations[1].contains("closest alternative: CreateMessageInteractionCallbackRequest"),
        "{violations:?}"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn unknown_route_is_flagged() {
    let fake = checked_fake().await;
    let client = raw_client();
    let general = fake.config().general_channel_id();

    let not_in_spec = format!("/api/v10/channels/{general}/nope");
    let response = client
        .get(format!("{}{not_in_spec}", fake.rest_base()))
        .header("authorization", format!("Bot {BOT_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"code": 0, "message": "404: Not Found"}));

    // In the description, but not implemented by the fake.
    let typing = format!("/api/v10/channels/{general}/typing");
    let response = client
        .post(format!("{}{typing}", fake.rest_base()))
        .header("authorization", format!("Bot {BOT_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let violations = fake.openapi_violations();
    assert!(
        violations.contains(&format!("GET {not_in_spec}: unhandled route")),
        "{violations:?}"
    );
    assert!(
        violations.contains(&format!(
            "GET {not_in_spec}: no path in the OpenAPI description matches"
        )),
        "{violations:?}"
    );
    assert!(
        violations.contains(&format!("POST {typing}: unhandled route")),
        "{violations:?}"
    );
    assert_eq!(violations.len(), 3, "{violations:?}");
    fake.shutdown().await;
}

#[tokio::test]
async fn multipart_payload_json_is_checked() {
    let fake = checked_fake().await;
    let url = format!("{}{}", fake.rest_base(), messages_path(&fake));
    let upload = |payload: Value| {
        let file = reqwest::multipart::Part::bytes(b"log".to_vec()).file_name("log.txt");
        let form = reqwest::multipart::Form::new()
            .text("payload_json", payload.to_string())
            .part("files[0]", file);
        raw_client()
            .post(&url)
            .header("authorization", format!("Bot {BOT_TOKEN}"))
            .multipart(form)
            .send()
    };

    let valid =
        upload(json!({"content": "log", "attachments": [{"id": 0, "filename": "log.txt"}]}));
    assert_eq!(valid.await.unwrap().status(), 200);
    assert!(
        fake.openapi_violations().is_empty(),
        "{:?}",
        fake.openapi_violations()
    );

    upload(json!({"content": 7})).await.unwrap();
    let violations = fake.openapi_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("body/content"), "{violations:?}");

    let messages = fake.messages_in(fake.config().general_channel_id());
    assert_eq!(messages[0]["attachments"][0]["filename"], "log.txt");
    fake.shutdown().await;
}

/// Environment variable that makes `missing_spec_child` run its scenario.
const CHILD_ENV: &str = "FAKE_DISCORD_MISSING_SPEC_CHILD";

fn missing_spec_path() -> PathBuf {
    PathBuf::from("/nonexistent/fake-discord/discord-openapi.json")
}

/// Runs in a separate process (started by `missing_spec_skips_with_one_notice`) so that the
/// notice it prints can be read from stderr.
#[tokio::test]
#[ignore = "started as a child process by missing_spec_skips_with_one_notice"]
async fn missing_spec_child() {
    assert!(
        std::env::var_os(CHILD_ENV).is_some(),
        "run through missing_spec_skips_with_one_notice"
    );
    let config = FakeDiscordConfig {
        openapi_spec: Some(missing_spec_path()),
        ..FakeDiscordConfig::default()
    };

    for _ in 0..2 {
        let fake = FakeDiscord::start(config.clone()).await.unwrap();
        assert!(!fake.openapi_checked());

        post_json(
            &fake,
            &messages_path(&fake),
            json!({"content": 5, "embeds": [{"title": "x"}]}),
        )
        .await;
        assert!(
            fake.openapi_violations().is_empty(),
            "{:?}",
            fake.openapi_violations()
        );
        fake.shutdown().await;
    }
}

#[test]
fn missing_spec_skips_with_one_notice() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "missing_spec_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(
        output.status.success(),
        "child failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run\n{stdout}"
    );
    let notice = format!(
        "OpenAPI check skipped: {} not found",
        missing_spec_path().display()
    );
    assert_eq!(stderr.matches(&notice).count(), 1, "stderr:\n{stderr}");
}
