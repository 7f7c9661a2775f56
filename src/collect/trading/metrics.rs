//! The families the trading module exports: each one's name, type, labels and help,
//! and the lists the catalog and the rule engine read.

use crate::model::{MetricDef, def};
use crate::store::Kind;

/// Every family this module exports.
pub(crate) const TRADING_LATENCY_QUANTILE_SECONDS: MetricDef = def(
    "m4watch_trading_latency_quantile_seconds",
    Kind::Summary,
    &["operation", "window", "quantile"],
    "Latency quantiles (0.5, 0.95, 0.99, 0.999) of an operation over a sliding window, in seconds, from an HdrHistogram (within 1%); its _sum and _count are cumulative since m4watch started (the same in every window, as Prometheus reads a summary's), the window's own count and mean are the gauges m4watch_trading_latency_window_observations and m4watch_trading_latency_window_mean_seconds; absent when the window saw no observation.",
);

pub(crate) const TRADING_LATENCY_WINDOW_OBSERVATIONS: MetricDef = def(
    "m4watch_trading_latency_window_observations",
    Kind::Gauge,
    &["operation", "window"],
    "Observations of an operation in a sliding window: how many samples its window's quantiles rest on; absent when the window saw none.",
);

pub(crate) const TRADING_LATENCY_WINDOW_MEAN_SECONDS: MetricDef = def(
    "m4watch_trading_latency_window_mean_seconds",
    Kind::Gauge,
    &["operation", "window"],
    "Exact mean latency of an operation over a sliding window, in seconds (the window's sum over its observations); absent when the window saw none.",
);

pub(crate) const TRADING_LATENCY_SECONDS: MetricDef = def(
    "m4watch_trading_latency_seconds",
    Kind::Histogram,
    &["operation"],
    "Latency of an operation since m4watch started, in seconds, as a classic histogram (25 µs to 10 s buckets) that aggregates across hosts.",
);

pub(crate) const TRADING_LATENCY_BASELINE_SECONDS: MetricDef = def(
    "m4watch_trading_latency_baseline_seconds",
    Kind::Gauge,
    &["operation", "quantile"],
    "Baseline latency of an operation (quantile 0.5 or 0.95), in seconds: the median of its per-period quantiles over the latest history.baseline_periods complete periods; absent until one period is complete.",
);

pub(crate) const TRADING_EVENTS_TOTAL: MetricDef = def(
    "m4watch_trading_events_total",
    Kind::Counter,
    &["stream"],
    "Events counted by a StatsD counter stream since m4watch started, scaled up by the sample rate.",
);

pub(crate) const TRADING_THROUGHPUT_PER_SECOND: MetricDef = def(
    "m4watch_trading_throughput_per_second",
    Kind::Gauge,
    &["stream", "window"],
    "Events per second of a StatsD counter stream over a sliding window.",
);

pub(crate) const TRADING_VALUE: MetricDef = def(
    "m4watch_trading_value",
    Kind::Gauge,
    &["name"],
    "Last value of a StatsD gauge, in the unit the sender uses.",
);

pub(crate) const TRADING_SET_UNIQUE_VALUES: MetricDef = def(
    "m4watch_trading_set_unique_values",
    Kind::Gauge,
    &["name"],
    "Distinct values a StatsD set received during the last trading interval.",
);

pub(crate) const TRADING_SERIES: MetricDef = def(
    "m4watch_trading_series",
    Kind::Gauge,
    &["type"],
    "Distinct trading series tracked, by StatsD type (timer, counter, gauge, set); together at most trading.max_series.",
);

pub(crate) const TRADING_SERIES_EXPIRED_TOTAL: MetricDef = def(
    "m4watch_trading_series_expired_total",
    Kind::Counter,
    &[],
    "Trading series removed after receiving nothing for trading.series_ttl (their slots are free again under trading.max_series).",
);

pub(crate) const TRADING_SERIES_EVICTED_TOTAL: MetricDef = def(
    "m4watch_trading_series_evicted_total",
    Kind::Counter,
    &[],
    "Trading series evicted to make room for a new one when trading.max_series was reached, least recently updated first (so a new operation always gets in).",
);

pub(crate) const TRADING_MEASUREMENTS_TOTAL: MetricDef = def(
    "m4watch_trading_measurements_total",
    Kind::Counter,
    &["outcome"],
    "Latency measurements of the start/end API by outcome: completed, or abandoned when never ended within trading.measurement_ttl.",
);

pub(crate) const STATSD_PACKETS_TOTAL: MetricDef = def(
    "m4watch_statsd_packets_total",
    Kind::Counter,
    &[],
    "UDP datagrams the StatsD listener received.",
);

pub(crate) const STATSD_LINES_TOTAL: MetricDef = def(
    "m4watch_statsd_lines_total",
    Kind::Counter,
    &[],
    "StatsD lines parsed successfully (dropped ones included, malformed ones not).",
);

pub(crate) const STATSD_PARSE_ERRORS_TOTAL: MetricDef = def(
    "m4watch_statsd_parse_errors_total",
    Kind::Counter,
    &["reason"],
    "Malformed StatsD lines dropped, by reason (encoding, format, name, value, type, sample_rate, tags, unsupported, negative_counter: a counter increment below 0, outcome: an outcome tag other than outcome:success or outcome:error).",
);

pub(crate) const STATSD_DROPPED_TOTAL: MetricDef = def(
    "m4watch_statsd_dropped_total",
    Kind::Counter,
    &["reason"],
    "Well-formed trading samples dropped: cardinality (a new series beyond trading.max_series) or set_limit (a set already holding its most distinct values this interval).",
);

pub(crate) const STATSD_KERNEL_DROPS_TOTAL: MetricDef = def(
    "m4watch_statsd_kernel_drops_total",
    Kind::Counter,
    &[],
    "UDP datagrams the kernel dropped for the StatsD listener's socket because its receive buffer was full (SO_RXQ_OVFL, counted as the next datagram arrives); absent where the platform does not report it (macOS).",
);

pub(crate) const STATSD_REFUSED_DATAGRAMS_TOTAL: MetricDef = def(
    "m4watch_statsd_refused_datagrams_total",
    Kind::Counter,
    &[],
    "StatsD datagrams dropped unread because their sender is outside trading.statsd_allow.",
);

pub(crate) const TRADING_LATENCY_OBJECTIVE_SECONDS: MetricDef = def(
    "m4watch_trading_latency_objective_seconds",
    Kind::Gauge,
    &["operation", "objective"],
    "Latency objectives of the score's operations from trading.score: target (scores 1) and alert (scores 0.5; the shipped latency rules fire above it).",
);

pub(crate) const TRADING_MARKET_OPEN: MetricDef = def(
    "m4watch_trading_market_open",
    Kind::Gauge,
    &[],
    "1 while the market is open (any time interval trading.market_hours names holds now), else 0; always 1 when trading.market_hours is unset.",
);

pub(crate) const TRADING_LAST_SAMPLE_TIMESTAMP_SECONDS: MetricDef = def(
    "m4watch_trading_last_sample_timestamp_seconds",
    Kind::Gauge,
    &["operation"],
    "Unix time in seconds (to within trading.interval) of the last latency sample of an operation, from StatsD, the HTTP ingest or the start/end API; absent for an operation never seen, kept while its series is (trading.series_ttl).",
);

pub(crate) const TRADING_SILENCE_AFTER_SECONDS: MetricDef = def(
    "m4watch_trading_silence_after_seconds",
    Kind::Gauge,
    &[],
    "trading.silence_after in seconds: how long an operation that reported in the last hour may send nothing while the market is open before TradingSourceSilent fires.",
);

pub(crate) const TRADING_OPERATIONS_TOTAL: MetricDef = def(
    "m4watch_trading_operations_total",
    Kind::Counter,
    &["operation", "outcome"],
    "Operations timed since m4watch started (one per latency observation, scaled up by the sample rate), by outcome: success, or error (StatsD tag outcome:error, HTTP success: false). Both series appear with the operation's first sample; errors are in the latency families too.",
);

pub(crate) const TRADING_THROUGHPUT_OBJECTIVE_PER_SECOND: MetricDef = def(
    "m4watch_trading_throughput_objective_per_second",
    Kind::Gauge,
    &["operation"],
    "Least rate of an operation, in operations per second, while the market is open, from trading.throughput (the shipped TradingThroughputLow rule fires below it); absent for an operation without a target.",
);

pub(crate) const TRADING_SCORE_STREAM_INFO: MetricDef = def(
    "m4watch_trading_score_stream_info",
    Kind::Gauge,
    &["stream", "role"],
    "Always 1: the StatsD counter streams the score's throughput component reads, from trading.score.throughput (role handled: stream, role dropped: dropped_stream); the shipped MarketDataDropping rule joins on it.",
);

pub(crate) const PERFORMANCE_SCORE: MetricDef = def(
    "m4watch_performance_score",
    Kind::Gauge,
    &[],
    "Weighted performance score (0..100) over the components with data; absent when less than trading.score.min_coverage of the weight has data.",
);

pub(crate) const PERFORMANCE_COMPONENT_SCORE: MetricDef = def(
    "m4watch_performance_component_score",
    Kind::Gauge,
    &["component"],
    "Score (0..1) of one performance component (latency, risk, ml, throughput); absent without data.",
);

pub(crate) const PERFORMANCE_COMPONENT_WEIGHT: MetricDef = def(
    "m4watch_performance_component_weight",
    Kind::Gauge,
    &["component"],
    "Weight (0..1) a component had in the last score, renormalised over the components with data.",
);

pub(crate) const PERFORMANCE_SCORE_COVERAGE_RATIO: MetricDef = def(
    "m4watch_performance_score_coverage_ratio",
    Kind::Gauge,
    &[],
    "Share (0..1) of the configured score weight whose component had data.",
);

/// What a trading desk watches second by second (the catalogue's `trading` collector, which
/// the shipped 1 s job scrapes): the latency quantiles beside their objectives and baselines, throughput,
/// the senders' own gauges and sets, and the performance score.
pub(crate) const METRICS: &[MetricDef] = &[
    TRADING_LATENCY_QUANTILE_SECONDS,
    TRADING_LATENCY_WINDOW_OBSERVATIONS,
    TRADING_LATENCY_WINDOW_MEAN_SECONDS,
    TRADING_LATENCY_OBJECTIVE_SECONDS,
    TRADING_LATENCY_BASELINE_SECONDS,
    TRADING_EVENTS_TOTAL,
    TRADING_THROUGHPUT_PER_SECOND,
    TRADING_VALUE,
    TRADING_SET_UNIQUE_VALUES,
    PERFORMANCE_SCORE,
    PERFORMANCE_COMPONENT_SCORE,
    PERFORMANCE_COMPONENT_WEIGHT,
    PERFORMANCE_SCORE_COVERAGE_RATIO,
];

/// The latency distributions as histograms, for aggregating across hosts
/// (`histogram_quantile` over `sum by (le)`): the largest trading family, and one a
/// rate window reads as well at the standard interval.
pub(crate) const HISTOGRAMS: &[MetricDef] = &[TRADING_LATENCY_SECONDS];

/// The ingest's own health: StatsD packets, lines, errors and drops, start/end
/// measurements, and the series table; and whether the sources still send (each
/// operation's last sample, the market's hours and `trading.silence_after`, which
/// `TradingSourceSilent` reads), which a 30 s silence does not need scraped every second;
/// and the operations by outcome with the throughput targets and the score's streams,
/// counters and settings the rules read over a minute: a `rate()` needs several scrapes
/// in its window whichever job scrapes them (with one job scraping everything every
/// 5 s, a panel's 1 s window would be empty), and the 1 s job stays small.
pub(crate) const INGEST: &[MetricDef] = &[
    TRADING_OPERATIONS_TOTAL,
    TRADING_THROUGHPUT_OBJECTIVE_PER_SECOND,
    TRADING_SCORE_STREAM_INFO,
    TRADING_LAST_SAMPLE_TIMESTAMP_SECONDS,
    TRADING_MARKET_OPEN,
    TRADING_SILENCE_AFTER_SECONDS,
    TRADING_MEASUREMENTS_TOTAL,
    TRADING_SERIES,
    TRADING_SERIES_EXPIRED_TOTAL,
    TRADING_SERIES_EVICTED_TOTAL,
    STATSD_PACKETS_TOTAL,
    STATSD_LINES_TOTAL,
    STATSD_PARSE_ERRORS_TOTAL,
    STATSD_DROPPED_TOTAL,
    STATSD_KERNEL_DROPS_TOTAL,
    STATSD_REFUSED_DATAGRAMS_TOTAL,
];

/// The families with a series per StatsD series: their cardinality is the senders'
/// (up to `trading.max_series` names), so the rule engine's sample ring keeps only
/// the series a rule selects.
pub(crate) const PER_SERIES: &[MetricDef] = &[
    TRADING_LATENCY_QUANTILE_SECONDS,
    TRADING_LATENCY_WINDOW_OBSERVATIONS,
    TRADING_LATENCY_WINDOW_MEAN_SECONDS,
    TRADING_LATENCY_SECONDS,
    TRADING_OPERATIONS_TOTAL,
    TRADING_EVENTS_TOTAL,
    TRADING_THROUGHPUT_PER_SECOND,
    TRADING_VALUE,
    TRADING_SET_UNIQUE_VALUES,
    TRADING_LAST_SAMPLE_TIMESTAMP_SECONDS,
];
