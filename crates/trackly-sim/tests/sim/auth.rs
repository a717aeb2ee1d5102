//! Authentication errors: missing, unknown and revoked keys, and suspended accounts.

use trackly_sim::AccountStatus;

use crate::common::*;

const ENDPOINTS: [&str; 5] = [
    "/account",
    "/usage",
    "/billing/balance",
    "/lists",
    "/events",
];

#[tokio::test]
async fn missing_key_on_every_endpoint() {
    let sim = start().await;
    for path in ENDPOINTS {
        let reply = get(&sim, path, None).await;
        assert_error(&reply, 401, "missing_api_key", &sim);
    }
}

#[tokio::test]
async fn empty_key_counts_as_missing() {
    let sim = start().await;
    let reply = get(&sim, "/account", Some("")).await;
    assert_error(&reply, 401, "missing_api_key", &sim);
    assert!(!sim.requests()[0].api_key_present);
}

#[tokio::test]
async fn unknown_key_is_invalid() {
    let sim = start().await;
    for key in [UNKNOWN_KEY, "not-a-key"] {
        let reply = get(&sim, "/account", Some(key)).await;
        assert_error(&reply, 401, "invalid_api_key", &sim);
        assert_eq!(reply.json()["error"], "Invalid API key");
    }
}

#[tokio::test]
async fn authorization_header_is_not_a_key() {
    let sim = start().await;
    let response = client()
        .get(format!("{}/account", sim.base_url()))
        .bearer_auth(ACME_OWNER_KEY)
        .send()
        .await
        .unwrap();
    assert_error(&read_reply(response).await, 401, "missing_api_key", &sim);
}

#[tokio::test]
async fn revoked_key_is_invalid_at_once() {
    let sim = start().await;
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        200
    );

    sim.revoke_key(ACME_OWNER_KEY).unwrap();

    for path in ENDPOINTS {
        let reply = get(&sim, path, Some(ACME_OWNER_KEY)).await;
        assert_error(&reply, 401, "invalid_api_key", &sim);
    }
    // The account's other key still works.
    let member = get(&sim, "/account", Some(ACME_MEMBER_KEY)).await;
    assert_eq!(member.status, 200, "{}", member.text);
}

#[tokio::test]
async fn revoke_unknown_key_fails() {
    let sim = start().await;
    let error = sim.revoke_key(UNKNOWN_KEY).unwrap_err().to_string();
    assert!(error.contains("0009"), "{error}");
    assert!(
        !error.contains(UNKNOWN_KEY),
        "the error shows the whole key: {error}"
    );
}

#[tokio::test]
async fn suspended_account_answers_403_without_code() {
    let sim = start().await;
    sim.set_account_status(ACME_ID, AccountStatus::Suspended)
        .unwrap();

    for key in [ACME_OWNER_KEY, ACME_MEMBER_KEY] {
        for path in ENDPOINTS {
            let reply = get(&sim, path, Some(key)).await;
            assert_eq!(
                reply.status,
                403,
                "{path}: {}\n{}",
                reply.text,
                request_log(&sim)
            );
            assert_eq!(
                reply.json(),
                serde_json::json!({"error": "Account is suspended"}),
                "{path}"
            );
        }
    }

    // Other accounts are not affected.
    let bluefin = get(&sim, "/account", Some(BLUEFIN_OWNER_KEY)).await;
    assert_eq!(bluefin.status, 200, "{}", bluefin.text);
}

#[tokio::test]
async fn reactivated_account_answers_again() {
    let sim = start().await;
    sim.set_account_status(ACME_ID, AccountStatus::Suspended)
        .unwrap();
    assert_eq!(
        get(&sim, "/account", Some(ACME_OWNER_KEY)).await.status,
        403
    );

    sim.set_account_status(ACME_ID, AccountStatus::Active)
        .unwrap();
    let reply = get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["account"]["status"], "active");
}

#[tokio::test]
async fn invalid_key_checked_before_suspension() {
    let sim = start().await;
    sim.set_account_status(ACME_ID, AccountStatus::Suspended)
        .unwrap();
    sim.revoke_key(ACME_MEMBER_KEY).unwrap();

    let reply = get(&sim, "/account", Some(ACME_MEMBER_KEY)).await;
    assert_error(&reply, 401, "invalid_api_key", &sim);
}

#[tokio::test]
async fn set_status_of_unknown_account_fails() {
    let sim = start().await;
    let error = sim
        .set_account_status("acc_missing", AccountStatus::Suspended)
        .unwrap_err()
        .to_string();
    assert!(error.contains("acc_missing"), "{error}");
}

#[tokio::test]
async fn request_log_never_holds_the_key() {
    let sim = start().await;
    get(&sim, "/account", Some(ACME_OWNER_KEY)).await;
    get(&sim, "/account", Some(UNKNOWN_KEY)).await;

    let requests = sim.requests();
    assert_eq!(requests[0].key_fingerprint.as_deref(), Some("0001"));
    assert_eq!(requests[1].key_fingerprint.as_deref(), Some("0009"));
    assert_eq!((requests[0].status, requests[1].status), (200, 401));

    let dump = format!("{requests:?}");
    assert!(!dump.contains(ACME_OWNER_KEY), "{dump}");
    assert!(!dump.contains(UNKNOWN_KEY), "{dump}");
}
