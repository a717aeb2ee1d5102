//! Alerts end to end: the real bot binary polls the Trackly simulator's feed and delivers
//! alerts to the fake Discord's DMs and channels.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{final_text, query_i64, test_key, Harness, Options};
use fake_discord::{ButtonClick, FakeDiscord, HeldReply, OptionValue, ScriptedError, SlashCommand};
use serde_json::{json, Value};

const ALICE: u64 = 100_000_000_000_000_001;
const BOB: u64 = 100_000_000_000_000_002;
const CAROL: u64 = 100_000_000_000_000_003;
const DAVE: u64 = 100_000_000_000_000_004;

const ACME: &str = "acc_8f2k1q";
const BETA: &str = "acc_b3t4";

// poise registers choice options as integers: the index of the choice.
const SEVERITY_HIGH: i64 = 2;

/// Time for alerts to arrive in these tests, pacing included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(25);

struct AlertsHarness {
    harness: Harness,
    all_alerts: u64,
    billing_alerts: u64,
}

/// Starts the bot with fast polling, the two internal channels, and `extra` appended to the
/// `[alerts]` section.
async fn start(acme_keys: Vec<&'static str>, extra: &str) -> AlertsHarness {
    let options = Options {
        acme_keys,
        ..Options::default()
    };
    let mut ids = (0, 0);
    let extra = extra.to_owned();
    let harness = Harness::start_with_setup(options, |fake: &FakeDiscord| {
        ids.0 = fake.add_channel("all-alerts", 0, None);
        ids.1 = fake.add_channel("billing-alerts", 0, None);
        format!(
            "[alerts]\npoll_interval_ms = 200\npoll_timeout_ms = 10000\n\
             all_alerts_channel_id = {}\nbilling_alerts_channel_id = {}\n\
             global_messages_per_sec = 50\nchannel_messages_per_5s = 5\n{extra}\n",
            ids.0, ids.1
        )
    })
    .await;
    AlertsHarness {
        harness,
        all_alerts: ids.0,
        billing_alerts: ids.1,
    }
}

fn event(id: &str, kind: &str, data: Value) -> Value {
    json!({"id": id, "type": kind, "data": data})
}

fn failure_data() -> Value {
    json!({"message_id": "AbC12345", "to": "+14155551234", "list_number": "+18005551234",
           "status": "undeliverable", "status_detail": "REJECTED_ABSENT_SUBSCRIBER",
           "provider": "infobip"})
}

/// Returns the event id of each single-alert message, read from the embed footer
/// `Severity: … · event <id>`; digests are skipped.
fn alert_ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|message| message["embeds"][0]["footer"]["text"].as_str())
        .filter_map(|footer| footer.split(" · event ").nth(1))
        .map(str::to_owned)
        .collect()
}

fn digests(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|message| {
            message["embeds"][0]["footer"]["text"]
                .as_str()
                .is_some_and(|footer| footer.starts_with("Digest of "))
        })
        .collect()
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    ids.sort();
    ids
}

fn sorted_ids(messages: &[Value]) -> Vec<String> {
    let mut ids = alert_ids(messages);
    ids.sort();
    ids
}

async fn sqlite(path: &Path) -> sqlx::SqlitePool {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(5));
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("test opens the bot database")
}

impl AlertsHarness {
    fn discord(&self) -> &FakeDiscord {
        &self.harness.discord
    }

    async fn alerts(
        &self,
        user_id: u64,
        subcommand: &str,
        options: Vec<(&str, OptionValue)>,
    ) -> String {
        let command = SlashCommand {
            user: common::user(user_id),
            guild_id: Some(self.harness.guild_id()),
            channel_id: self.harness.channel_id,
            name: "alerts".to_owned(),
            subcommand: Some(subcommand.to_owned()),
            options: options
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            member_roles: Vec::new(),
        };
        let sent = self
            .discord()
            .send_command(command)
            .await
            .expect("interaction sent");
        let record = self.harness.wait_final(&sent).await;
        assert!(record.is_ephemeral(), "/alerts replies must be ephemeral");
        final_text(&record)
    }

    /// Waits until the account's feed cursor is stored, so events appended afterwards are read.
    async fn wait_cursor(&self, account_id: &str) {
        let sql = format!(
            "SELECT COUNT(*) FROM alert_cursors WHERE account_id = '{account_id}' AND cursor IS NOT NULL"
        );
        let failure = format!("the poller never initialised the cursor of {account_id}");
        self.harness.wait_for_db(&failure, &sql, |n| n > 0).await;
    }

    fn account_channel(&self, account_id: &str) -> u64 {
        let slug = account_id.to_owned();
        self.discord()
            .guild_channels()
            .iter()
            .find(|channel| {
                channel["parent_id"].as_str() == Some(&self.harness.category_id.to_string())
                    && channel["name"]
                        .as_str()
                        .is_some_and(|name| name.ends_with(&slug))
            })
            .and_then(|channel| channel["id"].as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("no account channel for {account_id}"))
    }

    /// Waits until `check` holds for the fake's current state, failing with the request log.
    async fn wait_until(&self, what: &str, check: impl Fn(&FakeDiscord) -> bool) {
        let started = Instant::now();
        while !check(self.discord()) {
            if started.elapsed() > DELIVERY_TIMEOUT {
                panic!(
                    "timed out waiting for {what}\n--- requests ---\n{}\n--- bot log ---\n{}",
                    self.discord().request_log(),
                    self.harness.tail_logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn posts_to(&self, channel_id: u64) -> Vec<fake_discord::RecordedRequest> {
        let path = format!("/api/v10/channels/{channel_id}/messages");
        self.discord()
            .requests()
            .into_iter()
            .filter(|request| request.method == "POST" && request.path == path)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_type_routed_by_preferences() {
    let setup = start(
        vec!["AcmeOwner", "AcmeMember", "AcmeThird"],
        "digest_threshold = 100",
    )
    .await;
    let harness = &setup.harness;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    harness.link(BOB, &test_key("AcmeMember")).await;
    harness.link(CAROL, &test_key("AcmeThird")).await;

    let text = setup
        .alerts(
            ALICE,
            "configure",
            vec![
                ("inbound_sms", OptionValue::Boolean(true)),
                ("billing", OptionValue::Boolean(false)),
            ],
        )
        .await;
    assert!(text.contains("Inbound SMS: on"), "{text}");
    assert!(text.contains("Billing: off"), "{text}");
    assert!(
        text.contains("Delivery failures: on"),
        "only given options change: {text}"
    );
    let text = setup
        .alerts(
            BOB,
            "configure",
            vec![("minimum_severity", OptionValue::Integer(SEVERITY_HIGH))],
        )
        .await;
    assert!(text.contains("Minimum severity: high"), "{text}");
    let text = setup
        .alerts(
            CAROL,
            "mute",
            vec![("duration", OptionValue::String("2h".into()))],
        )
        .await;
    assert!(text.contains("Alerts muted until"), "{text}");
    setup.wait_cursor(ACME).await;

    harness
        .sim
        .append_events(
            ACME,
            vec![
                event("e01", "delivery_failure", failure_data()),
                event("e02", "opt_out", json!({"phone_number": "+14155550001", "list_number": "+18005551234", "keyword": "STOP"})),
                event("e03", "inbound_sms", json!({"phone_number": "+14155550002", "list_number": "+18005551234", "body": "hi"})),
                event("e04", "spam_complaint", json!({"message_id": "M1", "to": "+14155550003", "list_number": "+18005551234", "status_detail": "REJECTED_SPAM"})),
                event("e05", "billing.payment_succeeded", json!({"amount": {"amount": "10.00", "currency": "USD"}, "invoice_id": "inv_1"})),
                event("e06", "billing.payment_failed", json!({"amount": {"amount": "99.00", "currency": "USD"}, "reason": "card declined", "next_retry_at": "2026-12-05T00:00:00Z"})),
                event("e07", "billing.usage_threshold", json!({"segments": 10000, "threshold": 10000})),
                event("e08", "service.high_error_rate", json!({"list_number": "+18005551234", "error_rate": 0.12, "window_minutes": 15})),
                event("e09", "service.outage", json!({"component": "sms-gateway", "summary": "Sending is delayed"})),
                event("e10", "carrier.new_kind", json!({"note": "first"})),
                json!({"id": "e11", "type": "opt_out", "severity": "critical", "data": {"phone_number": "+14155550004"}}),
                event("e12", "carrier.new_kind", json!({"note": "second"})),
            ],
        )
        .expect("events appended");

    let account_channel = setup.account_channel(ACME);
    let expected: Vec<(&str, u64, Vec<String>)> = vec![
        (
            "Alice's DMs",
            0,
            sorted(&[
                "e01", "e02", "e03", "e04", "e08", "e09", "e10", "e11", "e12",
            ]),
        ),
        ("Bob's DMs", 0, sorted(&["e04", "e06", "e08", "e09", "e11"])),
        ("Carol's DMs", 0, sorted(&["e04", "e09", "e11"])),
        (
            "the account channel",
            account_channel,
            sorted(&[
                "e01", "e02", "e04", "e05", "e06", "e07", "e08", "e09", "e10", "e11", "e12",
            ]),
        ),
        (
            "all-alerts",
            setup.all_alerts,
            sorted(&["e04", "e09", "e11"]),
        ),
        (
            "billing-alerts",
            setup.billing_alerts,
            sorted(&["e04", "e06"]),
        ),
    ];
    let messages_of = |discord: &FakeDiscord, name: &str, channel: u64| match name {
        "Alice's DMs" => discord.dm_messages_to(ALICE),
        "Bob's DMs" => discord.dm_messages_to(BOB),
        "Carol's DMs" => discord.dm_messages_to(CAROL),
        _ => discord.messages_in(channel),
    };
    for (name, channel, ids) in &expected {
        setup
            .wait_until(name, |discord| {
                alert_ids(&messages_of(discord, name, *channel)).len() >= ids.len()
            })
            .await;
    }
    // Anything extra would arrive within this pause.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, channel, ids) in &expected {
        let messages = messages_of(setup.discord(), name, *channel);
        assert_eq!(&sorted_ids(&messages), ids, "{name} got the wrong alerts");
    }

    let alice = setup.discord().dm_messages_to(ALICE);
    let button = &alice[0]["components"][0]["components"][0];
    assert_eq!(button["custom_id"], format!("alerts:mute1h:{ALICE}"));
    assert_eq!(button["label"], "Mute 1 h");
    let channel_message = &setup.discord().messages_in(account_channel)[0];
    assert!(
        channel_message["components"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "only DMs carry the mute button"
    );
    let all_text = serde_json::to_string(&setup.discord().messages_in(setup.all_alerts)).unwrap();
    assert!(
        all_text.contains(ACME),
        "internal copies carry the account id"
    );
    assert!(
        all_text.contains("Acme Promotions"),
        "internal copies carry the account name"
    );
    assert!(
        !all_text.contains("+14155550003"),
        "recipient numbers are masked"
    );
    assert!(all_text.contains("0003"), "the last 4 digits stay visible");

    let logs = harness.logs();
    assert_eq!(
        logs.matches("unknown event type").count(),
        1,
        "an unknown type is logged once"
    );
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_event_delivered_once() {
    let setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;
    let account_channel = setup.account_channel(ACME);

    let first = event("dup1", "delivery_failure", failure_data());
    setup
        .harness
        .sim
        .append_events(ACME, vec![first.clone(), first.clone()])
        .unwrap();
    setup
        .wait_until("the first alert", |d| !d.dm_messages_to(ALICE).is_empty())
        .await;
    let second = event("dup2", "delivery_failure", failure_data());
    setup
        .harness
        .sim
        .append_events(ACME, vec![first, second])
        .unwrap();
    setup
        .wait_until("the second alert in both places", |d| {
            alert_ids(&d.dm_messages_to(ALICE)).contains(&"dup2".to_owned())
                && alert_ids(&d.messages_in(account_channel)).contains(&"dup2".to_owned())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert_eq!(
        sorted_ids(&setup.discord().dm_messages_to(ALICE)),
        sorted(&["dup1", "dup2"])
    );
    assert_eq!(
        sorted_ids(&setup.discord().messages_in(account_channel)),
        sorted(&["dup1", "dup2"])
    );
    let stored = query_i64(
        &setup.harness.db_path(),
        "SELECT COUNT(*) FROM alert_events WHERE event_id = 'dup1'",
    )
    .await;
    assert_eq!(stored, 1);
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_send_delivers_once() {
    let mut setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;
    let account_channel = setup.account_channel(ACME);

    // Every message fails while the events are fetched, so they sit in the outbox.
    setup.discord().script_error(ScriptedError::new(
        "POST",
        "/api/v10/channels/*/messages",
        503,
        0,
        "Service Unavailable",
    ));
    setup
        .harness
        .sim
        .append_events(
            ACME,
            vec![
                event("k1", "delivery_failure", failure_data()),
                event(
                    "k2",
                    "spam_complaint",
                    json!({"to": "+14155550003", "status_detail": "REJECTED_SPAM"}),
                ),
                event(
                    "k3",
                    "billing.payment_failed",
                    json!({"reason": "card declined"}),
                ),
            ],
        )
        .unwrap();
    // Alice: k1, k2, k3; account channel: k1, k2, k3; all-alerts: k2; billing-alerts: k2, k3.
    let db = setup.harness.db_path();
    setup
        .harness
        .wait_for_db(
            "the events never reached the outbox",
            "SELECT COUNT(*) FROM alert_deliveries WHERE status = 'pending'",
            |n| n >= 9,
        )
        .await;
    setup
        .wait_until("a failed send attempt", |d| {
            d.requests()
                .iter()
                .any(|r| r.method == "POST" && r.path.ends_with("/messages") && r.status == 503)
        })
        .await;
    assert_eq!(setup.discord().dm_messages_to(ALICE).len(), 0);

    setup.harness.restart_bot().await;
    setup.discord().clear_scripted_errors();

    let expected = [
        ("Alice", sorted(&["k1", "k2", "k3"])),
        ("account channel", sorted(&["k1", "k2", "k3"])),
        ("all-alerts", sorted(&["k2"])),
        ("billing-alerts", sorted(&["k2", "k3"])),
    ];
    let messages = |d: &FakeDiscord, name: &str| match name {
        "Alice" => d.dm_messages_to(ALICE),
        "account channel" => d.messages_in(account_channel),
        "all-alerts" => d.messages_in(setup.all_alerts),
        _ => d.messages_in(setup.billing_alerts),
    };
    for (name, ids) in &expected {
        setup
            .wait_until(name, |d| alert_ids(&messages(d, name)).len() >= ids.len())
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (name, ids) in &expected {
        assert_eq!(&sorted_ids(&messages(setup.discord(), name)), ids, "{name}");
    }
    let total: usize = expected
        .iter()
        .map(|(name, _)| messages(setup.discord(), name).len())
        .sum();
    assert_eq!(total, 9, "exactly one message per delivery");
    assert_eq!(
        query_i64(
            &db,
            "SELECT COUNT(*) FROM alert_deliveries WHERE status != 'sent'"
        )
        .await,
        0
    );
    setup.harness.finish().await;
}

/// The crash window after Discord created a message but before the bot recorded it as sent:
/// the restarted bot sends it again with the same nonce, and Discord returns the first message
/// instead of creating a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_discord_created_message_delivers_once() {
    let mut setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;
    let account_channel = setup.account_channel(ACME);
    let dm_channel = setup.discord().dm_channel_id(ALICE);
    setup.discord().hold_replies(HeldReply::new(
        "POST",
        format!("/api/v10/channels/{dm_channel}/messages"),
        Duration::from_secs(120),
    ));

    setup
        .harness
        .sim
        .append_events(ACME, vec![event("n1", "delivery_failure", failure_data())])
        .unwrap();
    setup
        .wait_until("the DM created while its reply is held", |d| {
            d.dm_messages_to(ALICE).len() == 1
        })
        .await;
    let db = setup.harness.db_path();
    assert_eq!(
        query_i64(
            &db,
            "SELECT COUNT(*) FROM alert_deliveries WHERE target_kind = 'dm' AND status = 'pending'"
        )
        .await,
        1,
        "the bot has not heard back, so the DM delivery is still pending"
    );

    setup.harness.restart_bot().await;
    setup.discord().clear_held_replies();
    let dm_path = format!("/api/v10/channels/{dm_channel}/messages");
    setup
        .wait_until("the DM sent again after the restart", |d| {
            d.requests()
                .iter()
                .filter(|r| r.method == "POST" && r.path == dm_path)
                .count()
                >= 2
        })
        .await;
    setup
        .harness
        .wait_for_db(
            "deliveries never marked sent",
            "SELECT COUNT(*) FROM alert_deliveries WHERE status != 'sent'",
            |n| n == 0,
        )
        .await;

    let posts: Vec<Value> = setup
        .discord()
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == dm_path)
        .filter_map(|r| r.body)
        .collect();
    assert!(
        posts
            .iter()
            .all(|body| body["enforce_nonce"] == true && body["nonce"] == posts[0]["nonce"]),
        "every attempt carries the same enforced nonce: {posts:?}"
    );
    assert_eq!(alert_ids(&setup.discord().dm_messages_to(ALICE)), ["n1"]);
    assert_eq!(
        alert_ids(&setup.discord().messages_in(account_channel)),
        ["n1"]
    );
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_dms_fall_back_and_429_waits() {
    let setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup
        .alerts(
            ALICE,
            "configure",
            vec![("inbound_sms", OptionValue::Boolean(true))],
        )
        .await;
    setup.wait_cursor(ACME).await;
    let account_channel = setup.account_channel(ACME);
    let dm_channel = setup.discord().dm_channel_id(ALICE);
    setup.discord().script_error(ScriptedError::new(
        "POST",
        format!("/api/v10/channels/{dm_channel}/messages"),
        403,
        50007,
        "Cannot send messages to this user",
    ));

    // Inbound SMS is off for the account channel, so it shows there only as the fallback.
    let inbound = |id: &str| {
        event(
            id,
            "inbound_sms",
            json!({"phone_number": "+14155550002", "list_number": "+18005551234", "body": "hello"}),
        )
    };
    setup
        .harness
        .sim
        .append_events(ACME, vec![inbound("i1")])
        .unwrap();
    setup
        .wait_until("the fallback in the account channel", |d| {
            alert_ids(&d.messages_in(account_channel)).contains(&"i1".to_owned())
        })
        .await;
    let db = setup.harness.db_path();
    assert_eq!(
        query_i64(
            &db,
            &format!("SELECT dm_closed FROM alert_preferences WHERE discord_user_id = {ALICE}")
        )
        .await,
        1,
        "the user is marked"
    );

    setup
        .harness
        .sim
        .append_events(ACME, vec![inbound("i2")])
        .unwrap();
    setup
        .wait_until("the second fallback", |d| {
            alert_ids(&d.messages_in(account_channel)).contains(&"i2".to_owned())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        setup.posts_to(dm_channel).len(),
        1,
        "one DM attempt, no retry loop:\n{}",
        setup.discord().request_log()
    );

    // A command clears the mark, and DMs flow again.
    setup.discord().clear_scripted_errors();
    let text = setup.alerts(ALICE, "status", vec![]).await;
    assert!(text.contains("DM: yes"), "{text}");
    assert_eq!(
        query_i64(
            &db,
            &format!("SELECT dm_closed FROM alert_preferences WHERE discord_user_id = {ALICE}")
        )
        .await,
        0
    );
    setup
        .harness
        .sim
        .append_events(ACME, vec![inbound("i3")])
        .unwrap();
    setup
        .wait_until("a DM after the command", |d| {
            alert_ids(&d.dm_messages_to(ALICE)).contains(&"i3".to_owned())
        })
        .await;

    // 429 with retry_after on the internal channel: the alert waits, then arrives.
    setup.discord().script_error(
        ScriptedError::rate_limited(
            "POST",
            format!("/api/v10/channels/{}/messages", setup.all_alerts),
            1.5,
        )
        .times(1),
    );
    setup
        .harness
        .sim
        .append_events(
            ACME,
            vec![event(
                "o1",
                "service.outage",
                json!({"component": "api", "summary": "down"}),
            )],
        )
        .unwrap();
    setup
        .wait_until("the outage in all-alerts", |d| {
            alert_ids(&d.messages_in(setup.all_alerts)).contains(&"o1".to_owned())
        })
        .await;
    let posts = setup.posts_to(setup.all_alerts);
    assert_eq!(posts.len(), 2, "one 429 and one retry");
    assert_eq!(posts[0].status, 429);
    let waited = posts[1].at.duration_since(posts[0].at);
    assert!(
        waited >= Duration::from_millis(1450),
        "the retry came {waited:?} after the 429, before retry_after"
    );
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_becomes_digest() {
    let setup = start(
        vec!["AcmeOwner"],
        "digest_threshold = 5\ndigest_window_secs = 3\npage_size = 100",
    )
    .await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;

    let mut events = Vec::new();
    for index in 0..200 {
        let id = format!("s{index:03}");
        if index % 70 == 0 {
            events.push(event(&id, "service.outage", json!({"component": "api"})));
        } else {
            events.push(event(&id, "delivery_failure", failure_data()));
        }
    }
    setup.harness.sim.append_events(ACME, events).unwrap();
    setup
        .wait_until("a digest DM", |d| {
            !digests(&d.dm_messages_to(ALICE)).is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let messages = setup.discord().dm_messages_to(ALICE);
    assert!(messages.len() <= 10, "{} DMs for one storm", messages.len());
    let singles = alert_ids(&messages);
    let critical: Vec<&String> = singles
        .iter()
        .filter(|id| ["s000", "s070", "s140"].contains(&id.as_str()))
        .collect();
    assert_eq!(
        critical.len(),
        3,
        "every critical alert individually: {singles:?}"
    );
    let digest_list = digests(&messages);
    assert_eq!(digest_list.len(), 1, "one digest");
    let footer = digest_list[0]["embeds"][0]["footer"]["text"]
        .as_str()
        .unwrap();
    let in_digest: usize = footer
        .trim_start_matches("Digest of ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("digest count");
    assert_eq!(
        singles.len() - critical.len() + in_digest,
        197,
        "every non-critical alert is either single or in the digest"
    );
    let counts = digest_list[0]["embeds"][0]["fields"][0]["value"]
        .as_str()
        .unwrap();
    assert!(
        counts.contains(&format!("Delivery failure: **{in_digest}**")),
        "{counts}"
    );
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_fields_make_valid_message() {
    let setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;
    let account_channel = setup.account_channel(ACME);

    let mut data = failure_data();
    data["status_detail"] = json!("R".repeat(2999) + "é");
    data["list_name"] = json!("L".repeat(300));
    let reason = "declined ".repeat(340);
    setup
        .harness
        .sim
        .append_events(
            ACME,
            vec![
                event("long1", "delivery_failure", data),
                event("long2", "billing.payment_failed", json!({"reason": reason})),
            ],
        )
        .unwrap();
    setup
        .wait_until("both long alerts", |d| {
            alert_ids(&d.dm_messages_to(ALICE)).len() == 2
                && alert_ids(&d.messages_in(account_channel)).len() == 2
        })
        .await;
    for message in setup.discord().dm_messages_to(ALICE) {
        let embed = &message["embeds"][0];
        assert!(embed["title"].as_str().unwrap().chars().count() <= 256);
        let mut total = embed["title"].as_str().unwrap().chars().count()
            + embed["description"].as_str().unwrap_or("").chars().count()
            + embed["footer"]["text"]
                .as_str()
                .unwrap_or("")
                .chars()
                .count();
        for field in embed["fields"].as_array().unwrap() {
            let value = field["value"].as_str().unwrap();
            assert!(
                value.chars().count() <= 1024,
                "field {} too long",
                field["name"]
            );
            total += value.chars().count() + field["name"].as_str().unwrap().chars().count();
        }
        assert!(total <= 6000, "embed of {total} characters");
    }
    let text = serde_json::to_string(&setup.discord().dm_messages_to(ALICE)).unwrap();
    assert!(text.contains('…'), "long values are cut with an ellipsis");
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_never_share_alerts() {
    let setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.harness.link(DAVE, &test_key("Beta")).await;
    setup.wait_cursor(ACME).await;
    setup.wait_cursor(BETA).await;
    let acme_channel = setup.account_channel(ACME);
    let beta_channel = setup.account_channel(BETA);
    assert_ne!(acme_channel, beta_channel);

    setup
        .harness
        .sim
        .append_events(ACME, vec![event("a1", "delivery_failure", failure_data())])
        .unwrap();
    setup
        .harness
        .sim
        .append_events(BETA, vec![event("b1", "delivery_failure", failure_data())])
        .unwrap();
    setup
        .wait_until("both accounts' alerts", |d| {
            !d.dm_messages_to(ALICE).is_empty()
                && !d.dm_messages_to(DAVE).is_empty()
                && !d.messages_in(acme_channel).is_empty()
                && !d.messages_in(beta_channel).is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let discord = setup.discord();
    assert_eq!(alert_ids(&discord.dm_messages_to(ALICE)), ["a1"]);
    assert_eq!(alert_ids(&discord.dm_messages_to(DAVE)), ["b1"]);
    assert_eq!(alert_ids(&discord.messages_in(acme_channel)), ["a1"]);
    assert_eq!(alert_ids(&discord.messages_in(beta_channel)), ["b1"]);
    let dave_text = serde_json::to_string(&discord.dm_messages_to(DAVE)).unwrap();
    assert!(
        !dave_text.contains(ACME) && !dave_text.contains("Acme"),
        "{dave_text}"
    );
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_validates_and_expires() {
    let setup = start(vec!["AcmeOwner", "AcmeMember"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.harness.link(BOB, &test_key("AcmeMember")).await;
    setup.wait_cursor(ACME).await;
    let account_channel = setup.account_channel(ACME);

    for invalid in ["5x", "two hours", "0m", "1.5h"] {
        let text = setup
            .alerts(
                ALICE,
                "mute",
                vec![("duration", OptionValue::String(invalid.into()))],
            )
            .await;
        assert!(text.contains("not a valid duration"), "{invalid}: {text}");
        assert!(text.contains("30m, 2h or 1d"), "{invalid}: {text}");
    }
    let text = setup
        .alerts(
            ALICE,
            "mute",
            vec![("duration", OptionValue::String("31d".into()))],
        )
        .await;
    assert!(text.contains("maximum mute of 30 days"), "{text}");
    let db = setup.harness.db_path();
    let muted = format!("SELECT COUNT(*) FROM alert_preferences WHERE discord_user_id = {ALICE} AND muted_until_ms IS NOT NULL");
    assert_eq!(
        query_i64(&db, &muted).await,
        0,
        "a rejected mute changes nothing"
    );

    let text = setup
        .alerts(
            ALICE,
            "mute",
            vec![("duration", OptionValue::String("30m".into()))],
        )
        .await;
    assert!(text.contains("Alerts muted until"), "{text}");
    let status = setup.alerts(ALICE, "status", vec![]).await;
    assert!(status.contains("muted until"), "{status}");

    setup
        .harness
        .sim
        .append_events(ACME, vec![event("m1", "delivery_failure", failure_data())])
        .unwrap();
    setup
        .wait_until("m1 in the account channel", |d| {
            alert_ids(&d.messages_in(account_channel)).contains(&"m1".to_owned())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        setup.discord().dm_messages_to(ALICE).is_empty(),
        "a muted user got a medium alert"
    );

    // Bring the mute's end close instead of waiting 30 minutes; nothing unmutes it but time.
    let pool = sqlite(&db).await;
    let soon = chrono::Utc::now().timestamp_millis() + 1000;
    sqlx::query("UPDATE alert_preferences SET muted_until_ms = ? WHERE discord_user_id = ?")
        .bind(soon)
        .bind(ALICE as i64)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    setup
        .harness
        .sim
        .append_events(ACME, vec![event("m2", "delivery_failure", failure_data())])
        .unwrap();
    setup
        .wait_until("m2 by DM after the mute ended", |d| {
            alert_ids(&d.dm_messages_to(ALICE)).contains(&"m2".to_owned())
        })
        .await;
    let status = setup.alerts(ALICE, "status", vec![]).await;
    assert!(status.contains("not muted"), "{status}");

    // The DM's button: Bob cannot use it; Alice mutes for an hour.
    let message = setup.discord().dm_messages_to(ALICE)[0].clone();
    let message_id: u64 = message["id"].as_str().unwrap().parse().unwrap();
    let dm_channel = setup.discord().dm_channel_id(ALICE);
    let click = |user_id: u64| ButtonClick {
        user: common::user(user_id),
        guild_id: None,
        channel_id: dm_channel,
        custom_id: format!("alerts:mute1h:{ALICE}"),
        message_id,
    };
    let by_bob = setup.discord().send_button_click(click(BOB)).await.unwrap();
    let record = setup.harness.wait_final(&by_bob).await;
    assert!(
        final_text(&record).contains("Only the recipient"),
        "{}",
        final_text(&record)
    );
    assert!(record.is_ephemeral());
    assert_eq!(
        query_i64(&db, &muted).await,
        1,
        "Bob's click must not change Alice's mute"
    );
    let bob_muted = format!("SELECT COUNT(*) FROM alert_preferences WHERE discord_user_id = {BOB} AND muted_until_ms IS NOT NULL");
    assert_eq!(query_i64(&db, &bob_muted).await, 0);

    let by_alice = setup
        .discord()
        .send_button_click(click(ALICE))
        .await
        .unwrap();
    let record = setup.harness.wait_final(&by_alice).await;
    assert!(
        final_text(&record).contains("Alerts muted until"),
        "{}",
        final_text(&record)
    );
    let until = query_i64(
        &db,
        &format!("SELECT muted_until_ms FROM alert_preferences WHERE discord_user_id = {ALICE}"),
    )
    .await;
    let left = until - chrono::Utc::now().timestamp_millis();
    assert!(
        (3_500_000..=3_600_000).contains(&left),
        "mute ends in {left} ms"
    );

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in alert_ids(&setup.discord().dm_messages_to(ALICE)) {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.get("m1"), None);
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_alert_status_and_shutdown() {
    let mut setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;

    let text = setup.alerts(ALICE, "test", vec![]).await;
    assert!(text.contains("test alert is queued"), "{text}");
    setup
        .wait_until("the test alert by DM", |d| {
            d.dm_messages_to(ALICE)
                .iter()
                .any(|m| m["embeds"][0]["title"] == "Test alert")
        })
        .await;

    let status = setup.harness.run_sms(ALICE, "status", vec![]).await;
    let text = final_text(&status);
    assert!(text.contains("accounts polled: 1"), "{text}");
    assert!(text.contains("outbox backlog: 0 pending"), "{text}");
    assert!(!text.contains("no run yet"), "{text}");
    // The last run is a Discord timestamp, `<t:SECONDS:R>`, followed by the run's duration.
    let last_run = text
        .split("last run: <t:")
        .nth(1)
        .unwrap_or_else(|| panic!("no last run time: {text}"));
    let (seconds, rest) = last_run
        .split_once(":R> in ")
        .unwrap_or_else(|| panic!("last run is not `<t:SECONDS:R> in N ms`: {text}"));
    let seconds: i64 = seconds
        .parse()
        .unwrap_or_else(|_| panic!("last run time is not a number: {text}"));
    let age = chrono::Utc::now().timestamp() - seconds;
    assert!(
        (0..60).contains(&age),
        "last run {age} s ago, but the poller runs every 200 ms: {text}"
    );
    assert!(
        rest.split_once(" ms")
            .is_some_and(|(millis, _)| millis.parse::<u64>().is_ok()),
        "last run duration is not `N ms`: {text}"
    );

    // A gateway reconnect does not start a second poller.
    setup
        .discord()
        .send_reconnect()
        .await
        .expect("reconnect sent");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let text = setup.alerts(ALICE, "unmute", vec![]).await;
    assert!(text.contains("no longer muted"), "{text}");
    assert_eq!(
        setup.harness.logs().matches("alert poller started").count(),
        1
    );

    // SIGTERM with deliveries stuck behind a failing Discord: the bot stops in time and logs
    // what is left pending.
    setup.discord().script_error(ScriptedError::new(
        "POST",
        "/api/v10/channels/*/messages",
        503,
        0,
        "Service Unavailable",
    ));
    setup
        .harness
        .sim
        .append_events(ACME, vec![event("t1", "delivery_failure", failure_data())])
        .unwrap();
    setup
        .harness
        .wait_for_db(
            "t1 never reached the outbox",
            "SELECT COUNT(*) FROM alert_deliveries WHERE status = 'pending'",
            |n| n >= 2,
        )
        .await;
    let status = setup.harness.terminate_bot().await;
    assert!(
        status.success(),
        "the bot exited with {status} after SIGTERM\n{}",
        setup.harness.tail_logs()
    );
    let logs = setup.harness.logs();
    assert!(
        logs.contains("alert poller stopped"),
        "{}",
        setup.harness.tail_logs()
    );
    assert!(
        logs.contains("alert dispatcher stopped"),
        "{}",
        setup.harness.tail_logs()
    );
    assert!(
        logs.contains("alert deliveries left pending at shutdown"),
        "{}",
        setup.harness.tail_logs()
    );
    setup.discord().clear_scripted_errors();
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_revocation_removes_access() {
    let alerts = start(vec!["AcmeOwner"], "").await;
    let harness = &alerts.harness;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    assert!(harness
        .discord
        .member_roles(ALICE)
        .contains(&harness.linked_role_id));

    // The next poll with the deleted key gets 401: one DM, and the access goes with the key.
    harness.sim.revoke_key(&test_key("AcmeOwner")).unwrap();
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    while harness.discord.dm_messages_to(ALICE).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dms = harness.discord.dm_messages_to(ALICE);
    assert_eq!(dms.len(), 1, "expected one revocation DM: {dms:?}");
    assert!(dms[0]["content"]
        .as_str()
        .unwrap()
        .contains("no longer accepts"));

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !harness
            .discord
            .member_roles(ALICE)
            .contains(&harness.linked_role_id),
        "the linked role stayed after the poller found the key revoked"
    );
    let channel = harness
        .discord
        .guild_channels()
        .into_iter()
        .find(|c| c["parent_id"].as_str() == Some(&harness.category_id.to_string()))
        .expect("account channel");
    let has_alice = channel["permission_overwrites"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"].as_str() == Some(&ALICE.to_string()));
    assert!(!has_alice, "the channel overwrite stayed after revocation");
    assert_eq!(
        harness.discord.dm_messages_to(ALICE).len(),
        1,
        "the DM was repeated"
    );
    alerts.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relink_drops_queued_old_account_dm() {
    let setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;
    let account_channel = setup.account_channel(ACME);
    let dm_channel = setup.discord().dm_channel_id(ALICE);
    // Alice's DM fails with a transient error, so it stays queued for a retry.
    setup.discord().script_error(ScriptedError::new(
        "POST",
        format!("/api/v10/channels/{dm_channel}/messages"),
        502,
        0,
        "Bad Gateway",
    ));
    setup
        .harness
        .sim
        .append_events(ACME, vec![event("a1", "delivery_failure", failure_data())])
        .unwrap();
    setup
        .wait_until("the account channel copy and a failed DM attempt", |d| {
            alert_ids(&d.messages_in(account_channel)).contains(&"a1".to_owned())
                && d.requests().iter().any(|request| {
                    request.method == "POST"
                        && request.path == format!("/api/v10/channels/{dm_channel}/messages")
                        && request.status == 502
                })
        })
        .await;

    // Alice links a key of another account while the DM waits for its retry.
    setup.harness.link(ALICE, &test_key("Beta")).await;
    setup.discord().clear_scripted_errors();
    // The first retry comes after at most 2.4 s of backoff.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let dms = setup.discord().dm_messages_to(ALICE);
    assert!(
        !alert_ids(&dms).contains(&"a1".to_owned()),
        "an alert of the old account reached the relinked user:\n{}",
        setup.discord().request_log()
    );
    let db = setup.harness.db_path();
    assert_eq!(
        query_i64(
            &db,
            &format!(
                "SELECT COUNT(*) FROM alert_deliveries WHERE target_kind = 'dm' \
                 AND target_id = {ALICE} AND status = 'pending'"
            )
        )
        .await,
        0
    );
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_account_pauses_and_resumes() {
    let setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;
    setup
        .harness
        .sim
        .set_account_status(ACME, trackly_sim::AccountStatus::Suspended)
        .unwrap();
    let suspended_sql = format!(
        "SELECT COUNT(*) FROM links WHERE discord_user_id = {ALICE} AND status = 'suspended'"
    );
    setup
        .harness
        .wait_for_db("the poller never saw the suspension", &suspended_sql, |n| {
            n != 0
        })
        .await;
    let status = setup.alerts(ALICE, "status", vec![]).await;
    assert!(status.contains("Alerts are paused"), "{status}");

    // Events of the suspension are read once Trackly reactivates the account.
    setup
        .harness
        .sim
        .append_events(ACME, vec![event("s1", "delivery_failure", failure_data())])
        .unwrap();
    setup
        .harness
        .sim
        .set_account_status(ACME, trackly_sim::AccountStatus::Active)
        .unwrap();
    setup
        .wait_until("the alert after the suspension ended", |d| {
            alert_ids(&d.dm_messages_to(ALICE)).contains(&"s1".to_owned())
        })
        .await;
    let status = setup.alerts(ALICE, "status", vec![]).await;
    assert!(!status.contains("Alerts are paused"), "{status}");
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_digest_window() {
    let mut setup = start(
        vec!["AcmeOwner"],
        "digest_threshold = 3\ndigest_window_secs = 8",
    )
    .await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;

    let events: Vec<Value> = (0..20)
        .map(|index| event(&format!("w{index:02}"), "delivery_failure", failure_data()))
        .collect();
    setup.harness.sim.append_events(ACME, events).unwrap();
    setup
        .wait_until("the 3 single DMs of the window", |d| {
            alert_ids(&d.dm_messages_to(ALICE)).len() >= 3
        })
        .await;
    // The kill comes after the singles are marked sent, so that none of them is sent again.
    let db = setup.harness.db_path();
    let sent_sql = format!(
        "SELECT COUNT(*) FROM alert_deliveries WHERE target_kind = 'dm' AND target_id = {ALICE} \
         AND status = 'sent'"
    );
    setup
        .harness
        .wait_for_db("the singles were never marked sent", &sent_sql, |n| n >= 3)
        .await;
    let stored_window = format!(
        "SELECT COUNT(*) FROM digest_windows WHERE target_kind = 'dm' AND target_id = {ALICE} \
         AND sent_count = 3 AND overflowed = 1"
    );
    assert_eq!(query_i64(&db, &stored_window).await, 1, "window stored");

    setup.harness.restart_bot().await;
    setup
        .wait_until("the digest DM", |d| {
            !digests(&d.dm_messages_to(ALICE)).is_empty()
        })
        .await;
    // Without the stored window the restarted bot would send 3 more singles first.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let messages = setup.discord().dm_messages_to(ALICE);
    let singles = alert_ids(&messages);
    assert_eq!(singles, ["w00", "w01", "w02"], "singles before the restart");
    let digest_list = digests(&messages);
    assert_eq!(digest_list.len(), 1, "one digest");
    assert_eq!(messages.len(), 4, "3 singles and the digest");
    let footer = digest_list[0]["embeds"][0]["footer"]["text"]
        .as_str()
        .unwrap();
    assert!(footer.starts_with("Digest of 17 alerts"), "{footer}");
    assert_eq!(
        query_i64(
            &db,
            "SELECT COUNT(*) FROM alert_deliveries WHERE status != 'sent'"
        )
        .await,
        0
    );
    assert_eq!(
        query_i64(&db, "SELECT COUNT(*) FROM digest_windows").await,
        0,
        "the digest ends the window"
    );
    setup.harness.finish().await;
}

/// The crash window of a digest: Discord created it, the bot died before marking it sent. The
/// restarted bot plans the same deliveries as the same digest, whose nonce makes Discord return
/// the first message. The window is long enough for the reply hold to be in place before the
/// digest goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_discord_created_digest_delivers_once() {
    let mut setup = start(
        vec!["AcmeOwner"],
        "digest_threshold = 3\ndigest_window_secs = 8",
    )
    .await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;
    setup.wait_cursor(ACME).await;
    let dm_path = format!(
        "/api/v10/channels/{}/messages",
        setup.discord().dm_channel_id(ALICE)
    );

    let events: Vec<Value> = (0..12)
        .map(|index| event(&format!("g{index:02}"), "delivery_failure", failure_data()))
        .collect();
    setup.harness.sim.append_events(ACME, events).unwrap();
    let sent_sql = format!(
        "SELECT COUNT(*) FROM alert_deliveries WHERE target_kind = 'dm' AND target_id = {ALICE} \
         AND status = 'sent'"
    );
    setup
        .harness
        .wait_for_db("the singles were never marked sent", &sent_sql, |n| n >= 3)
        .await;
    setup.discord().hold_replies(HeldReply::new(
        "POST",
        dm_path.clone(),
        Duration::from_secs(120),
    ));
    setup
        .wait_until("the digest DM created while its reply is held", |d| {
            !digests(&d.dm_messages_to(ALICE)).is_empty()
        })
        .await;

    setup.harness.restart_bot().await;
    setup.discord().clear_held_replies();
    setup
        .harness
        .wait_for_db(
            "deliveries never marked sent",
            "SELECT COUNT(*) FROM alert_deliveries WHERE status != 'sent'",
            |n| n == 0,
        )
        .await;

    let posts = setup
        .discord()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == dm_path)
        .count();
    assert_eq!(posts, 5, "3 singles, the digest and its resend");
    let messages = setup.discord().dm_messages_to(ALICE);
    assert_eq!(alert_ids(&messages), ["g00", "g01", "g02"]);
    let digest_list = digests(&messages);
    assert_eq!(digest_list.len(), 1, "one digest: {messages:?}");
    let footer = digest_list[0]["embeds"][0]["footer"]["text"]
        .as_str()
        .unwrap();
    assert!(footer.starts_with("Digest of 9 alerts"), "{footer}");
    setup.harness.finish().await;
}

/// Returns the value shown after `label: ` in `/alerts status` or `/alerts configure` output,
/// such as `on` for `Billing`.
fn preference<'a>(text: &'a str, label: &str) -> &'a str {
    let needle = format!("{label}: ");
    let start = text
        .find(&needle)
        .unwrap_or_else(|| panic!("no {label} in: {text}"))
        + needle.len();
    text[start..].lines().next().unwrap_or_default().trim()
}

/// Preference labels as `/alerts status` shows them.
const PREFERENCE_LABELS: [&str; 7] = [
    "Delivery failures",
    "Opt-outs",
    "Inbound SMS",
    "Billing",
    "Spam complaints",
    "Service",
    "Minimum severity",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_changes_only_given_options() {
    let setup = start(vec!["AcmeOwner"], "").await;
    setup.harness.link(ALICE, &test_key("AcmeOwner")).await;

    // The product's defaults, in the order of PREFERENCE_LABELS.
    let mut expected = ["on", "on", "off", "on", "on", "on", "low"];
    let boolean = OptionValue::Boolean;
    // What the step sets, the options it sends, and the labels and values it changes.
    type Step = (
        &'static str,
        Vec<(&'static str, OptionValue)>,
        Vec<(&'static str, &'static str)>,
    );
    let steps: Vec<Step> = vec![
        (
            "billing off",
            vec![("billing", boolean(false))],
            vec![("Billing", "off")],
        ),
        (
            "inbound SMS on",
            vec![("inbound_sms", boolean(true))],
            vec![("Inbound SMS", "on")],
        ),
        (
            "opt-outs off",
            vec![("opt_outs", boolean(false))],
            vec![("Opt-outs", "off")],
        ),
        (
            "spam complaints off",
            vec![("spam_complaints", boolean(false))],
            vec![("Spam complaints", "off")],
        ),
        (
            "service off",
            vec![("service", boolean(false))],
            vec![("Service", "off")],
        ),
        (
            "delivery failures off and minimum severity high",
            vec![
                ("delivery_failures", boolean(false)),
                ("minimum_severity", OptionValue::Integer(SEVERITY_HIGH)),
            ],
            vec![("Delivery failures", "off"), ("Minimum severity", "high")],
        ),
        (
            "opt-outs and service back on",
            vec![("opt_outs", boolean(true)), ("service", boolean(true))],
            vec![("Opt-outs", "on"), ("Service", "on")],
        ),
        ("no option", vec![], vec![]),
    ];

    let status = setup.alerts(ALICE, "status", vec![]).await;
    for (label, value) in PREFERENCE_LABELS.iter().zip(expected) {
        assert_eq!(preference(&status, label), value, "default of {label}");
    }
    for (step, options, changes) in steps {
        for (label, value) in changes {
            let index = PREFERENCE_LABELS
                .iter()
                .position(|known| *known == label)
                .expect("a known label");
            expected[index] = value;
        }
        let reply = setup.alerts(ALICE, "configure", options).await;
        let status = setup.alerts(ALICE, "status", vec![]).await;
        for (label, value) in PREFERENCE_LABELS.iter().zip(expected) {
            assert_eq!(
                preference(&reply, label),
                value,
                "{label} in the configure reply after {step}"
            );
            assert_eq!(
                preference(&status, label),
                value,
                "{label} in /alerts status after {step}"
            );
        }
        if step == "no option" {
            assert!(reply.contains("Nothing changed"), "{reply}");
        } else {
            assert!(reply.contains("Alert preferences saved"), "{reply}");
        }
    }
    setup.harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_command_registered() {
    let setup = start(vec!["AcmeOwner"], "").await;
    let registered = setup
        .discord()
        .registered_commands()
        .expect("commands registered");
    let alerts = registered.command("alerts").expect("alerts is registered");
    let subcommands = alerts["options"]
        .as_array()
        .expect("alerts has subcommands");
    let names: Vec<&str> = subcommands
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["configure", "mute", "unmute", "status", "test"]);
    for subcommand in subcommands {
        assert_eq!(
            subcommand["type"], 1,
            "{} is a subcommand",
            subcommand["name"]
        );
    }

    let options_of = |name: &str| -> Vec<Value> {
        subcommands
            .iter()
            .find(|o| o["name"] == name)
            .and_then(|o| o["options"].as_array())
            .cloned()
            .unwrap_or_default()
    };
    let configure = options_of("configure");
    let names: Vec<&str> = configure
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "delivery_failures",
            "opt_outs",
            "inbound_sms",
            "billing",
            "spam_complaints",
            "service",
            "minimum_severity"
        ]
    );
    for option in &configure {
        assert_ne!(option["required"], true, "{} is optional", option["name"]);
    }
    for option in &configure[..6] {
        assert_eq!(option["type"], 5, "{} is a boolean", option["name"]);
    }
    let severity = &configure[6];
    assert_eq!(severity["type"], 4, "poise sends choices as integers");
    let choices: Vec<&str> = severity["choices"]
        .as_array()
        .expect("minimum_severity has choices")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(choices, ["low", "medium", "high", "critical"]);
    assert_eq!(
        severity["choices"][SEVERITY_HIGH as usize]["value"], SEVERITY_HIGH,
        "the tests send high as {SEVERITY_HIGH}"
    );

    let mute = options_of("mute");
    assert_eq!(mute.len(), 1, "{mute:?}");
    assert_eq!(mute[0]["name"], "duration");
    assert_eq!(mute[0]["type"], 3, "duration is a string");
    assert_eq!(mute[0]["required"], true);
    assert_eq!(mute[0]["max_length"], 20);
    for name in ["unmute", "status", "test"] {
        assert!(options_of(name).is_empty(), "{name} takes no options");
    }
    setup.harness.finish().await;
}
