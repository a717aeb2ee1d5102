//! Waits and early errors: the errors a test gets when the bot does not do what it expects.

mod common;

use std::time::Duration;

use fake_discord::{FakeDiscord, FakeDiscordConfig, FakeUser, InteractionRef, SlashCommand};

use common::{raw_client, BOT_TOKEN};

const SHORT: Duration = Duration::from_millis(200);

#[tokio::test]
async fn wait_for_ready_times_out_with_log() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    raw_client()
        .get(format!("{}/api/v10/gateway", fake.rest_base()))
        .send()
        .await
        .unwrap();

    let error = fake.wait_for_ready(SHORT).await.unwrap_err().to_string();

    assert!(error.contains("timed out after 200ms"), "{error}");
    assert!(error.contains("IDENTIFY"), "{error}");
    assert!(
        error.contains("GET /api/v10/gateway -> 200"),
        "the log is attached: {error}"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn send_command_needs_ready_session() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let command = SlashCommand {
        user: FakeUser::new(4242, "alice"),
        guild_id: Some(fake.config().guild_id),
        channel_id: fake.config().general_channel_id(),
        name: "sms".to_string(),
        subcommand: None,
        options: Vec::new(),
        member_roles: Vec::new(),
    };

    let error = fake.send_command(command).await.unwrap_err().to_string();

    assert!(error.contains("call wait_for_ready first"), "{error}");
    fake.shutdown().await;
}

#[tokio::test]
async fn wait_for_interaction_reports_unknown_id() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let unknown = InteractionRef {
        id: 1,
        token: "t".to_string(),
    };

    let error = fake
        .wait_for_interaction(&unknown, SHORT, |_| true)
        .await
        .unwrap_err()
        .to_string();

    assert!(error.contains("never dispatched"), "{error}");
    assert!(fake.interaction(1).is_none());
    fake.shutdown().await;
}

#[tokio::test]
async fn wait_for_request_past_and_future() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();
    let client = raw_client();
    let get = |path: &'static str| {
        client
            .get(format!("{}{path}", fake.rest_base()))
            .header("authorization", format!("Bot {BOT_TOKEN}"))
            .send()
    };
    get("/api/v10/users/@me").await.unwrap();

    // The predicate may call back into the fake without deadlocking.
    let past = fake
        .wait_for_request(SHORT, |request| {
            !fake.requests().is_empty() && request.path == "/api/v10/users/@me"
        })
        .await
        .unwrap();
    assert_eq!(past.status, 200);
    assert!(past.authorization_present);

    let waiting = fake.wait_for_request(Duration::from_secs(5), |request| {
        request.path == "/api/v10/oauth2/applications/@me"
    });
    let (found, response) = tokio::join!(waiting, get("/api/v10/oauth2/applications/@me"));
    assert_eq!(response.unwrap().status(), 200);
    assert_eq!(found.unwrap().method, "GET");

    let error = fake
        .wait_for_request(SHORT, |request| request.method == "DELETE")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("a matching request"), "{error}");
    fake.shutdown().await;
}

#[tokio::test]
async fn missing_authorization_is_rejected() {
    let fake = FakeDiscord::start(FakeDiscordConfig::default())
        .await
        .unwrap();

    let response = raw_client()
        .get(format!("{}/api/v10/users/@me", fake.rest_base()))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    let recorded = fake.requests();
    assert!(!recorded[0].authorization_present);
    assert_eq!(recorded[0].status, 401);
    fake.shutdown().await;
}
