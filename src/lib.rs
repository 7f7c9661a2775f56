//! m4watch: a monitoring sidecar for Apple M4 Max trading hosts.
//!
//! Data flows one way: sources -> store -> consumers.
//!
//! Layers, lowest first (README "Architecture"; `tests/architecture.rs` enforces them).
//! Every module is private unless a layer above this crate needs it: the `m4watch`
//! binary's commands (`config`, `shutdown`, `tls`, `catalog`, `validate`, `demo`,
//! `launchd`) and the few items re-exported below. Inside, a module's face is
//! `pub(crate)`; `unreachable_pub` keeps it that way.
//!
//! - `model`: the metric model (`MetricDef`, `Family`) and the alert model (state,
//!   `Labels`, `Severity`, `AlertSource`, the one fingerprint, the one compiled
//!   matcher). A leaf.
//! - [`shutdown`], [`tls`], [`logging`]: the graceful-shutdown signal; the TLS provider
//!   and every outgoing HTTP client; the log subscriber (identical warnings collapsed).
//!   Leaves.
//! - [`config`]: YAML config -> typed, validated structs; the embedded default.
//! - `clock`, `reload`: the wall clock and the one `every` loop; the reload channel.
//! - `store`: metric families from collectors, instruments, the encoded snapshot, the
//!   sample ring, and `store::views`: the typed views sources publish (trading,
//!   containers, probes) and consumers read.
//! - `persist`: SQLite, opened and migrated one way: alert state, samples, baselines.
//! - `collect`: the collector contract, the closed `CollectorKind` registry, the
//!   scheduler, the collectors (`hardware/`, `host/`, `process_groups/`,
//!   `containers/`, `probes`, `trading/`).
//! - `rules`, `history`: Prometheus rule files evaluated against the sample ring; the
//!   history writer.
//! - `alerts`: alert state, acknowledgements, silences, the evaluation loop.
//! - `notify`: routes alert events to Slack, email, PagerDuty, webhooks and
//!   Alertmanager through a durable SQLite outbox.
//! - `advise/` (one file per check), `health`: recommendations and the health verdict,
//!   from the store's views, families and ring.
//! - `heartbeat`: the dead-man's switch, a request off the host every interval while
//!   the rule loop evaluates and the outbox drains.
//! - `api`: HTTP routes (`/metrics`, readiness, the JSON API, one file per route group).
//! - [`validate`], [`demo`], [`launchd`]: the commands that sit on a running daemon.
//! - [`catalog`]: every exported metric family, aggregated from the modules' definitions.
//! - `app`: the wiring: config checks, start-up from the collector registry, shutdown.

#![warn(unreachable_pub)]

mod advise;
mod alerts;
mod api;
mod app;
pub mod catalog;
mod clock;
mod collect;
pub mod config;
pub mod demo;
mod health;
mod heartbeat;
mod history;
pub mod launchd;
pub mod logging;
mod model;
mod notify;
mod persist;
mod reload;
mod rules;
pub mod selfcheck;
pub mod shutdown;
mod store;
pub mod tls;
pub mod validate;

/// Running the daemon: what `main` and the in-process tests start.
pub use api::web::WebConfigError;
pub use app::{Error, Loaded, check_data_dir, exposure, load_config, run, serve};
/// `m4watch dump-raw` (macOS): the replay format's raw readings.
pub use collect::hardware::dump_raw;
/// `m4watch test-rules`: promtool-format rule tests.
pub use rules::promtool::run_files as run_rule_tests;

/// The parts the integration tests, benchmarks, fuzz targets and `statsd-load` drive
/// directly, one item at a time. Not an API: these names move with the code.
#[doc(hidden)]
pub mod internals {
    pub mod advise {
        pub use crate::advise::ring_reads;
    }
    pub mod alerts {
        pub use crate::alerts::evaluate::ring_filter;
    }
    pub mod api {
        pub use crate::api::guard;
        pub use crate::api::pages::{escape, operation_anchor};
        pub use crate::api::server::{Limits, serve};
    }
    pub mod clock {
        pub use crate::clock::unix_now_ms;
    }
    pub mod collect {
        pub use crate::collect::BlockingCollector;
        pub mod hardware {
            pub use crate::collect::hardware::HardwareCollector;
        }
        pub mod trading {
            pub use crate::collect::trading::baseline::Baselines;
            pub use crate::collect::trading::{Trading, TradingCollector};
            pub mod statsd {
                pub use crate::collect::trading::line::{
                    Line, MAX_VALUE, MIN_SAMPLE_RATE, MetricType, ParseError, lines, parse_line,
                    parse_packet, valid_name,
                };
                pub use crate::collect::trading::statsd::{Listener, grow_receive_buffer};
            }
        }
    }
    pub mod model {
        pub use crate::model::alert::fingerprint;
    }
    pub mod notify {
        pub use crate::model::alert::AlertSource;
        pub use crate::notify::email::{CA_AS_SERVER_HINT, Email};
        pub use crate::notify::outbox::Outbox;
        pub use crate::notify::{
            AlertEvent, AlertState, Ctx, Kind, Notification, Notifier, Reason,
        };
    }
    pub mod persist {
        pub use crate::persist::alerts::transitions_since;
    }
    pub mod rules {
        pub use crate::rules::promql::LOOKBACK_MS;
        pub use crate::rules::{Engine, RuleKind, load_embedded};
    }
    pub mod store {
        pub use crate::model::metric::Family;
        pub use crate::store::encode;
        pub use crate::store::ring::Ring;
    }
}
