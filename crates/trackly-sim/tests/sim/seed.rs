//! Seed parsing and validation, and the simulator's life cycle.

use std::time::Duration;

use trackly_sim::{AccountStatus, Seed, Simulator, DEMO_SEED_TOML};

use crate::common::*;

#[test]
fn demo_seed_parses() {
    let seed = Seed::demo();
    assert_eq!(seed.accounts.len(), 2);

    let acme = &seed.accounts[0];
    assert_eq!(acme.id, ACME_ID);
    assert_eq!(acme.name, "Acme Promotions");
    assert_eq!(acme.status, AccountStatus::Active);
    let roles: Vec<&str> = acme.keys.iter().map(|key| key.role.as_str()).collect();
    assert_eq!(roles, ["owner", "member"]);
    assert_eq!(acme.keys[0].key, ACME_OWNER_KEY);
    assert!(acme.balance.last_billed_at.is_some());

    let bluefin = &seed.accounts[1];
    assert_eq!(bluefin.id, BLUEFIN_ID);
    assert_eq!(bluefin.balance.last_billed_at, None);
    assert!(!bluefin.lists.is_empty());

    for key in seed.accounts.iter().flat_map(|account| &account.keys) {
        let rest = key.key.strip_prefix("trk_").expect("key starts with trk_");
        assert_eq!(rest.len(), 32, "{}", key.key);
        assert!(
            rest.contains("TEST"),
            "demo keys must look fake: {}",
            key.key
        );
    }
}

fn demo_with(from: &str, to: &str) -> String {
    assert!(
        DEMO_SEED_TOML.contains(from),
        "the demo seed has no {from:?}"
    );
    DEMO_SEED_TOML.replacen(from, to, 1)
}

fn parse_error(text: &str) -> String {
    format!(
        "{:#}",
        Seed::from_toml_str(text).expect_err("the seed must be rejected")
    )
}

#[test]
fn seed_errors_name_the_field() {
    let cases = [
        (
            demo_with(r#"status = "active""#, r#"status = "paused""#),
            "accounts[0].status",
        ),
        (
            demo_with(r#"role = "member""#, r#"role = "admin""#),
            "accounts[0].keys[1].role",
        ),
        (
            demo_with(
                r#"created_at = "2025-03-15T14:30:00Z""#,
                r#"created_at = "yesterday""#,
            ),
            "accounts[0].created_at",
        ),
        (
            demo_with("outbound_messages = 1204", "outbound_messages = -4"),
            "accounts[0].usage.today.outbound_messages",
        ),
        (
            demo_with(r#"amount = "67.60""#, "amount = 67.60"),
            "accounts[0].usage.month.estimated_cost.amount",
        ),
        (
            demo_with(r#"amount = "18.95""#, r#"amount = "18,95""#),
            "accounts[0].balance.estimated_amount.amount",
        ),
        (
            demo_with(r#"number = "+447700900123""#, r#"number = "07700900123""#),
            "accounts[1].lists[0].number",
        ),
        (
            demo_with("trk_TESTbluefinVIEWERkey000000000004", "trk_short"),
            "accounts[1].keys[1].key",
        ),
        (
            demo_with("trk_TESTbluefinVIEWERkey000000000004", ACME_OWNER_KEY),
            "accounts[1].keys[1].key",
        ),
        (
            demo_with(r#"id = "acc_3m7x9p""#, r#"id = "acc_8f2k1q""#),
            "accounts[1].id",
        ),
        (
            demo_with(
                "next_charge_at_segments = 10000",
                "next_charge_segments = 10000",
            ),
            "next_charge_segments",
        ),
        (demo_with(r#"name = "Acme Promotions""#, ""), "name"),
    ];
    for (text, field) in cases {
        let error = parse_error(&text);
        assert!(error.contains(field), "expected {field} in: {error}");
    }
}

#[test]
fn seed_errors_hide_keys() {
    let error = parse_error(&demo_with(
        "trk_TESTbluefinVIEWERkey000000000004",
        ACME_OWNER_KEY,
    ));
    assert!(!error.contains(ACME_OWNER_KEY), "{error}");
    assert!(error.contains("0001"), "{error}");
}

#[test]
fn seed_without_lists_is_valid() {
    let text = r#"
        [[accounts]]
        id = "acc_solo"
        name = "Solo"
        status = "suspended"
        created_at = "2026-01-01T00:00:00+02:00"
        keys = [{ key = "trk_TESTsoloOWNERkey0000000000000005", role = "viewer" }]
        usage.today = { outbound_messages = 0, inbound_messages = 0, segments = 0, estimated_cost = { amount = "0", currency = "EUR" } }
        usage.week = { outbound_messages = 0, inbound_messages = 0, segments = 0, estimated_cost = { amount = "0", currency = "EUR" } }
        usage.month = { outbound_messages = 0, inbound_messages = 0, segments = 0, estimated_cost = { amount = "0", currency = "EUR" } }
        usage.all = { outbound_messages = 0, inbound_messages = 0, segments = 0, estimated_cost = { amount = "0", currency = "EUR" } }
        balance = { unbilled_segments = 0, estimated_amount = { amount = "0.00", currency = "EUR" }, next_charge_at_segments = 10000 }
    "#;
    let seed = Seed::from_toml_str(text).unwrap();
    assert!(seed.accounts[0].lists.is_empty());
    assert_eq!(seed.accounts[0].status, AccountStatus::Suspended);
}

#[test]
fn seed_not_toml_is_reported() {
    let error = parse_error("[[accounts]\nid = ");
    assert!(error.contains("invalid seed"), "{error}");
}

#[test]
fn seed_key_debug_is_masked() {
    let seed = Seed::demo();
    let dump = format!("{seed:?}");
    assert!(!dump.contains(ACME_OWNER_KEY), "{dump}");
    assert!(dump.contains("0001"), "{dump}");
}

#[tokio::test]
async fn start_rejects_invalid_seed() {
    let mut seed = Seed::demo();
    seed.accounts[0].keys[0].role = "admin".into();

    let error = Simulator::start(seed, "127.0.0.1:0".parse().unwrap())
        .await
        .expect_err("an invalid seed must not start");
    let message = format!("{error:#}");
    assert!(message.contains("accounts[0].keys[0].role"), "{message}");
}

#[tokio::test]
async fn dropping_the_handle_stops_serving() {
    let sim = start().await;
    let addr = sim.addr();
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        200
    );

    let clone = sim.clone();
    drop(sim);
    // A clone keeps the simulator running.
    assert_eq!(
        get(&clone, "/account", Some(ACME_OWNER_KEY)).await.status,
        200
    );
    drop(clone);

    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(refused, "the simulator still accepts connections on {addr}");
}

#[tokio::test]
async fn shutdown_frees_the_port() {
    let sim = start().await;
    let addr = sim.addr();
    sim.shutdown().await;

    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    // The same address can be bound again at once.
    let again = Simulator::start(Seed::demo(), addr).await.unwrap();
    assert_eq!(again.addr(), addr);
    again.shutdown().await;
}

#[tokio::test]
async fn start_on_used_port_explains() {
    let sim = start().await;
    let addr = sim.addr();

    let error = Simulator::start(Seed::demo(), addr)
        .await
        .expect_err("the port is taken");
    let message = format!("{error:#}");
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("another port"), "{message}");
    assert!(message.contains("127.0.0.1:0"), "{message}");

    // The first simulator still serves.
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        200
    );
}

#[test]
fn handle_is_shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<trackly_sim::SimHandle>();
    assert_send_sync::<trackly_sim::Fault>();
    assert_send_sync::<trackly_sim::RecordedRequest>();
}
