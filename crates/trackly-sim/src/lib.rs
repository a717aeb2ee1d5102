//! Simulator of the Trackly SMS API endpoints that trackly-bot uses.
//!
//! It serves `GET /account`, `/usage`, `/billing/balance`, `/lists` and `/events` under `/api/v2`
//! with the response shapes of the Trackly API contract, for accounts and keys from a [`Seed`].
//! Tests script it through a [`SimHandle`]. Faults per key or path give late responses, 401, 403,
//! 429, 5xx, malformed or wrongly shaped JSON, or no response. Tests can also append events to an
//! account's feed, suspend accounts, revoke keys and read a log of every request. The same
//! controls are served over HTTP under `/_control` for local runs.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use trackly_sim::{Fault, FaultKind, Seed, Simulator};
//!
//! let sim = Simulator::start(Seed::demo(), "127.0.0.1:0".parse()?).await?;
//! sim.add_fault(Fault {
//!     key: None,
//!     path: Some("/usage".into()),
//!     times: Some(1),
//!     kind: FaultKind::RateLimited { retry_after_secs: Some(2) },
//! });
//! let base_url = sim.base_url(); // http://127.0.0.1:PORT/api/v2
//! # let _ = base_url;
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod api;
mod control;
mod fault;
mod feed;
mod periods;
mod seed;
mod server;
mod state;

use std::time::Duration;

pub use fault::{Fault, FaultKind};
pub use seed::{
    AccountStatus, Money, Seed, SeedAccount, SeedBalance, SeedKey, SeedList, UsagePeriods,
    UsageTotals, DEMO_SEED_TOML,
};
pub use server::{SimHandle, Simulator};
pub use state::{RecordedRequest, SimError};

/// How long a request under a `NoAnswer` fault is held before its connection is closed without
/// a response.
pub const NO_ANSWER_HOLD: Duration = Duration::from_secs(600);
