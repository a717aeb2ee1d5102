//! `/sms` end to end: the real bot binary against the fake Discord and the Trackly simulator.

mod common;

use std::time::Duration;

use common::{
    database_contains, final_text, key_fingerprint, masked_key, test_key, Harness, Options,
};
use fake_discord::{CommandScope, OptionValue, ScriptedError};
use trackly_sim::{Fault, FaultKind};

const ALICE: u64 = 100_000_000_000_000_001;
const BOB: u64 = 100_000_000_000_000_002;
const CAROL: u64 = 100_000_000_000_000_003;

// poise registers choice options as integers: the index of the choice.
const PERIOD_TODAY: i64 = 0;
const PERIOD_WEEK: i64 = 1;
const PERIOD_MONTH: i64 = 2;
const PERIOD_ALL: i64 = 3;

fn string(value: &str) -> OptionValue {
    OptionValue::String(value.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_registers_sms_commands() {
    let harness = Harness::start().await;
    let registered = harness
        .discord
        .registered_commands()
        .expect("commands registered");
    assert!(
        matches!(registered.scope, CommandScope::Guild(id) if id == harness.guild_id()),
        "registered in the wrong scope"
    );
    let global_path = format!(
        "/api/v10/applications/{}/commands",
        harness.discord.config().application_id
    );
    let global_puts = harness
        .discord
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path == global_path)
        .count();
    assert_eq!(
        global_puts, 0,
        "commands must not also be registered globally"
    );

    let names: Vec<&str> = registered
        .commands
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    // Other features register their own top-level commands next to `/sms`.
    assert!(names.contains(&"sms"), "sms is not registered: {names:?}");
    let sms = registered.command("sms").expect("sms is registered");
    let subcommands: Vec<&str> = sms["options"]
        .as_array()
        .expect("sms has subcommands")
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        subcommands,
        ["ping", "status", "link", "unlink", "usage", "balance", "whoami"]
    );

    let option = |sub: &str, name: &str| {
        sms["options"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == sub)
            .and_then(|o| o["options"].as_array())
            .and_then(|options| options.iter().find(|o| o["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{sub} has no option {name}"))
    };
    let api_key = option("link", "api_key");
    assert_eq!(api_key["type"], 3, "api_key is a string");
    assert_ne!(api_key["required"], true, "api_key is optional");
    let period = option("usage", "period");
    let choices: Vec<&str> = period["choices"]
        .as_array()
        .expect("period has choices")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(choices, ["today", "week", "month", "all"]);
    assert_ne!(period["required"], true);
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_with_option_grants_access() {
    let harness = Harness::start().await;
    let key = test_key("AcmeOwner");

    let record = harness.link(ALICE, &key).await;
    assert!(record.is_ephemeral(), "the link reply must be ephemeral");
    assert!(record.all_followups_ephemeral());
    let text = final_text(&record);
    assert!(text.contains("Acme Promotions"), "{text}");
    assert!(text.contains(&masked_key("AcmeOwner")), "{text}");
    assert!(!text.contains(&key), "the reply echoes the key");

    let whoami = harness.run_sms(ALICE, "whoami", vec![]).await;
    let text = final_text(&whoami);
    assert!(whoami.is_ephemeral());
    assert!(text.contains("Acme Promotions"), "{text}");
    assert!(text.contains("acc_8f2k1q"), "{text}");
    assert!(text.contains(&masked_key("AcmeOwner")), "{text}");
    assert!(text.contains("admin"), "an owner is shown as admin: {text}");

    assert!(
        !database_contains(&harness.db_path(), key.as_bytes()),
        "the database holds the key in plain text"
    );
    assert!(
        !database_contains(&harness.db_path(), &key.as_bytes()[4..]),
        "the database holds the key body"
    );

    // The account channel: under the category, hidden from everyone, open to the bot and Alice.
    let channels = harness.discord.guild_channels();
    let channel = channels
        .iter()
        .find(|c| c["parent_id"].as_str() == Some(&harness.category_id.to_string()))
        .unwrap_or_else(|| panic!("no channel under the category: {channels:?}"));
    assert!(channel["name"]
        .as_str()
        .unwrap()
        .contains("acme-promotions"));
    let overwrites = channel["permission_overwrites"]
        .as_array()
        .expect("overwrites");
    let overwrite = |id: u64| {
        overwrites
            .iter()
            .find(|o| o["id"].as_str() == Some(&id.to_string()))
            .cloned()
    };
    let everyone = overwrite(harness.guild_id()).expect("@everyone overwrite");
    assert_eq!(everyone["type"], 0);
    assert_ne!(
        everyone["deny"].as_str().unwrap().parse::<u64>().unwrap() & 1024,
        0,
        "@everyone can view"
    );
    let alice = overwrite(ALICE).expect("member overwrite for the linked user");
    assert_eq!(alice["type"], 1);
    assert_ne!(
        alice["allow"].as_str().unwrap().parse::<u64>().unwrap() & 1024,
        0,
        "Alice cannot view"
    );
    let bot = overwrite(harness.discord.config().bot_user_id).expect("overwrite for the bot");
    assert_ne!(
        bot["allow"].as_str().unwrap().parse::<u64>().unwrap() & 1024,
        0
    );

    assert!(
        harness
            .discord
            .member_roles(ALICE)
            .contains(&harness.linked_role_id),
        "linked role not added"
    );

    // A second user of the same account reuses the channel.
    harness.link(BOB, &test_key("AcmeMember")).await;
    let under_category = harness
        .discord
        .guild_channels()
        .iter()
        .filter(|c| c["parent_id"].as_str() == Some(&harness.category_id.to_string()))
        .count();
    assert_eq!(
        under_category, 1,
        "a second channel was created for the same account"
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_with_modal_hides_key() {
    let harness = Harness::start().await;
    let key = test_key("AcmeOwner");

    let record = harness.link_with_modal(ALICE, &key).await;
    assert!(record.is_ephemeral(), "the modal result must be ephemeral");
    let text = final_text(&record);
    assert!(text.contains("Linked to **Acme Promotions**"), "{text}");

    let whoami = final_text(&harness.run_sms(ALICE, "whoami", vec![]).await);
    assert!(whoami.contains(&masked_key("AcmeOwner")), "{whoami}");

    for request in harness.discord.requests() {
        if let Some(body) = &request.body {
            assert!(
                !body.to_string().contains(&key),
                "{} {} carries the key",
                request.method,
                request.path
            );
        }
    }
    assert!(!database_contains(&harness.db_path(), key.as_bytes()));
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_key_makes_no_api_call() {
    let harness = Harness::start().await;
    for malformed in [
        "trk_short",
        "sk_live_0123456789abcdef0123456789abcdef",
        "trk_0123456789abcdef0123456789abcde!",
    ] {
        let record = harness
            .run_sms(ALICE, "link", vec![("api_key", string(malformed))])
            .await;
        let text = final_text(&record);
        assert!(
            text.contains("not a valid Trackly API key"),
            "{malformed}: {text}"
        );
        assert!(text.contains("Nothing was sent to Trackly"), "{text}");
        assert!(record.is_ephemeral());
    }
    assert!(
        harness.sim.requests().is_empty(),
        "the simulator saw {:?}",
        harness.sim.requests()
    );

    // Typos reach no API, so they do not use up the failed-attempt limit.
    for _ in 0..3 {
        harness
            .run_sms(ALICE, "link", vec![("api_key", string("trk_typo"))])
            .await;
    }
    harness.link(ALICE, &test_key("AcmeOwner")).await;

    // The form reports a malformed key the same way, without calling Trackly.
    let calls = harness.sim.requests().len();
    let text = final_text(&harness.link_with_modal(BOB, "not-a-key").await);
    assert!(text.contains("not a valid Trackly API key"), "{text}");
    assert_eq!(harness.sim.requests().len(), calls);
    harness.finish().await;
}

/// One case of the link error table: a fault on the key's `/account` call and the reply text.
struct ErrorCase {
    key: &'static str,
    fault: FaultKind,
    times: Option<u32>,
    expected: &'static str,
    /// How many `/account` requests the bot may make: permanent errors are not retried.
    attempts: std::ops::RangeInclusive<usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_errors_give_clear_messages() {
    let cases = vec![
        ErrorCase {
            key: "Unauthorized",
            fault: FaultKind::Unauthorized,
            times: None,
            expected: "Trackly rejected that API key",
            attempts: 1..=1,
        },
        ErrorCase {
            key: "Suspended",
            fault: FaultKind::Suspended,
            times: None,
            expected: "suspended Trackly account",
            attempts: 1..=1,
        },
        ErrorCase {
            key: "NotEnabled",
            fault: FaultKind::NotEnabled {
                product: "sms".to_owned(),
            },
            times: None,
            expected: "does not have the `sms` product enabled",
            attempts: 1..=1,
        },
        ErrorCase {
            key: "RateThenOk",
            fault: FaultKind::RateLimited {
                retry_after_secs: Some(1),
            },
            times: Some(1),
            expected: "Linked to **Acme Promotions**",
            attempts: 2..=2,
        },
        ErrorCase {
            key: "ErrorThenOk",
            fault: FaultKind::ServerError { status: 503 },
            times: Some(1),
            expected: "Linked to **Acme Promotions**",
            attempts: 2..=2,
        },
        ErrorCase {
            key: "SlowOk",
            fault: FaultKind::Delay { ms: 4000 },
            times: Some(1),
            expected: "Linked to **Acme Promotions**",
            attempts: 1..=1,
        },
        ErrorCase {
            key: "NoAnswer",
            fault: FaultKind::NoAnswer,
            times: None,
            expected: "did not respond in time",
            attempts: 2..=3,
        },
        ErrorCase {
            key: "Malformed",
            fault: FaultKind::MalformedJson,
            times: None,
            expected: "unexpected response",
            attempts: 1..=1,
        },
        ErrorCase {
            key: "Unavailable",
            fault: FaultKind::ServerError { status: 502 },
            times: None,
            expected: "unreachable",
            attempts: 3..=3,
        },
    ];
    let keys: Vec<&'static str> = cases.iter().map(|case| case.key).collect();
    let harness = Harness::start_with(Options {
        acme_keys: keys,
        ..Options::default()
    })
    .await;
    for case in &cases {
        harness.sim.add_fault(Fault {
            key: Some(test_key(case.key)),
            path: Some("/account".to_owned()),
            times: case.times,
            kind: case.fault.clone(),
        });
    }

    // Each case has its own user and key, so they run at once.
    let runs = cases.iter().enumerate().map(|(index, case)| {
        let harness = &harness;
        async move {
            let user = 200_000_000_000_000_000 + index as u64;
            let record = harness
                .run_sms(user, "link", vec![("api_key", string(&test_key(case.key)))])
                .await;
            (case, record)
        }
    });
    for (case, record) in futures::future::join_all(runs).await {
        let text = final_text(&record);
        assert!(
            text.contains(case.expected),
            "{}: expected {:?} in {text:?}",
            case.key,
            case.expected
        );
        assert!(record.is_ephemeral(), "{}: reply not ephemeral", case.key);
        assert!(
            record.all_followups_ephemeral(),
            "{}: followup not ephemeral",
            case.key
        );
    }

    let requests = harness.sim.requests();
    for case in &cases {
        let fingerprint = key_fingerprint(case.key);
        let calls: Vec<_> = requests
            .iter()
            .filter(|r| {
                r.path == "/account" && r.key_fingerprint.as_deref() == Some(fingerprint.as_str())
            })
            .collect();
        assert!(
            case.attempts.contains(&calls.len()),
            "{}: {} requests, expected {:?}",
            case.key,
            calls.len(),
            case.attempts
        );
        if case.key == "RateThenOk" {
            let waited = calls[1].received_at - calls[0].received_at;
            assert!(
                waited >= chrono::Duration::milliseconds(950),
                "Retry-After not honoured: {waited}"
            );
        }
    }
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_balance_show_simulator_numbers() {
    let harness = Harness::start().await;
    harness.link(ALICE, &test_key("AcmeOwner")).await;

    let expectations = [
        (Some(PERIOD_TODAY), ["512", "601", "$2.70"]),
        (Some(PERIOD_WEEK), ["4,100", "4,870", "$21.92"]),
        (Some(PERIOD_MONTH), ["12,840", "15,022", "$67.60"]),
        (Some(PERIOD_ALL), ["1,048,576", "1,234,567", "$5,555.555"]),
        (None, ["12,840", "15,022", "$67.60"]),
    ];
    for (period, expected) in expectations {
        let options = period
            .map(|p| vec![("period", OptionValue::Integer(p))])
            .unwrap_or_default();
        let record = harness.run_sms(ALICE, "usage", options).await;
        assert!(record.is_ephemeral());
        let text = final_text(&record);
        for value in expected {
            assert!(
                text.contains(value),
                "period {period:?}: {value} missing in {text}"
            );
        }
    }
    let queried: Vec<String> = harness
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/usage")
        .filter_map(|r| r.query.clone())
        .collect();
    assert_eq!(
        queried,
        [
            "period=today",
            "period=week",
            "period=month",
            "period=all",
            "period=month"
        ]
    );

    let record = harness.run_sms(ALICE, "balance", vec![]).await;
    assert!(record.is_ephemeral());
    let text = final_text(&record);
    for value in ["4,210", "$18.95", "2026-11-28", "10,000", "5,790"] {
        assert!(text.contains(value), "{value} missing in {text}");
    }

    // Beta's balance has never been billed and is in euros.
    harness.link(BOB, &test_key("Beta")).await;
    let text = final_text(&harness.run_sms(BOB, "balance", vec![]).await);
    assert!(text.contains("not billed yet"), "{text}");
    assert!(text.contains("€0.01"), "{text}");
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlinked_user_told_how_to_link() {
    let harness = Harness::start().await;
    for subcommand in ["usage", "balance", "whoami"] {
        let record = harness.run_sms(CAROL, subcommand, vec![]).await;
        let text = final_text(&record);
        assert!(
            text.contains("have not linked a Trackly account"),
            "{subcommand}: {text}"
        );
        assert!(text.contains("/sms link"), "{subcommand}: {text}");
        assert!(record.is_ephemeral());
    }
    let text = final_text(&harness.run_sms(CAROL, "unlink", vec![]).await);
    assert!(text.contains("nothing to unlink"), "{text}");
    assert!(harness.sim.requests().is_empty());
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_removes_link_overwrite_and_role() {
    let harness = Harness::start().await;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    assert!(harness
        .discord
        .member_roles(ALICE)
        .contains(&harness.linked_role_id));

    let record = harness.run_sms(ALICE, "unlink", vec![]).await;
    let text = final_text(&record);
    assert!(text.contains("Unlinked from **Acme Promotions**"), "{text}");
    assert!(record.is_ephemeral());

    assert!(
        !harness
            .discord
            .member_roles(ALICE)
            .contains(&harness.linked_role_id),
        "role not removed"
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
    assert!(!has_alice, "Alice's overwrite is still on the channel");

    let text = final_text(&harness.run_sms(ALICE, "whoami", vec![]).await);
    assert!(text.contains("have not linked"), "{text}");
    let rows: i64 = {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", harness.db_path().display()))
            .await
            .unwrap();
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM links")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        count
    };
    assert_eq!(rows, 0, "the link row is still there");
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixth_failed_link_rejected_without_api_call() {
    let harness = Harness::start().await;
    for attempt in 1..=5 {
        let wrong = test_key(&format!("Wrong{attempt}"));
        let text = final_text(
            &harness
                .run_sms(ALICE, "link", vec![("api_key", string(&wrong))])
                .await,
        );
        assert!(
            text.contains("Trackly rejected that API key"),
            "attempt {attempt}: {text}"
        );
    }
    let calls_before = harness.sim.requests().len();
    assert_eq!(calls_before, 5);

    let text = final_text(
        &harness
            .run_sms(
                ALICE,
                "link",
                vec![("api_key", string(&test_key("AcmeOwner")))],
            )
            .await,
    );
    assert!(text.contains("Too many failed link attempts"), "{text}");
    assert_eq!(
        harness.sim.requests().len(),
        calls_before,
        "the sixth attempt reached Trackly"
    );

    // Another user is not limited.
    harness.link(BOB, &test_key("AcmeOwner")).await;
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_on_balance_sends_one_dm() {
    let harness = Harness::start().await;
    let key = test_key("AcmeOwner");
    harness.link(ALICE, &key).await;
    harness
        .sim
        .revoke_key(&key)
        .expect("key revoked in the simulator");

    for _ in 0..2 {
        let text = final_text(&harness.run_sms(ALICE, "balance", vec![]).await);
        assert!(
            text.contains("no longer accepts your linked API key"),
            "{text}"
        );
        assert!(text.contains("/sms link"), "{text}");
    }
    let dms = harness.discord.dm_messages_to(ALICE);
    assert_eq!(dms.len(), 1, "expected exactly one DM, got {dms:?}");
    assert!(dms[0]["content"]
        .as_str()
        .unwrap()
        .contains("Acme Promotions"));

    // The second balance call is rejected from the stored revoked status, without calling Trackly.
    let balance_calls = harness
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/billing/balance")
        .count();
    assert_eq!(balance_calls, 1);

    // A revoked key keeps neither the linked role nor the account channel.
    assert!(
        !harness
            .discord
            .member_roles(ALICE)
            .contains(&harness.linked_role_id),
        "the linked role stayed after revocation"
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
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_dm_to_closed_dms_is_logged() {
    let harness = Harness::start().await;
    let key = test_key("AcmeOwner");
    harness.link(ALICE, &key).await;
    harness.sim.revoke_key(&key).unwrap();
    harness.discord.script_error(ScriptedError {
        method: "POST".to_owned(),
        path: "/api/v10/channels/*/messages".to_owned(),
        status: 403,
        code: 50007,
        message: "Cannot send messages to this user".to_owned(),
        times: None,
        retry_after: None,
    });
    let text = final_text(&harness.run_sms(ALICE, "usage", vec![]).await);
    assert!(
        text.contains("no longer accepts your linked API key"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        harness.logs().contains("does not accept DMs"),
        "the closed DMs were not logged"
    );
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_survives_restart() {
    let mut harness = Harness::start().await;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    harness.restart_bot().await;

    let text = final_text(&harness.run_sms(ALICE, "whoami", vec![]).await);
    assert!(text.contains("Acme Promotions"), "{text}");
    assert!(text.contains(&masked_key("AcmeOwner")), "{text}");
    let text = final_text(&harness.run_sms(ALICE, "usage", vec![]).await);
    assert!(text.contains("12,840"), "{text}");
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_contain_no_secrets() {
    let harness = Harness::start_with(Options {
        rust_log: "trace".to_owned(),
        acme_keys: vec!["AcmeOwner", "AcmeMember", "AcmeModal"],
        ..Options::default()
    })
    .await;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    harness.link_with_modal(BOB, &test_key("AcmeModal")).await;
    let text = final_text(
        &harness
            .run_sms(
                CAROL,
                "link",
                vec![("api_key", string(&test_key("Unknown")))],
            )
            .await,
    );
    assert!(text.contains("rejected"), "{text}");
    harness.run_sms(ALICE, "usage", vec![]).await;
    harness.sim.revoke_key(&test_key("AcmeOwner")).unwrap();
    harness.run_sms(ALICE, "balance", vec![]).await;

    let logs = harness.logs();
    assert!(logs.lines().count() > 100, "trace logging was not on");
    for secret in [
        test_key("AcmeOwner"),
        test_key("AcmeModal"),
        test_key("Unknown"),
        common::DISCORD_TOKEN.to_owned(),
    ] {
        assert!(!logs.contains(&secret), "a secret appears in the log");
        assert!(
            !logs.contains(&secret[4..]),
            "the body of a secret appears in the log"
        );
    }
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_status_report_health() {
    let harness = Harness::start_with(Options {
        guild_features: false,
        ..Options::default()
    })
    .await;
    let record = harness.run_sms(CAROL, "ping", vec![]).await;
    assert!(record.is_ephemeral());
    let text = final_text(&record);
    assert!(text.contains("Pong"), "{text}");
    assert!(text.contains("Database"), "{text}");

    let record = harness.run_sms(CAROL, "status", vec![]).await;
    assert!(record.is_ephemeral());
    let text = final_text(&record);
    assert!(text.contains("Database"), "{text}");
    assert!(text.contains("OK"), "{text}");
    assert!(text.contains("Trackly API"), "{text}");
    assert!(text.contains("reachable"), "{text}");
    assert!(!text.contains("unreachable"), "{text}");
    assert!(text.contains("shard 0"), "{text}");

    harness.sim.add_fault(Fault {
        key: None,
        path: Some("/account".to_owned()),
        times: None,
        kind: FaultKind::ServerError { status: 503 },
    });
    let text = final_text(&harness.run_sms(CAROL, "status", vec![]).await);
    assert!(text.contains("answering with HTTP 503"), "{text}");
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relink_to_other_account_moves_access() {
    let harness = Harness::start().await;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    let record = harness.link(ALICE, &test_key("Beta")).await;
    let text = final_text(&record);
    assert!(text.contains("Beta Bulk SMS"), "{text}");
    assert!(
        text.contains("replaces your earlier link to `acc_8f2k1q`"),
        "{text}"
    );

    let channels = harness.discord.guild_channels();
    let in_category: Vec<_> = channels
        .iter()
        .filter(|c| c["parent_id"].as_str() == Some(&harness.category_id.to_string()))
        .collect();
    assert_eq!(in_category.len(), 2, "one channel per account");
    for channel in in_category {
        let has_alice = channel["permission_overwrites"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"].as_str() == Some(&ALICE.to_string()));
        let is_beta = channel["name"].as_str().unwrap().contains("beta");
        assert_eq!(has_alice, is_beta, "Alice's access in {}", channel["name"]);
    }
    let text = final_text(&harness.run_sms(ALICE, "whoami", vec![]).await);
    assert!(text.contains("viewer"), "{text}");
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_401_keeps_newer_link() {
    let harness = Harness::start().await;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    harness.sim.add_fault(Fault {
        key: Some(test_key("AcmeOwner")),
        path: Some("/billing/balance".to_owned()),
        times: Some(1),
        kind: FaultKind::Delay { ms: 2500 },
    });
    harness.sim.revoke_key(&test_key("AcmeOwner")).unwrap();

    // The balance call waits on the old key while Alice relinks with a valid one.
    let pending = harness
        .discord
        .send_command(harness.sms(ALICE, "balance", vec![]))
        .await
        .expect("interaction sent");
    tokio::time::sleep(Duration::from_millis(300)).await;
    harness.link(ALICE, &test_key("AcmeMember")).await;
    let text = final_text(&harness.wait_final(&pending).await);
    assert!(text.contains("no longer accepts"), "{text}");

    let text = final_text(&harness.run_sms(ALICE, "whoami", vec![]).await);
    assert!(text.contains(&masked_key("AcmeMember")), "{text}");
    assert!(
        text.contains("active"),
        "the newer link was revoked: {text}"
    );
    assert!(
        harness.discord.dm_messages_to(ALICE).is_empty(),
        "a revocation DM was sent"
    );
    assert!(harness
        .discord
        .member_roles(ALICE)
        .contains(&harness.linked_role_id));
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_reports_discord_failure() {
    let harness = Harness::start().await;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    harness.link(BOB, &test_key("AcmeMember")).await;
    harness.discord.script_error(ScriptedError {
        method: "DELETE".to_owned(),
        path: "/api/v10/guilds/*/members/*/roles/*".to_owned(),
        status: 403,
        code: 50013,
        message: "Missing Permissions".to_owned(),
        times: Some(1),
        retry_after: None,
    });

    let text = final_text(&harness.run_sms(ALICE, "unlink", vec![]).await);
    assert!(
        text.contains("could not remove the linked-customer role"),
        "{text}"
    );
    assert!(text.contains("missing a permission"), "{text}");
    assert!(text.contains("link and the stored key are gone"), "{text}");
    let text = final_text(&harness.run_sms(ALICE, "whoami", vec![]).await);
    assert!(text.contains("have not linked"), "{text}");

    // Bob, linked to the same account, keeps the channel.
    let channel = harness
        .discord
        .guild_channels()
        .into_iter()
        .find(|c| c["parent_id"].as_str() == Some(&harness.category_id.to_string()))
        .expect("account channel");
    let overwrite_ids: Vec<&str> = channel["permission_overwrites"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert!(
        overwrite_ids.contains(&BOB.to_string().as_str()),
        "Bob lost access: {overwrite_ids:?}"
    );
    assert!(
        !overwrite_ids.contains(&ALICE.to_string().as_str()),
        "Alice kept access"
    );
    assert!(harness
        .discord
        .member_roles(BOB)
        .contains(&harness.linked_role_id));
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_errors_on_commands() {
    let harness = Harness::start().await;
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    harness.sim.add_fault(Fault {
        key: Some(test_key("AcmeOwner")),
        path: Some("/usage".to_owned()),
        times: Some(1),
        kind: FaultKind::Suspended,
    });
    harness.sim.add_fault(Fault {
        key: Some(test_key("AcmeOwner")),
        path: Some("/billing/balance".to_owned()),
        times: Some(1),
        kind: FaultKind::NotEnabled {
            product: "sms".to_owned(),
        },
    });

    let text = final_text(&harness.run_sms(ALICE, "usage", vec![]).await);
    assert!(text.contains("suspended"), "{text}");
    assert!(text.contains("alerts are paused"), "{text}");
    let text = final_text(&harness.run_sms(ALICE, "whoami", vec![]).await);
    assert!(
        text.contains("active"),
        "a later success makes the link active again: {text}"
    );
    let text = final_text(&harness.run_sms(ALICE, "balance", vec![]).await);
    assert!(
        text.contains("does not have the `sms` product enabled"),
        "{text}"
    );
    let text = final_text(&harness.run_sms(ALICE, "balance", vec![]).await);
    assert!(text.contains("$18.95"), "{text}");
    harness.finish().await;
}

/// Member ids with an overwrite on `channel`.
fn overwrite_members(channel: &serde_json::Value) -> Vec<String> {
    channel["permission_overwrites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|overwrite| overwrite["type"] == 1)
        .filter_map(|overwrite| overwrite["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_channel_leaves_out_revoked_users() {
    let harness = Harness::start_with(Options {
        acme_keys: vec!["AcmeOwner", "AcmeMember"],
        ..Options::default()
    })
    .await;
    let account_channel = |harness: &Harness| {
        harness
            .discord
            .guild_channels()
            .into_iter()
            .find(|c| c["parent_id"].as_str() == Some(&harness.category_id.to_string()))
    };
    harness.link(ALICE, &test_key("AcmeOwner")).await;
    harness.sim.revoke_key(&test_key("AcmeOwner")).unwrap();
    let text = final_text(&harness.run_sms(ALICE, "balance", vec![]).await);
    assert!(text.contains("no longer accepts"), "{text}");

    // An administrator deletes the channel; the next user to link gets a new one.
    let old = account_channel(&harness).expect("account channel");
    let old_id: u64 = old["id"].as_str().unwrap().parse().unwrap();
    harness.discord.delete_channel(old_id).unwrap();
    harness.link(BOB, &test_key("AcmeMember")).await;

    let new = account_channel(&harness).expect("the account channel was made again");
    assert_ne!(new["id"], old["id"]);
    let members = overwrite_members(&new);
    assert!(members.contains(&BOB.to_string()), "{members:?}");
    assert!(
        !members.contains(&ALICE.to_string()),
        "the revoked user got the new channel: {members:?}"
    );
    harness.finish().await;
}
