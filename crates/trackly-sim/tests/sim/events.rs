//! Event feed: start at the newest event, paging with cursors, duplicates and invalid input.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::common::*;

fn opt_out(id: &str) -> Value {
    json!({
        "id": id,
        "type": "opt_out",
        "occurred_at": "2026-12-04T17:59:02Z",
        "data": {"phone_number": "+14155551234", "list_number": "+18005551234", "keyword": "STOP"},
    })
}

fn event_ids(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array: {body}"))
        .iter()
        .map(|event| event["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn empty_feed_starts_at_zero() {
    let sim = start().await;
    let reply = get(&sim, "/events", Some(ACME_OWNER_KEY)).await;

    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"events": [], "next_cursor": "c_00000", "has_more": false})
    );
}

#[tokio::test]
async fn without_after_starts_at_newest() {
    let sim = start().await;
    sim.append_events(
        ACME_ID,
        vec![opt_out("evt_1"), opt_out("evt_2"), opt_out("evt_3")],
    )
    .unwrap();

    let reply = get(&sim, "/events?limit=10", Some(ACME_OWNER_KEY)).await;
    assert_eq!(
        reply.json(),
        json!({"events": [], "next_cursor": "c_00003", "has_more": false})
    );
}

#[tokio::test]
async fn after_cursor_pages_oldest_first() {
    let sim = start().await;
    let start_cursor =
        get(&sim, "/events", Some(ACME_OWNER_KEY)).await.json()["next_cursor"].clone();
    assert_eq!(start_cursor, "c_00000");

    let events: Vec<Value> = (1..=5).map(|n| opt_out(&format!("evt_{n}"))).collect();
    sim.append_events(ACME_ID, events).unwrap();

    let first = get(&sim, "/events?after=c_00000&limit=2", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(event_ids(&first), ["evt_1", "evt_2"]);
    assert_eq!(first["next_cursor"], "c_00002");
    assert_eq!(first["has_more"], true);

    let second = get(&sim, "/events?after=c_00002&limit=2", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(event_ids(&second), ["evt_3", "evt_4"]);
    assert_eq!(second["has_more"], true);

    let third = get(&sim, "/events?after=c_00004&limit=2", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(event_ids(&third), ["evt_5"]);
    assert_eq!(third["next_cursor"], "c_00005");
    assert_eq!(third["has_more"], false);

    let caught_up = get(&sim, "/events?after=c_00005", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(
        caught_up,
        json!({"events": [], "next_cursor": "c_00005", "has_more": false})
    );
}

#[tokio::test]
async fn default_limit_is_100() {
    let sim = start().await;
    let events: Vec<Value> = (1..=150).map(|n| opt_out(&format!("evt_{n}"))).collect();
    sim.append_events(ACME_ID, events).unwrap();

    let page = get(&sim, "/events?after=c_00000", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(event_ids(&page).len(), 100);
    assert_eq!(page["next_cursor"], "c_00100");
    assert_eq!(page["has_more"], true);

    let all = get(
        &sim,
        "/events?after=c_00000&limit=500",
        Some(ACME_OWNER_KEY),
    )
    .await
    .json();
    assert_eq!(event_ids(&all).len(), 150);
    assert_eq!(all["has_more"], false);
}

#[tokio::test]
async fn duplicate_event_appears_twice() {
    let sim = start().await;
    sim.append_events(ACME_ID, vec![opt_out("evt_dup")])
        .unwrap();
    sim.append_events(ACME_ID, vec![opt_out("evt_dup"), opt_out("evt_next")])
        .unwrap();

    let page = get(&sim, "/events?after=c_00000", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(event_ids(&page), ["evt_dup", "evt_dup", "evt_next"]);
    assert_eq!(page["next_cursor"], "c_00003");
}

#[tokio::test]
async fn events_are_stored_as_given() {
    let sim = start().await;
    let unusual = json!({
        "id": "evt_new_kind",
        "type": "carrier.maintenance",
        "occurred_at": "2026-12-01T00:00:00Z",
        "severity": "critical",
        "data": {"carrier": "example", "nested": {"list": [1, 2]}},
    });
    sim.append_events(ACME_ID, vec![unusual.clone()]).unwrap();

    let page = get(&sim, "/events?after=c_00000", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(page["events"][0], unusual);
}

#[tokio::test]
async fn missing_id_and_time_are_filled() {
    let sim = start().await;
    let before = Utc::now() - Duration::seconds(1);
    sim.append_events(
        ACME_ID,
        vec![
            json!({"type": "service.outage", "data": {"component": "sending", "summary": "down"}}),
            json!({"type": "opt_out", "data": {}}),
        ],
    )
    .unwrap();
    let after = Utc::now() + Duration::seconds(1);

    let page = get(&sim, "/events?after=c_00000", Some(ACME_OWNER_KEY))
        .await
        .json();
    let ids = event_ids(&page);
    assert!(ids.iter().all(|id| id.starts_with("evt_")), "{ids:?}");
    assert_ne!(ids[0], ids[1], "generated ids must differ");

    for event in page["events"].as_array().unwrap() {
        let occurred_at = DateTime::parse_from_rfc3339(event["occurred_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        assert!(
            before <= occurred_at,
            "occurred_at is before the append: {event}"
        );
        assert!(
            occurred_at <= after,
            "occurred_at is after the append: {event}"
        );
    }
    assert_eq!(page["events"][0]["type"], "service.outage");
}

#[tokio::test]
async fn feeds_are_per_account() {
    let sim = start().await;
    sim.append_events(ACME_ID, vec![opt_out("evt_acme")])
        .unwrap();
    sim.append_events(
        BLUEFIN_ID,
        vec![opt_out("evt_blue_1"), opt_out("evt_blue_2")],
    )
    .unwrap();

    let acme = get(&sim, "/events?after=c_00000", Some(ACME_MEMBER_KEY))
        .await
        .json();
    assert_eq!(event_ids(&acme), ["evt_acme"]);

    let bluefin = get(&sim, "/events?after=c_00000", Some(BLUEFIN_VIEWER_KEY))
        .await
        .json();
    assert_eq!(event_ids(&bluefin), ["evt_blue_1", "evt_blue_2"]);
}

#[tokio::test]
async fn invalid_cursor_rejected() {
    let sim = start().await;
    sim.append_events(ACME_ID, vec![opt_out("evt_1")]).unwrap();

    for cursor in ["c_00002", "c_1", "bogus", ""] {
        let reply = get(
            &sim,
            &format!("/events?after={cursor}"),
            Some(ACME_OWNER_KEY),
        )
        .await;
        assert_error(&reply, 400, "invalid_cursor", &sim);
    }
}

#[tokio::test]
async fn invalid_limit_rejected() {
    let sim = start().await;
    for limit in ["0", "501", "-1", "ten", ""] {
        for after in ["", "&after=c_00000"] {
            let path = format!("/events?limit={limit}{after}");
            let reply = get(&sim, &path, Some(ACME_OWNER_KEY)).await;
            assert_error(&reply, 400, "invalid_limit", &sim);
        }
    }
    let max = get(&sim, "/events?limit=500", Some(ACME_OWNER_KEY)).await;
    assert_eq!(max.status, 200, "{}", max.text);
    let min = get(&sim, "/events?limit=1", Some(ACME_OWNER_KEY)).await;
    assert_eq!(min.status, 200, "{}", min.text);
}

#[tokio::test]
async fn append_rejects_bad_input() {
    let sim = start().await;

    let unknown = sim
        .append_events("acc_missing", vec![opt_out("evt_1")])
        .unwrap_err();
    assert!(unknown.to_string().contains("acc_missing"), "{unknown}");

    let not_object = sim
        .append_events(ACME_ID, vec![opt_out("evt_1"), json!(42)])
        .unwrap_err()
        .to_string();
    assert!(not_object.contains("events[1]"), "{not_object}");

    // Nothing of the rejected batch was stored.
    let page = get(&sim, "/events", Some(ACME_OWNER_KEY)).await.json();
    assert_eq!(page["next_cursor"], "c_00000");
}
