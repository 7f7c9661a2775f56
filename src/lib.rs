//! m4watch: a monitoring sidecar for Apple M4 Max trading hosts.
//!
//! Data flows one way: sources -> store -> consumers.
//!
//! Layers, lowest first (README "Architecture"; `tests/architecture.rs` enforces them):
//!
//! - [`model`]: the metric model (`MetricDef`, `Family`) and the alert model (state,
//!   label sets, the one fingerprint, the one compiled matcher). A leaf.
//! - [`config`]: YAML config -> typed, validated structs; the embedded default. A leaf.
//! - [`shutdown`]: the graceful-shutdown signal tasks race against.
//! - [`clock`]: the wall clock and the one `every` loop periodic tasks run on.
//! - [`store`]: metric families from collectors, instruments, the encoded snapshot,
//!   the sample ring.
//! - [`persist`]: SQLite, opened and migrated one way: alert state, samples, baselines.
//! - [`collect`]: the collector contract, the registry, the scheduler, the collectors.
//! - [`rules`]: Prometheus rule files evaluated against the store's sample ring.
//! - [`history`]: the history writer (configured families into SQLite).
//! - [`alerts`]: alert state, acknowledgements, silences, the evaluation loop.
//! - [`notify`]: routes alert events to Slack, email, PagerDuty, webhooks and
//!   Alertmanager through a durable SQLite outbox.
//! - [`health`]: the system-health verdict from collector runs, probes, alerts and the score.
//! - [`api`]: HTTP routes (`/metrics`, readiness, the JSON API).
//! - [`demo`]: `m4watch demo`, a synthetic M4 Max recording and a StatsD load generator.
//! - [`launchd`]: the macOS launchd agent (`install-launchd`).
//! - [`validate`]: `m4watch validate`, checks a running instance from the outside.
//! - [`catalog`]: every exported metric family, aggregated from the modules' definitions.
//! - [`app`]: the wiring: config checks, start-up from the collector registry, shutdown.

pub mod advise;
pub mod alerts;
pub mod api;
pub mod app;
pub mod catalog;
pub mod clock;
pub mod collect;
pub mod config;
pub mod demo;
pub mod health;
pub mod history;
pub mod launchd;
pub mod model;
pub mod notify;
pub mod persist;
pub mod reload;
pub mod rules;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod validate;

pub use app::{Error, run, serve};
