//! The route tree: each route with its inherited receiver, grouping and timing filled
//! in, and the routes an alert's labels lead to.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::notify::{DEFAULT_RECEIVER, RouteConfig};
use crate::model::alert::{Matcher, all_match, is_watchdog};

/// Group timing defaults: a sidecar's point is speed, so nothing waits by default.
const DEFAULT_GROUP_WAIT: Duration = Duration::ZERO;
const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// A route with its inherited settings filled in.
pub(super) struct Route {
    pub(super) id: usize,
    pub(super) receiver: String,
    pub(super) matchers: Vec<Matcher>,
    /// The matchers of this route and every ancestor: a watchdog alert is delivered
    /// only where one of them names its `alertname`.
    chain: Vec<Matcher>,
    /// `None`: one group per alert.
    pub(super) group_by: Option<Vec<String>>,
    pub(super) group_wait: Duration,
    pub(super) group_interval: Duration,
    pub(super) repeat_interval: Duration,
    pub(super) continue_: bool,
    pub(super) active: Vec<String>,
    pub(super) mute: Vec<String>,
    pub(super) children: Vec<Route>,
}

impl Route {
    pub(super) fn build(c: &RouteConfig, parent: Option<&Route>, next_id: &mut usize) -> Route {
        let id = *next_id;
        *next_id += 1;
        let group_by = match &c.group_by {
            Some(g) if g.iter().any(|l| l == "...") => None,
            Some(g) => Some(g.clone()),
            None => parent.and_then(|p| p.group_by.clone()),
        };
        let mut r = Route {
            id,
            receiver: c
                .receiver
                .clone()
                .or_else(|| parent.map(|p| p.receiver.clone()))
                .unwrap_or_else(|| DEFAULT_RECEIVER.into()),
            matchers: c.matchers.clone(),
            chain: parent
                .map(|p| p.chain.clone())
                .unwrap_or_default()
                .into_iter()
                .chain(c.matchers.iter().cloned())
                .collect(),
            group_by,
            group_wait: c
                .group_wait
                .map(|d| d.get())
                .or(parent.map(|p| p.group_wait))
                .unwrap_or(DEFAULT_GROUP_WAIT),
            group_interval: c
                .group_interval
                .map(|d| d.get())
                .or(parent.map(|p| p.group_interval))
                .unwrap_or(DEFAULT_GROUP_INTERVAL),
            repeat_interval: c
                .repeat_interval
                .map(|d| d.get())
                .or(parent.map(|p| p.repeat_interval))
                .unwrap_or(DEFAULT_REPEAT_INTERVAL),
            continue_: c.continue_,
            active: c.active_time_intervals.clone(),
            mute: c.mute_time_intervals.clone(),
            children: Vec::new(),
        };
        r.children = c
            .routes
            .iter()
            .map(|child| Route::build(child, Some(&r), next_id))
            .collect();
        r
    }

    /// The routes an alert goes to: the deepest matching ones, siblings after a match
    /// only with `continue`. A watchdog alert ([`is_watchdog`]: always firing, for a
    /// dead-man's service, not for people) goes only to those of them whose matchers,
    /// or an ancestor's, name its `alertname` (`alertname="Watchdog"`): never to the
    /// root's receiver or another catch-all, so a desk's Slack is not told every
    /// `repeat_interval` that all is well.
    pub(super) fn matching<'a>(
        &'a self,
        labels: &BTreeMap<String, String>,
        out: &mut Vec<&'a Route>,
    ) {
        let from = out.len();
        self.walk(labels, out);
        if is_watchdog(labels) {
            let named: Vec<&Route> = out
                .drain(from..)
                .filter(|r| r.chain.iter().any(|m| m.names("alertname", labels)))
                .collect();
            out.extend(named);
        }
    }

    fn walk<'a>(&'a self, labels: &BTreeMap<String, String>, out: &mut Vec<&'a Route>) {
        let mut child_matched = false;
        for c in &self.children {
            if all_match(&c.matchers, labels) {
                c.walk(labels, out);
                child_matched = true;
                if !c.continue_ {
                    break;
                }
            }
        }
        if !child_matched {
            out.push(self);
        }
    }

    pub(super) fn find(&self, id: usize) -> Option<&Route> {
        if self.id == id {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::notify::test_labels as labels;

    #[test]
    fn route_tree_with_continue() {
        let cfg: RouteConfig = serde_yaml_ng::from_str(
            r#"
receiver: email
routes:
  - matchers: ['severity="critical"']
    receiver: pagerduty
    continue: true
  - matchers: ['severity=~"critical|warning"']
    receiver: slack
  - matchers: ['tier="trading"']
    receiver: never
"#,
        )
        .unwrap();
        let mut id = 0;
        let root = Route::build(&cfg, None, &mut id);
        let names = |l: &[(&str, &str)]| {
            let mut out = Vec::new();
            root.matching(&labels(l), &mut out);
            out.iter().map(|r| r.receiver.clone()).collect::<Vec<_>>()
        };
        assert_eq!(
            names(&[("severity", "critical"), ("tier", "trading")]),
            ["pagerduty", "slack"]
        );
        assert_eq!(names(&[("severity", "warning")]), ["slack"]);
        assert_eq!(names(&[("severity", "info")]), ["email"]);
        assert_eq!(names(&[("tier", "trading")]), ["never"]);
    }

    /// The shipped `Watchdog` rule's alert never reaches a catch-all receiver; a route
    /// that names it by `alertname` takes it.
    #[test]
    fn a_watchdog_alert_goes_only_where_a_route_names_it() {
        let watchdog = labels(&[
            ("alertname", "Watchdog"),
            ("severity", "info"),
            ("m4watch_watchdog", "true"),
        ]);
        let names = |yaml: &str, l: &BTreeMap<String, String>| {
            let cfg: RouteConfig = serde_yaml_ng::from_str(yaml).unwrap();
            let root = Route::build(&cfg, None, &mut 0);
            let mut out = Vec::new();
            root.matching(l, &mut out);
            out.iter().map(|r| r.receiver.clone()).collect::<Vec<_>>()
        };
        // A desk with one Slack receiver and no route for it: nobody gets it.
        let slack_only = "receiver: slack\nroutes:\n  - matchers: ['severity=~\"info|warning\"']\n    receiver: slack\n";
        assert!(names(slack_only, &watchdog).is_empty());
        assert!(names("receiver: slack\n", &watchdog).is_empty());
        // The same alert without the label would have gone to Slack.
        let mut plain = watchdog.clone();
        plain.remove("m4watch_watchdog");
        assert_eq!(names(slack_only, &plain), ["slack"]);
        // A route naming it (first, as in Alertmanager) takes it; so does a child of it.
        let routed = "receiver: slack\nroutes:\n  - matchers: ['alertname=\"Watchdog\"']\n    receiver: deadman\n  - receiver: slack\n";
        assert_eq!(names(routed, &watchdog), ["deadman"]);
        let nested = "receiver: slack\nroutes:\n  - matchers: ['alertname=~\"Watchdog|Other\"']\n    routes:\n      - matchers: ['severity=\"info\"']\n        receiver: deadman\n";
        assert_eq!(names(nested, &watchdog), ["deadman"]);
        // A negative matcher on alertname does not name it.
        let negative = "receiver: slack\nroutes:\n  - matchers: ['alertname!=\"Other\"']\n    receiver: slack\n";
        assert!(names(negative, &watchdog).is_empty());
    }

    #[test]
    fn children_inherit_timing() {
        let cfg: RouteConfig = serde_yaml_ng::from_str(
            "receiver: a\ngroup_interval: 10s\ngroup_by: [alertname]\nroutes:\n  - receiver: b\n    group_by: ['...']\n",
        )
        .unwrap();
        let mut id = 0;
        let root = Route::build(&cfg, None, &mut id);
        assert_eq!(root.group_wait, Duration::ZERO);
        assert_eq!(root.children[0].group_interval, Duration::from_secs(10));
        assert_eq!(root.group_by, Some(vec!["alertname".to_string()]));
        assert_eq!(root.children[0].group_by, None);
    }
}
