//! Scripted errors: status, Discord error code, how many times they apply, and 429 responses;
//! held replies.

mod common;

use std::time::Duration;

use fake_discord::{FakeDiscord, FakeDiscordConfig, FakeUser, HeldReply, ScriptedError};
use serde_json::{json, Value};
use serenity::all::{ChannelId, CreateMessage, UserId};
use serenity::http::HttpError;

use common::{raw_client, serenity_http, BOT_TOKEN};

async fn send_message(fake: &FakeDiscord, channel_id: u64) -> reqwest::Response {
    raw_client()
        .post(format!(
            "{}/api/v10/channels/{channel_id}/messages",
            fake.rest_base()
        ))
        .header("authorization", format!("Bot {BOT_TOKEN}"))
        .json(&json!({"content": "hello"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn scripted_error_applies_times_then_stops() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let general = fake.config().general_channel_id();
    fake.script_error(ScriptedError {
        method: "POST".to_string(),
        path: "/api/v10/channels/*/messages".to_string(),
        status: 403,
        code: 50013,
        message: "Missing Permissions".to_string(),
        times: Some(2),
        retry_after: None,
    });

    for attempt in 1..=2 {
        let response = send_message(&fake, general).await;
        assert_eq!(response.status(), 403, "attempt {attempt}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"code": 50013, "message": "Missing Permissions"})
        );
    }
    let response = send_message(&fake, general).await;
    assert_eq!(response.status(), 200, "{}", fake.request_log());

    let statuses: Vec<u16> = fake
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, vec![403, 403, 200]);
    assert_eq!(
        fake.messages_in(general).len(),
        1,
        "scripted answers store nothing"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn held_reply_acts_before_answering() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let general = fake.config().general_channel_id();
    fake.hold_replies(
        HeldReply::new(
            "POST",
            "/api/v10/channels/*/messages",
            Duration::from_secs(30),
        )
        .times(1),
    );

    // The client gives up long before the reply comes, yet the message exists.
    let request = raw_client()
        .post(format!(
            "{}/api/v10/channels/{general}/messages",
            fake.rest_base()
        ))
        .header("authorization", format!("Bot {BOT_TOKEN}"))
        .timeout(Duration::from_millis(300))
        .json(&json!({"content": "held"}))
        .send()
        .await;
    assert!(request.is_err_and(|error| error.is_timeout()));
    assert_eq!(fake.messages_in(general).len(), 1, "{}", fake.request_log());

    // The hold applied once: the next reply comes at once.
    let response = send_message(&fake, general).await;
    assert_eq!(response.status(), 200);
    assert_eq!(fake.messages_in(general).len(), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn scripted_error_star_matches_segment() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let general = fake.config().general_channel_id();
    fake.script_error(ScriptedError::new(
        "post",
        format!("/api/v10/channels/{general}/messages"),
        404,
        10003,
        "Unknown Channel",
    ));
    fake.script_error(ScriptedError::new("GET", "/api/v10/*", 500, 0, "boom"));

    assert_eq!(send_message(&fake, general).await.status(), 404);
    let other = raw_client()
        .get(format!("{}/api/v10/users/@me", fake.rest_base()))
        .header("authorization", format!("Bot {BOT_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200, "`*` must not span two segments");

    fake.clear_scripted_errors();
    assert_eq!(send_message(&fake, general).await.status(), 200);
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limit_sets_retry_after() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let general = fake.config().general_channel_id();
    fake.script_error(ScriptedError::rate_limited(
        "POST",
        "/api/v10/channels/*/messages",
        0.7,
    ));

    for _ in 0..2 {
        let response = send_message(&fake, general).await;
        assert_eq!(response.status(), 429);
        let header = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_string());
        assert_eq!(header.as_deref(), Some("1"), "whole seconds, rounded up");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["retry_after"], 0.7);
        assert_eq!(body["global"], false);
        assert_eq!(body["message"], "You are being rate limited.");
        assert!(body["code"].is_u64());
    }

    fake.clear_scripted_errors();
    assert_eq!(send_message(&fake, general).await.status(), 200);
    fake.shutdown().await;
}

#[tokio::test]
async fn scripted_error_reaches_serenity_with_code() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    fake.add_user(FakeUser::new(4242, "alice"));
    let http = serenity_http(&fake);
    fake.script_error(
        ScriptedError::new(
            "POST",
            "/api/v10/channels/*/messages",
            403,
            50007,
            "Cannot send messages to this user",
        )
        .times(1),
    );

    let dm = UserId::new(4242).create_dm_channel(&http).await.unwrap();
    let error = ChannelId::new(dm.id.get())
        .send_message(&http, CreateMessage::new().content("Your balance is low"))
        .await
        .unwrap_err();

    let serenity::Error::Http(HttpError::UnsuccessfulRequest(response)) = error else {
        panic!("expected an unsuccessful request, got {error:?}");
    };
    assert_eq!(response.status_code.as_u16(), 403);
    assert_eq!(response.error.code, 50007);
    assert!(fake.dm_messages_to(4242).is_empty());
    fake.shutdown().await;
}
