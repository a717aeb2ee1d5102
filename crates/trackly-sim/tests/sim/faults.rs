//! Each fault kind, and how faults match requests by key, path and count.

use std::time::{Duration, Instant};

use serde_json::json;
use trackly_sim::{Fault, FaultKind};

use crate::common::*;

fn fault(kind: FaultKind) -> Fault {
    Fault {
        key: None,
        path: None,
        times: None,
        kind,
    }
}

#[tokio::test]
async fn delay_then_normal_answer() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Delay { ms: 250 }));

    let started = Instant::now();
    let reply = get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    let elapsed = started.elapsed();

    assert!(
        elapsed >= Duration::from_millis(250),
        "answered after {elapsed:?}"
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["account"]["id"], ACME_ID);
}

#[tokio::test]
async fn delay_still_authenticates() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Delay { ms: 10 }));
    let reply = get(&sim, "/account", None).await;
    assert_error(&reply, 401, "missing_api_key", &sim);
}

#[tokio::test]
async fn unauthorized_body() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Unauthorized));

    let reply = get(&sim, "/usage", Some(ACME_OWNER_KEY)).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
    assert_eq!(
        reply.json(),
        json!({"error": "Invalid API key", "code": "invalid_api_key"})
    );
}

#[tokio::test]
async fn suspended_body_has_no_code() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Suspended));

    let reply = get(&sim, "/billing/balance", Some(ACME_OWNER_KEY)).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(reply.json(), json!({"error": "Account is suspended"}));
}

#[tokio::test]
async fn not_enabled_names_the_product() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::NotEnabled {
        product: "email".into(),
    }));

    let reply = get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    assert_error(&reply, 403, "email_not_enabled", &sim);
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("email"), "{error}");
}

#[tokio::test]
async fn rate_limited_with_retry_after() {
    let sim = start().await;
    sim.add_fault(Fault {
        times: Some(1),
        ..fault(FaultKind::RateLimited {
            retry_after_secs: Some(7),
        })
    });
    sim.add_fault(Fault {
        times: Some(1),
        ..fault(FaultKind::RateLimited {
            retry_after_secs: None,
        })
    });

    let with_header = get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    assert_eq!(with_header.status, 429, "{}", with_header.text);
    assert_eq!(with_header.headers["retry-after"], "7");
    assert!(with_header.json()["error"].is_string());

    let without_header = get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    assert_eq!(without_header.status, 429, "{}", without_header.text);
    assert!(
        !without_header.headers.contains_key("retry-after"),
        "{:?}",
        without_header.headers
    );
}

#[tokio::test]
async fn server_error_status_and_json_body() {
    let sim = start().await;
    for status in [500, 502, 503, 504] {
        sim.clear_faults();
        sim.add_fault(fault(FaultKind::ServerError { status }));

        let reply = get(&sim, "/usage", Some(ACME_OWNER_KEY)).await;
        assert_eq!(reply.status.as_u16(), status, "{}", reply.text);
        assert!(reply.json()["error"].is_string(), "{}", reply.text);
    }
}

#[tokio::test]
async fn server_error_outside_5xx_answers_500() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::ServerError { status: 200 }));
    let reply = get(&sim, "/usage", Some(ACME_OWNER_KEY)).await;
    assert_eq!(reply.status, 500, "{}", reply.text);
}

#[tokio::test]
async fn malformed_json_is_not_json() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::MalformedJson));

    let reply = get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    let parsed = serde_json::from_str::<serde_json::Value>(&reply.text);
    assert!(parsed.is_err(), "body parsed as JSON: {}", reply.text);
}

#[tokio::test]
async fn wrong_shape_is_json_without_expected_fields() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::WrongShape));

    for path in [
        "/account",
        "/usage",
        "/billing/balance",
        "/lists",
        "/events",
    ] {
        let reply = get(&sim, path, Some(ACME_OWNER_KEY)).await;
        assert_eq!(reply.status, 200, "{path}");
        let body = reply.json();
        for field in [
            "account",
            "usage",
            "balance",
            "lists",
            "events",
            "next_cursor",
        ] {
            assert!(body.get(field).is_none(), "{path}: {field} in {body}");
        }
    }
}

#[tokio::test]
async fn no_answer_times_out_the_client() {
    let sim = start().await;
    sim.add_fault(Fault {
        path: Some("/events".into()),
        ..fault(FaultKind::NoAnswer)
    });

    let started = Instant::now();
    let result = client_with_timeout(Duration::from_millis(300))
        .get(format!("{}/events", sim.base_url()))
        .header("X-Api-Key", ACME_OWNER_KEY)
        .send()
        .await;
    let elapsed = started.elapsed();

    let error = result.expect_err("a no_answer fault must not answer");
    assert!(error.is_timeout(), "expected a timeout, got {error}");
    assert!(
        elapsed < Duration::from_secs(2),
        "gave up after {elapsed:?}"
    );

    let requests = sim.requests();
    assert_eq!(requests.len(), 1, "{}", request_log(&sim));
    assert_eq!(requests[0].path, "/events");
    assert_eq!(
        requests[0].status, 0,
        "an unanswered request records status 0"
    );

    // Other paths still respond normally.
    let account = get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    assert_eq!(account.status, 200, "{}", account.text);
}

#[tokio::test]
async fn shutdown_ends_held_requests() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::NoAnswer));
    let url = format!("{}/account", sim.base_url());

    let held = tokio::spawn(async move {
        client_with_timeout(Duration::from_secs(5))
            .get(url)
            .header("X-Api-Key", ACME_OWNER_KEY)
            .send()
            .await
    });
    // Wait until the simulator has received the request.
    for _ in 0..100 {
        if !sim.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(sim.requests().len(), 1, "the request never arrived");

    let started = Instant::now();
    sim.shutdown().await;
    let result = held.await.unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        started.elapsed()
    );
    let error = result.expect_err("a held request gets no answer");
    assert!(
        !error.is_timeout(),
        "the connection should close, not time out: {error}"
    );
}

#[tokio::test]
async fn times_limits_applications() {
    let sim = start().await;
    sim.add_fault(Fault {
        times: Some(2),
        ..fault(FaultKind::ServerError { status: 503 })
    });

    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            get(&sim, "/account", Some(ACME_OWNER_KEY))
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, [503, 503, 200, 200], "{}", request_log(&sim));
}

#[tokio::test]
async fn fault_matches_only_its_key() {
    let sim = start().await;
    sim.add_fault(Fault {
        key: Some(ACME_MEMBER_KEY.into()),
        ..fault(FaultKind::Unauthorized)
    });

    assert_eq!(
        get(&sim, "/account", Some(ACME_MEMBER_KEY)).await.status,
        401
    );
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        200
    );
    assert_eq!(
        get(&sim, "/account", Some(BLUEFIN_OWNER_KEY)).await.status,
        200
    );
    // A keyed fault does not match a request without a key, which fails authentication instead.
    assert_error(
        &get(&sim, "/account", None).await,
        401,
        "missing_api_key",
        &sim,
    );
}

#[tokio::test]
async fn fault_matches_only_its_path() {
    let sim = start().await;
    sim.add_fault(Fault {
        path: Some("/billing/balance".into()),
        ..fault(FaultKind::ServerError { status: 502 })
    });

    assert_eq!(
        get(&sim, "/billing/balance", Some(ACME_OWNER_KEY))
            .await
            .status,
        502
    );
    assert_eq!(
        get(&sim, "/billing/balance?x=1", Some(ACME_OWNER_KEY))
            .await
            .status,
        502,
        "the query is not part of the path"
    );
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        200
    );
    assert_eq!(get(&sim, "/usage", Some(ACME_OWNER_KEY)).await.status, 200);
}

#[tokio::test]
async fn fault_applies_before_authentication() {
    let sim = start().await;
    sim.add_fault(Fault {
        key: Some(UNKNOWN_KEY.into()),
        ..fault(FaultKind::RateLimited {
            retry_after_secs: Some(1),
        })
    });
    sim.add_fault(Fault {
        path: Some("/lists".into()),
        ..fault(FaultKind::ServerError { status: 500 })
    });

    assert_eq!(get(&sim, "/account", Some(UNKNOWN_KEY)).await.status, 429);
    assert_eq!(get(&sim, "/lists", None).await.status, 500);
}

#[tokio::test]
async fn first_matching_fault_wins() {
    let sim = start().await;
    sim.add_fault(Fault {
        path: Some("/usage".into()),
        times: Some(1),
        ..fault(FaultKind::Suspended)
    });
    sim.add_fault(fault(FaultKind::ServerError { status: 503 }));

    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        503
    );
    assert_eq!(get(&sim, "/usage", Some(ACME_OWNER_KEY)).await.status, 403);
    assert_eq!(get(&sim, "/usage", Some(ACME_OWNER_KEY)).await.status, 503);
}

#[tokio::test]
async fn clear_faults_restores_answers() {
    let sim = start().await;
    sim.add_fault(fault(FaultKind::Unauthorized));
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        401
    );

    sim.clear_faults();
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        200
    );
}

#[tokio::test]
async fn fault_kind_json_round_trip() {
    let kinds = [
        (
            json!({"kind": "delay", "ms": 5}),
            FaultKind::Delay { ms: 5 },
        ),
        (json!({"kind": "unauthorized"}), FaultKind::Unauthorized),
        (json!({"kind": "suspended"}), FaultKind::Suspended),
        (
            json!({"kind": "not_enabled", "product": "email"}),
            FaultKind::NotEnabled {
                product: "email".into(),
            },
        ),
        (
            json!({"kind": "rate_limited", "retry_after_secs": 3}),
            FaultKind::RateLimited {
                retry_after_secs: Some(3),
            },
        ),
        (
            json!({"kind": "rate_limited"}),
            FaultKind::RateLimited {
                retry_after_secs: None,
            },
        ),
        (
            json!({"kind": "server_error", "status": 502}),
            FaultKind::ServerError { status: 502 },
        ),
        (json!({"kind": "malformed_json"}), FaultKind::MalformedJson),
        (json!({"kind": "wrong_shape"}), FaultKind::WrongShape),
        (json!({"kind": "no_answer"}), FaultKind::NoAnswer),
    ];
    for (value, expected) in kinds {
        let parsed: FaultKind = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(parsed, expected, "{value}");

        let mut fault_json = value.clone();
        fault_json["path"] = json!("/account");
        let parsed_fault: Fault = serde_json::from_value(fault_json).unwrap();
        assert_eq!(parsed_fault.kind, expected, "{value}");
        assert_eq!(parsed_fault.path.as_deref(), Some("/account"));
    }
}
