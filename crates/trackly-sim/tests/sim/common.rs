//! Shared helpers: demo seed ids and keys, a client and a request log for failure messages.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use trackly_sim::{Seed, SimHandle, Simulator};

pub const ACME_ID: &str = "acc_8f2k1q";
pub const ACME_OWNER_KEY: &str = "trk_TESTacmeOWNERkey0000000000000001";
pub const ACME_MEMBER_KEY: &str = "trk_TESTacmeMEMBERkey000000000000002";
pub const BLUEFIN_ID: &str = "acc_3m7x9p";
pub const BLUEFIN_OWNER_KEY: &str = "trk_TESTbluefinOWNERkey0000000000003";
pub const BLUEFIN_VIEWER_KEY: &str = "trk_TESTbluefinVIEWERkey000000000004";
/// A key of the right format that the demo seed does not contain.
pub const UNKNOWN_KEY: &str = "trk_TESTunknownKEY000000000000000009";

pub async fn start() -> SimHandle {
    Simulator::start(Seed::demo(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the simulator starts on 127.0.0.1:0")
}

pub fn client() -> reqwest::Client {
    client_with_timeout(Duration::from_secs(5))
}

pub fn client_with_timeout(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

/// An HTTP response with its body kept as text, so that non-JSON bodies can be checked too.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {}", self.text))
    }
}

pub async fn read_reply(response: reqwest::Response) -> Reply {
    Reply {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

/// Sends `GET {base_url}{path_and_query}` with the key, if any, in `X-Api-Key`.
pub async fn get(sim: &SimHandle, path_and_query: &str, key: Option<&str>) -> Reply {
    let mut request = client().get(format!("{}{path_and_query}", sim.base_url()));
    if let Some(key) = key {
        request = request.header("X-Api-Key", key);
    }
    let response = request.send().await.unwrap_or_else(|error| {
        panic!("GET {path_and_query} failed: {error}\n{}", request_log(sim))
    });
    read_reply(response).await
}

/// Sends a request to the control API and returns the reply.
pub async fn control(
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let url = format!("http://{}{path}", sim.addr());
    let mut request = client().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    read_reply(request.send().await.unwrap()).await
}

/// Formats the simulator's request log for assertion messages.
pub fn request_log(sim: &SimHandle) -> String {
    let lines: Vec<String> = sim
        .requests()
        .iter()
        .map(|request| {
            format!(
                "  {} {}{} key={} -> {}",
                request.method,
                request.path,
                request
                    .query
                    .as_deref()
                    .map(|query| format!("?{query}"))
                    .unwrap_or_default(),
                request.key_fingerprint.as_deref().unwrap_or("-"),
                request.status
            )
        })
        .collect();
    format!("request log:\n{}", lines.join("\n"))
}

/// Asserts the status and the error `code` of an error reply.
pub fn assert_error(reply: &Reply, status: u16, code: &str, sim: &SimHandle) {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "body: {}\n{}",
        reply.text,
        request_log(sim)
    );
    assert_eq!(
        reply.json()["code"],
        code,
        "body: {}\n{}",
        reply.text,
        request_log(sim)
    );
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty()),
        "error text missing: {}",
        reply.text
    );
}
