//! The notifier's self-metrics.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
};

use super::Reason;
use crate::model::{MetricDef, def};
use crate::store::Kind::{Counter, Gauge, Histogram as Hist};

/// The notifier's metric families.
pub(crate) const NOTIFICATIONS_TOTAL: MetricDef = def(
    "m4watch_notifications_total",
    Counter,
    &["receiver", "integration"],
    "Delivery attempts of notifications, per receiver and integration.",
);

pub(crate) const NOTIFICATIONS_FAILED_TOTAL: MetricDef = def(
    "m4watch_notifications_failed_total",
    Counter,
    &["receiver", "integration", "reason"],
    "Failed delivery attempts of notifications, per receiver, integration and bounded reason.",
);

pub(crate) const NOTIFICATIONS_MOVED_ASIDE_TOTAL: MetricDef = def(
    "m4watch_notifications_moved_aside_total",
    Counter,
    &["receiver", "integration"],
    "Notifications moved aside from the head of their receiver's queue after failing their first attempts, so later ones go out; each is still retried (in order with later ones of its group) until delivered or max_age.",
);

pub(crate) const NOTIFICATION_LATENCY_SECONDS: MetricDef = def(
    "m4watch_notification_latency_seconds",
    Hist,
    &["integration"],
    "Time one delivery attempt took, per integration, in seconds.",
);

pub(crate) const NOTIFICATION_QUEUE_LENGTH: MetricDef = def(
    "m4watch_notification_queue_length",
    Gauge,
    &[],
    "Notifications in the outbox waiting for delivery.",
);

pub(crate) const NOTIFICATION_SUBMIT_WAITS_TOTAL: MetricDef = def(
    "m4watch_notification_submit_waits_total",
    Counter,
    &[],
    "Alert events that found the dispatcher's bounded queue full and waited for room (none is dropped).",
);

pub(crate) const NOTIFICATION_TRANSITIONS_MISSED_TOTAL: MetricDef = def(
    "m4watch_notification_transitions_missed_total",
    Counter,
    &[],
    "Alert transitions the notifier missed because it fell more than 1024 behind the alert feed; each is logged as an error.",
);

pub(crate) const ALERTMANAGER_POSTS_TOTAL: MetricDef = def(
    "m4watch_alertmanager_posts_total",
    Counter,
    &["alertmanager"],
    "Posts of alerts to each Alertmanager (`scheme://host:port`): first notices, resolves and the re-posts every resend_delay that keep firing alerts alive there.",
);

pub(crate) const ALERTMANAGER_POST_FAILURES_TOTAL: MetricDef = def(
    "m4watch_alertmanager_post_failures_total",
    Counter,
    &["alertmanager"],
    "Posts of alerts that an Alertmanager (`scheme://host:port`) did not take; a first notice or resolve is retried from the outbox, a re-post waits for the next resend_delay.",
);

pub(crate) const NOTIFICATIONS_UNQUEUED_TOTAL: MetricDef = def(
    "m4watch_notifications_unqueued_total",
    Counter,
    &["receiver", "integration"],
    "Notifications the outbox could not store (the data directory takes no writes), sent from memory instead: retried a few times, lost if m4watch stops meanwhile.",
);

pub(crate) const METRICS: &[MetricDef] = &[
    NOTIFICATIONS_UNQUEUED_TOTAL,
    NOTIFICATIONS_TOTAL,
    NOTIFICATIONS_FAILED_TOTAL,
    NOTIFICATIONS_MOVED_ASIDE_TOTAL,
    NOTIFICATION_LATENCY_SECONDS,
    NOTIFICATION_QUEUE_LENGTH,
    NOTIFICATION_SUBMIT_WAITS_TOTAL,
    NOTIFICATION_TRANSITIONS_MISSED_TOTAL,
    ALERTMANAGER_POSTS_TOTAL,
    ALERTMANAGER_POST_FAILURES_TOTAL,
];

/// Posts and failures per Alertmanager, shared by every `alertmanager` integration.
#[derive(Clone)]
pub(crate) struct AlertmanagerCounters {
    pub posts: IntCounterVec,
    pub failures: IntCounterVec,
}

/// Instruments bumped by the workers.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub total: IntCounterVec,
    pub failed: IntCounterVec,
    pub moved_aside: IntCounterVec,
    pub latency: HistogramVec,
    pub queue: IntGauge,
    pub submit_waits: IntCounter,
    pub transitions_missed: IntCounter,
    pub alertmanagers: AlertmanagerCounters,
    pub unqueued: IntCounterVec,
}

impl Metrics {
    /// Creates the instruments and registers them (a second registration in the same
    /// registry, as in tests that start two daemons, keeps working unregistered).
    pub(crate) fn new(registry: &prometheus::Registry) -> Metrics {
        let opts = |d: MetricDef| Opts::new(d.name, d.help);
        let total = IntCounterVec::new(opts(NOTIFICATIONS_TOTAL), &["receiver", "integration"])
            .expect("valid metric");
        let failed = IntCounterVec::new(
            opts(NOTIFICATIONS_FAILED_TOTAL),
            &["receiver", "integration", "reason"],
        )
        .expect("valid metric");
        let moved_aside = IntCounterVec::new(
            opts(NOTIFICATIONS_MOVED_ASIDE_TOTAL),
            &["receiver", "integration"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(moved_aside.clone()));
        let d = NOTIFICATION_LATENCY_SECONDS;
        let latency = HistogramVec::new(
            HistogramOpts::new(d.name, d.help)
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["integration"],
        )
        .expect("valid metric");
        let d = NOTIFICATION_QUEUE_LENGTH;
        let queue = IntGauge::new(d.name, d.help).expect("valid metric");
        let _ = registry.register(Box::new(total.clone()));
        let _ = registry.register(Box::new(failed.clone()));
        let _ = registry.register(Box::new(latency.clone()));
        let _ = registry.register(Box::new(queue.clone()));
        let counter = |d: MetricDef| {
            let c = IntCounter::new(d.name, d.help).expect("valid metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let submit_waits = counter(NOTIFICATION_SUBMIT_WAITS_TOTAL);
        let transitions_missed = counter(NOTIFICATION_TRANSITIONS_MISSED_TOTAL);
        let per_am = |d: MetricDef| {
            let c = IntCounterVec::new(opts(d), &["alertmanager"]).expect("valid metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let unqueued = IntCounterVec::new(
            opts(NOTIFICATIONS_UNQUEUED_TOTAL),
            &["receiver", "integration"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(unqueued.clone()));
        let alertmanagers = AlertmanagerCounters {
            posts: per_am(ALERTMANAGER_POSTS_TOTAL),
            failures: per_am(ALERTMANAGER_POST_FAILURES_TOTAL),
        };
        Metrics {
            total,
            failed,
            moved_aside,
            latency,
            queue,
            submit_waits,
            transitions_missed,
            alertmanagers,
            unqueued,
        }
    }

    /// Creates every series of one receiver's integration at zero, so `rate()` and
    /// alerts on failures work before the first one.
    pub(crate) fn precreate(&self, receiver: &str, integration: &str) {
        self.total.with_label_values(&[receiver, integration]);
        self.moved_aside.with_label_values(&[receiver, integration]);
        self.unqueued.with_label_values(&[receiver, integration]);
        for r in Reason::ALL {
            self.failed
                .with_label_values(&[receiver, integration, r.as_str()]);
        }
        let _: Histogram = self.latency.with_label_values(&[integration]);
    }
}
