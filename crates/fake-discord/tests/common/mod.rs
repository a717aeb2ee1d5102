//! Helpers shared by the integration tests.

#![allow(dead_code)]

use fake_discord::FakeDiscord;
use serenity::http::{Http, HttpBuilder};

/// Token the tests give serenity. The fake must never store or print it.
pub const BOT_TOKEN: &str = "fake-bot-token-never-logged";

/// Builds serenity's HTTP client pointed at the fake, as the bot does in production tests:
/// proxy mode with the built-in ratelimiter off, and no system proxy for 127.0.0.1.
pub fn serenity_http(fake: &FakeDiscord) -> Http {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client without proxy builds");
    HttpBuilder::new(BOT_TOKEN)
        .client(client)
        .proxy(fake.rest_base())
        .ratelimiter_disabled(true)
        .build()
}

/// Builds a plain HTTP client for raw requests to the fake.
pub fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client without proxy builds")
}

/// Asserts that serenity's requests matched Discord's OpenAPI description, printing the log
/// otherwise.
pub fn assert_no_violations(fake: &FakeDiscord) {
    let violations = fake.openapi_violations();
    assert!(
        violations.is_empty(),
        "OpenAPI violations:\n{}\n\nrequest log:\n{}",
        violations.join("\n"),
        fake.request_log()
    );
}
