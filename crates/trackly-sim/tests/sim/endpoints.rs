//! Response shapes of each `/api/v2` endpoint.

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use serde_json::json;

use crate::common::*;

fn parse_time(value: &serde_json::Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp string: {value}"));
    assert!(text.ends_with('Z'), "timestamp is not in UTC: {text}");
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn account_shape_for_owner() {
    let sim = start().await;
    let reply = get(&sim, "/account", Some(ACME_OWNER_KEY)).await;

    assert_eq!(reply.status, 200, "{}\n{}", reply.text, request_log(&sim));
    assert_eq!(
        reply.headers["content-type"], "application/json",
        "{}",
        reply.text
    );
    assert_eq!(
        reply.json(),
        json!({"account": {
            "id": "acc_8f2k1q",
            "name": "Acme Promotions",
            "status": "active",
            "role": "owner",
            "created_at": "2025-03-15T14:30:00Z",
        }})
    );
}

#[tokio::test]
async fn account_role_is_the_callers() {
    let sim = start().await;
    let cases = [
        (ACME_MEMBER_KEY, ACME_ID, "member"),
        (BLUEFIN_OWNER_KEY, BLUEFIN_ID, "owner"),
        (BLUEFIN_VIEWER_KEY, BLUEFIN_ID, "viewer"),
    ];
    for (key, account_id, role) in cases {
        let body = get(&sim, "/account", Some(key)).await.json();
        assert_eq!(body["account"]["id"], account_id, "{body}");
        assert_eq!(body["account"]["role"], role, "{body}");
    }
}

#[tokio::test]
async fn usage_defaults_to_month() {
    let sim = start().await;
    let before = Utc::now() - Duration::seconds(1);
    let reply = get(&sim, "/usage", Some(ACME_OWNER_KEY)).await;
    let after = Utc::now() + Duration::seconds(1);

    assert_eq!(reply.status, 200, "{}", reply.text);
    let usage = &reply.json()["usage"];
    assert_eq!(usage["period"], "month");
    assert_eq!(usage["outbound_messages"], 12840);
    assert_eq!(usage["inbound_messages"], 311);
    assert_eq!(usage["segments"], 15022);
    assert_eq!(
        usage["estimated_cost"],
        json!({"amount": "67.60", "currency": "USD"})
    );

    let start = parse_time(&usage["start"]);
    let end = parse_time(&usage["end"]);
    assert!(before <= end, "end {end} is before the request");
    assert!(end <= after, "end {end} is after the response");
    assert_eq!(start.day(), 1, "month starts on the 1st: {start}");
    assert_eq!((start.month(), start.year()), (end.month(), end.year()));
    assert_eq!(start.time(), chrono::NaiveTime::MIN);
}

#[tokio::test]
async fn usage_each_period() {
    let sim = start().await;
    let expected_outbound = [
        ("today", 1204),
        ("week", 5310),
        ("month", 12840),
        ("all", 402118),
    ];

    for (period, outbound) in expected_outbound {
        let reply = get(
            &sim,
            &format!("/usage?period={period}"),
            Some(ACME_OWNER_KEY),
        )
        .await;
        assert_eq!(reply.status, 200, "{period}: {}", reply.text);
        let usage = &reply.json()["usage"];
        assert_eq!(usage["period"], period);
        assert_eq!(usage["outbound_messages"], outbound, "{period}: {usage}");

        let end = parse_time(&usage["end"]);
        match period {
            "all" => assert!(usage.get("start").is_none(), "all has no start: {usage}"),
            "today" => {
                let start = parse_time(&usage["start"]);
                assert_eq!(start.date_naive(), end.date_naive());
                assert_eq!(start.time(), chrono::NaiveTime::MIN);
            }
            "week" => {
                let start = parse_time(&usage["start"]);
                assert_eq!(start.weekday(), Weekday::Mon, "{start}");
                assert_eq!(start.time(), chrono::NaiveTime::MIN);
                assert!(end - start < Duration::days(7), "{start} .. {end}");
            }
            _ => assert!(parse_time(&usage["start"]) <= end),
        }
    }
}

#[tokio::test]
async fn usage_rejects_unknown_period() {
    let sim = start().await;
    for query in ["period=year", "period=Month", "period="] {
        let reply = get(&sim, &format!("/usage?{query}"), Some(ACME_OWNER_KEY)).await;
        assert_error(&reply, 400, "invalid_period", &sim);
    }
}

#[tokio::test]
async fn balance_shape() {
    let sim = start().await;

    let acme = get(&sim, "/billing/balance", Some(ACME_OWNER_KEY)).await;
    assert_eq!(acme.status, 200, "{}", acme.text);
    assert_eq!(
        acme.json(),
        json!({"balance": {
            "unbilled_segments": 4210,
            "estimated_amount": {"amount": "18.95", "currency": "USD"},
            "last_billed_at": "2026-11-28T09:12:00Z",
            "next_charge_at_segments": 10000,
        }})
    );

    let bluefin = get(&sim, "/billing/balance", Some(BLUEFIN_OWNER_KEY))
        .await
        .json();
    let balance = bluefin["balance"].as_object().unwrap();
    assert!(balance.contains_key("last_billed_at"), "{bluefin}");
    assert!(balance["last_billed_at"].is_null(), "{bluefin}");
    assert_eq!(balance["unbilled_segments"], 2590);
}

#[tokio::test]
async fn lists_default_page() {
    let sim = start().await;
    let reply = get(&sim, "/lists", Some(ACME_OWNER_KEY)).await;

    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(
        body["pagination"],
        json!({"page": 1, "per_page": 50, "total": 3, "total_pages": 1})
    );
    assert_eq!(
        body["lists"][0],
        json!({"id": "lst_main01", "name": "Main promotions", "number": "+18005551234"})
    );
    assert_eq!(body["lists"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn lists_paginate() {
    let sim = start().await;

    let first = get(&sim, "/lists?page=1&per_page=2", Some(ACME_OWNER_KEY))
        .await
        .json();
    let ids: Vec<&str> = first["lists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|list| list["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["lst_main01", "lst_flash02"]);
    assert_eq!(
        first["pagination"],
        json!({"page": 1, "per_page": 2, "total": 3, "total_pages": 2})
    );

    let second = get(&sim, "/lists?page=2&per_page=2", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(second["lists"].as_array().unwrap().len(), 1);
    assert_eq!(second["lists"][0]["id"], "lst_vip03");

    let past_end = get(&sim, "/lists?page=3&per_page=2", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(past_end["lists"], json!([]));
    assert_eq!(past_end["pagination"]["page"], 3);

    let max = get(&sim, "/lists?per_page=100", Some(ACME_OWNER_KEY)).await;
    assert_eq!(max.status, 200, "{}", max.text);
}

#[tokio::test]
async fn lists_reject_bad_paging() {
    let sim = start().await;
    let cases = [
        ("page=0", "invalid_page"),
        ("page=-1", "invalid_page"),
        ("page=two", "invalid_page"),
        ("per_page=0", "invalid_per_page"),
        ("per_page=101", "invalid_per_page"),
    ];
    for (query, code) in cases {
        let reply = get(&sim, &format!("/lists?{query}"), Some(ACME_OWNER_KEY)).await;
        assert_error(&reply, 400, code, &sim);
    }
}

#[tokio::test]
async fn unknown_path_is_not_found() {
    let sim = start().await;
    for path in ["/nope", "/account/", "", "/", "/billing"] {
        let reply = get(&sim, path, Some(ACME_OWNER_KEY)).await;
        assert_error(&reply, 404, "not_found", &sim);
    }
    // Unknown paths are recorded like any other /api/v2 request.
    let paths: Vec<String> = sim
        .requests()
        .into_iter()
        .map(|request| request.path)
        .collect();
    assert_eq!(paths, ["/nope", "/account/", "/", "/", "/billing"]);
}

#[tokio::test]
async fn non_get_method_not_allowed() {
    let sim = start().await;
    let response = client()
        .post(format!("{}/account", sim.base_url()))
        .header("X-Api-Key", ACME_OWNER_KEY)
        .send()
        .await
        .unwrap();
    let reply = read_reply(response).await;
    assert_error(&reply, 405, "method_not_allowed", &sim);
    assert_eq!(reply.headers["allow"], "GET");
}

#[tokio::test]
async fn requests_are_recorded() {
    let sim = start().await;
    let started = Utc::now() - Duration::seconds(1);
    get(&sim, "/usage?period=week", Some(ACME_OWNER_KEY)).await;
    get(&sim, "/account", None).await;

    let requests = sim.requests();
    assert_eq!(requests.len(), 2, "{}", request_log(&sim));

    let usage = &requests[0];
    assert_eq!(usage.method, "GET");
    assert_eq!(usage.path, "/usage");
    assert_eq!(usage.query.as_deref(), Some("period=week"));
    assert!(usage.api_key_present);
    assert_eq!(usage.key_fingerprint.as_deref(), Some("0001"));
    assert_eq!(usage.status, 200);
    assert!(usage.received_at >= started);

    let account = &requests[1];
    assert_eq!(account.path, "/account");
    assert_eq!(account.query, None);
    assert!(!account.api_key_present);
    assert_eq!(account.key_fingerprint, None);
    assert_eq!(account.status, 401);
    assert!(account.received_at >= usage.received_at);

    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn base_url_has_no_trailing_slash() {
    let sim = start().await;
    assert_eq!(
        sim.base_url(),
        format!("http://127.0.0.1:{}/api/v2", sim.addr().port())
    );
    assert_ne!(sim.addr().port(), 0);
}

#[tokio::test]
async fn lists_empty_account() {
    let mut seed = trackly_sim::Seed::demo();
    seed.accounts[1].lists.clear();
    let sim = trackly_sim::Simulator::start(seed, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    let reply = get(&sim, "/lists", Some(BLUEFIN_OWNER_KEY)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"lists": [], "pagination": {"page": 1, "per_page": 50, "total": 0, "total_pages": 0}})
    );
}
