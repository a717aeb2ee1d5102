//! The control API under /_control, used over HTTP as curl would.

use reqwest::Method;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn add_list_and_clear_faults() {
    let sim = start().await;

    let added = control(
        &sim,
        Method::POST,
        "/_control/faults",
        Some(json!({"key": ACME_OWNER_KEY, "path": "/usage", "times": 2, "kind": "rate_limited", "retry_after_secs": 4})),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.text);
    assert!(
        !added.text.contains(ACME_OWNER_KEY),
        "the key is echoed: {}",
        added.text
    );

    let usage = get(&sim, "/usage", Some(ACME_OWNER_KEY)).await;
    assert_eq!(usage.status, 429, "{}", usage.text);
    assert_eq!(usage.headers["retry-after"], "4");

    let listed = control(&sim, Method::GET, "/_control/faults", None)
        .await
        .json();
    assert_eq!(
        listed,
        json!({"faults": [{
            "key_fingerprint": "0001",
            "path": "/usage",
            "times_remaining": 1,
            "kind": "rate_limited",
            "retry_after_secs": 4,
        }]})
    );

    let cleared = control(&sim, Method::DELETE, "/_control/faults", None).await;
    assert_eq!(cleared.json(), json!({"cleared": 1}));
    assert_eq!(get(&sim, "/usage", Some(ACME_OWNER_KEY)).await.status, 200);
}

#[tokio::test]
async fn fault_body_errors_are_explained() {
    let sim = start().await;
    let cases = [
        (json!({"kind": "explode"}), "explode"),
        (json!({"kind": "server_error", "status": 404}), "404"),
        (json!({"kind": "delay"}), "ms"),
        (json!({"kind": "unauthorized", "tims": 1}), "tims"),
        (json!({"kind": "delay", "ms": 5, "times": "two"}), "times"),
        (
            json!({"path": "/api/v2/account", "kind": "no_answer"}),
            "/api/v2/account",
        ),
    ];
    for (body, mentioned) in cases {
        let reply = control(&sim, Method::POST, "/_control/faults", Some(body.clone())).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(mentioned), "{body}: {error}");
    }
    let listed = control(&sim, Method::GET, "/_control/faults", None)
        .await
        .json();
    assert_eq!(listed, json!({"faults": []}));
}

#[tokio::test]
async fn fault_that_never_applies_is_rejected() {
    let sim = start().await;
    let cases = [
        (
            json!({"path": "/acount", "kind": "unauthorized"}),
            [
                "\"/acount\"",
                "/account, /usage, /billing/balance, /lists, /events",
            ],
        ),
        (
            json!({"path": "/account/", "kind": "unauthorized"}),
            ["\"/account/\"", "Did you mean \"/account\"?"],
        ),
        (
            json!({"path": "/usage?period=week", "kind": "wrong_shape"}),
            ["\"/usage?period=week\"", "Did you mean \"/usage\"?"],
        ),
        (
            json!({"times": 0, "kind": "unauthorized"}),
            ["times 0", "from 1 to 4294967295"],
        ),
        (json!({"key": "", "kind": "unauthorized"}), ["key", "empty"]),
        (
            json!({"kind": "delay", "ms": 600_001}),
            ["600001", "at most 600000"],
        ),
    ];
    for (body, mentioned) in cases {
        let reply = control(&sim, Method::POST, "/_control/faults", Some(body.clone())).await;
        assert_error(&reply, 400, "invalid_fault", &sim);
        let error = reply.json()["error"].as_str().unwrap().to_string();
        for text in mentioned {
            assert!(error.contains(text), "{body}: {error}");
        }
    }

    let listed = control(&sim, Method::GET, "/_control/faults", None)
        .await
        .json();
    assert_eq!(listed, json!({"faults": []}));
}

#[tokio::test]
async fn fault_accepted_on_every_endpoint_path() {
    let sim = start().await;
    let paths = [
        "/account",
        "/usage",
        "/billing/balance",
        "/lists",
        "/events",
    ];
    for path in paths {
        let body = json!({"path": path, "times": 1, "kind": "server_error", "status": 503});
        let reply = control(&sim, Method::POST, "/_control/faults", Some(body)).await;
        assert_eq!(reply.status, 201, "{path}: {}", reply.text);
    }
    let longest_delay = json!({"times": 1, "kind": "delay", "ms": 600_000});
    let reply = control(&sim, Method::POST, "/_control/faults", Some(longest_delay)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);

    // Each path fault applies to its own endpoint, whatever the query.
    for path in paths {
        let reply = get(&sim, &format!("{path}?x=1"), Some(ACME_OWNER_KEY)).await;
        assert_eq!(reply.status, 503, "{path}: {}", reply.text);
    }
}

#[tokio::test]
async fn wrong_method_names_allowed_methods() {
    let sim = start().await;
    let routes = [
        ("/_control/faults", Method::PUT, "GET, POST, DELETE"),
        ("/_control/requests", Method::POST, "GET, DELETE"),
        ("/_control/accounts/acc_8f2k1q/events", Method::GET, "POST"),
        (
            "/_control/accounts/acc_8f2k1q/status",
            Method::DELETE,
            "POST",
        ),
        ("/_control/keys/revoke", Method::PATCH, "POST"),
        ("/_control/reset", Method::GET, "POST"),
    ];
    for (path, method, allowed) in routes {
        let reply = control(&sim, method.clone(), path, None).await;
        assert_error(&reply, 405, "method_not_allowed", &sim);
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(method.as_str()), "{method} {path}: {error}");
        assert!(error.contains(path), "{method} {path}: {error}");
        assert!(
            error.ends_with(&format!("Allowed methods: {allowed}")),
            "{method} {path}: {error}"
        );

        // The body names the same methods as the Allow header, which also lists HEAD for GET.
        let allow_header = reply.headers["allow"].to_str().unwrap();
        let mut from_header: Vec<&str> = allow_header
            .split(',')
            .map(str::trim)
            .filter(|name| *name != "HEAD")
            .collect();
        let mut from_body: Vec<&str> = allowed.split(", ").collect();
        from_header.sort_unstable();
        from_body.sort_unstable();
        assert_eq!(from_header, from_body, "{method} {path}");
    }
}

#[tokio::test]
async fn body_errors_give_readable_locations() {
    let sim = start().await;
    let events_path = format!("/_control/accounts/{ACME_ID}/events");
    let cases = [
        // A syntax error where a key should be: no location, but serde_json's line and column.
        ("/_control/faults", r#"{"kind": "delay", "ms": 5,}"#, None),
        ("/_control/faults", "{", None),
        (
            events_path.as_str(),
            r#"{"events": [{"type": "opt_out",}]}"#,
            Some("at `events[0]`"),
        ),
        ("/_control/keys/revoke", r#"{"key": 5}"#, Some("at `key`")),
    ];
    for (path, body, location) in cases {
        let reply = post_raw(&sim, path, body).await;
        assert_error(&reply, 400, "invalid_body", &sim);
        let error = reply.json()["error"].as_str().unwrap().to_string();
        assert!(!error.contains('?'), "{body}: {error}");
        assert!(error.contains("line 1 column"), "{body}: {error}");
        match location {
            Some(location) => assert!(error.contains(location), "{body}: {error}"),
            None => assert!(!error.contains(" at `"), "{body}: {error}"),
        }
    }

    let empty = post_raw(&sim, "/_control/faults", "").await;
    assert_error(&empty, 400, "invalid_body", &sim);
    let error = empty.json()["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("Missing request body"), "{error}");
    assert!(error.contains(r#""kind": "unauthorized""#), "{error}");
}

#[tokio::test]
async fn fault_body_without_content_type() {
    let sim = start().await;
    let response = client()
        .post(format!("http://{}/_control/faults", sim.addr()))
        .body(r#"{"kind": "wrong_shape", "times": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let reply = get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    assert!(reply.json().get("account").is_none(), "{}", reply.text);
}

#[tokio::test]
async fn requests_listed_and_control_not_recorded() {
    let sim = start().await;
    get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    control(&sim, Method::GET, "/_control/faults", None).await;

    let listed = control(&sim, Method::GET, "/_control/requests", None)
        .await
        .json();
    let requests = listed["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{listed}");
    assert_eq!(requests[0]["method"], "GET");
    assert_eq!(requests[0]["path"], "/account");
    assert_eq!(requests[0]["status"], 200);
    assert_eq!(requests[0]["api_key_present"], true);
    assert_eq!(requests[0]["key_fingerprint"], "0001");
    assert!(requests[0]["received_at"].is_string());

    let cleared = control(&sim, Method::DELETE, "/_control/requests", None).await;
    assert_eq!(cleared.json(), json!({"cleared": 1}));
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn append_events_over_http() {
    let sim = start().await;
    let body = json!({"events": [
        {"id": "evt_a", "type": "inbound_sms", "data": {"body": "hi"}},
        {"id": "evt_a", "type": "inbound_sms", "data": {"body": "hi"}},
    ]});

    let reply = control(
        &sim,
        Method::POST,
        &format!("/_control/accounts/{ACME_ID}/events"),
        Some(body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"account_id": ACME_ID, "appended": 2, "cursors": ["c_00001", "c_00002"]})
    );

    let page = get(&sim, "/events?after=c_00000", Some(ACME_OWNER_KEY))
        .await
        .json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["events"][1]["id"], "evt_a");
}

#[tokio::test]
async fn append_events_errors() {
    let sim = start().await;

    let unknown = control(
        &sim,
        Method::POST,
        "/_control/accounts/acc_missing/events",
        Some(json!({"events": []})),
    )
    .await;
    assert_error(&unknown, 404, "unknown_account", &sim);
    assert!(unknown.text.contains("acc_missing"), "{}", unknown.text);

    let bad_event = control(
        &sim,
        Method::POST,
        &format!("/_control/accounts/{ACME_ID}/events"),
        Some(json!({"events": ["text"]})),
    )
    .await;
    assert_error(&bad_event, 400, "invalid_event", &sim);

    let bad_body = control(
        &sim,
        Method::POST,
        &format!("/_control/accounts/{ACME_ID}/events"),
        Some(json!({"event": {}})),
    )
    .await;
    assert_error(&bad_body, 400, "invalid_body", &sim);
}

#[tokio::test]
async fn set_status_over_http() {
    let sim = start().await;
    let path = format!("/_control/accounts/{ACME_ID}/status");

    let suspended = control(
        &sim,
        Method::POST,
        &path,
        Some(json!({"status": "suspended"})),
    )
    .await;
    assert_eq!(suspended.status, 200, "{}", suspended.text);
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        403
    );

    control(&sim, Method::POST, &path, Some(json!({"status": "active"}))).await;
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        200
    );

    let bad = control(&sim, Method::POST, &path, Some(json!({"status": "paused"}))).await;
    assert_error(&bad, 400, "invalid_body", &sim);
    assert!(bad.text.contains("paused"), "{}", bad.text);

    let unknown = control(
        &sim,
        Method::POST,
        "/_control/accounts/acc_missing/status",
        Some(json!({"status": "suspended"})),
    )
    .await;
    assert_error(&unknown, 404, "unknown_account", &sim);
}

#[tokio::test]
async fn revoke_key_over_http() {
    let sim = start().await;

    let revoked = control(
        &sim,
        Method::POST,
        "/_control/keys/revoke",
        Some(json!({"key": ACME_MEMBER_KEY})),
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert!(!revoked.text.contains(ACME_MEMBER_KEY), "{}", revoked.text);
    assert_error(
        &get(&sim, "/account", Some(ACME_MEMBER_KEY)).await,
        401,
        "invalid_api_key",
        &sim,
    );

    let unknown = control(
        &sim,
        Method::POST,
        "/_control/keys/revoke",
        Some(json!({"key": UNKNOWN_KEY})),
    )
    .await;
    assert_error(&unknown, 404, "unknown_key", &sim);
    assert!(!unknown.text.contains(UNKNOWN_KEY), "{}", unknown.text);
}

#[tokio::test]
async fn reset_clears_faults_and_requests() {
    let sim = start().await;
    control(
        &sim,
        Method::POST,
        "/_control/faults",
        Some(json!({"kind": "unauthorized"})),
    )
    .await;
    get(&sim, "/account", Some(ACME_OWNER_KEY)).await;

    let reset = control(&sim, Method::POST, "/_control/reset", None).await;
    assert_eq!(
        reset.json(),
        json!({"faults_cleared": 1, "requests_cleared": 1})
    );

    assert!(sim.requests().is_empty());
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        200
    );
}

#[tokio::test]
async fn unknown_control_path_is_not_found() {
    let sim = start().await;
    let reply = control(&sim, Method::GET, "/_control/nothing", None).await;
    assert_error(&reply, 404, "not_found", &sim);
}

/// Sends `body` as is, without a `Content-Type`, as `curl -d` would.
async fn post_raw(sim: &trackly_sim::SimHandle, path: &str, body: &str) -> Reply {
    let response = client()
        .post(format!("http://{}{path}", sim.addr()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    read_reply(response).await
}
