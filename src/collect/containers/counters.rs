//! Restarts, OOM kills and exit codes: what the events stream counts ([`EventTally`])
//! and how it is reconciled with inspect ([`Tracked`]). Pure, tested on literal events.

use std::collections::HashMap;

use bollard::models::EventMessage;

/// What the events stream saw for one container since the last cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Pending {
    pub restarts: u64,
    pub oom_kills: u64,
    pub last_exit_code: Option<i64>,
    /// A `die` was seen and no `start` since: the next `start` is a restart.
    died: bool,
}

/// Events per container id, drained by each cycle.
#[derive(Debug, Default)]
pub(crate) struct EventTally {
    by_id: HashMap<String, Pending>,
    /// `timeNano` of the newest event applied, so a resubscription asks for what it
    /// missed (`since`) and skips what it already counted.
    last_time_nano: Option<i64>,
}

impl EventTally {
    /// Applies one container event.
    pub(crate) fn apply(&mut self, ev: &EventMessage) {
        let (Some(action), Some(actor)) = (ev.action.as_deref(), ev.actor.as_ref()) else {
            return;
        };
        let Some(id) = actor.id.as_deref() else {
            return;
        };
        if let Some(t) = ev.time_nano {
            if self.last_time_nano.is_some_and(|last| t <= last) {
                return;
            }
            self.last_time_nano = Some(t);
        }
        match action {
            "die" => {
                let p = self.by_id.entry(id.to_string()).or_default();
                p.died = true;
                let code = actor
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("exitCode"))
                    .and_then(|c| c.parse().ok());
                if code.is_some() {
                    p.last_exit_code = code;
                }
            }
            "start" => {
                let p = self.by_id.entry(id.to_string()).or_default();
                if p.died {
                    p.restarts += 1;
                    p.died = false;
                }
            }
            "oom" => self.by_id.entry(id.to_string()).or_default().oom_kills += 1,
            "destroy" => {
                self.by_id.remove(id);
            }
            _ => {}
        }
    }

    /// Takes the counts gathered for `id` since the last call, keeping whether it died.
    pub(crate) fn take(&mut self, id: &str) -> Pending {
        match self.by_id.get_mut(id) {
            Some(p) => Pending {
                restarts: std::mem::take(&mut p.restarts),
                oom_kills: std::mem::take(&mut p.oom_kills),
                last_exit_code: p.last_exit_code.take(),
                died: p.died,
            },
            None => Pending::default(),
        }
    }

    pub(super) fn since(&self) -> Option<String> {
        self.last_time_nano.map(since_arg)
    }
}

/// What inspect says about the counters of one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct InspectCounters {
    /// Docker's own count of restart-policy restarts (reset by a manual start).
    pub restart_count: u64,
    pub oom_killed: bool,
    /// `FinishedAt` of the last exit, if it ever exited.
    pub finished_at: Option<String>,
    /// Exit code, when the container is not running (Docker zeroes it on start).
    pub exit_code: Option<i64>,
}

/// Counters of one container kept across cycles.
///
/// Events and inspect see the same policy restarts and OOM kills, but not at the same
/// moment: an event may already be applied when the inspect read in the same cycle
/// still shows the older count. So each source keeps its own running total and the
/// exported counter is the larger of the two: events catch restarts and kills that
/// healed before an inspect (and manual restarts, which Docker's `RestartCount` leaves
/// out), inspect catches those that happened while the events stream was down. Both
/// totals only grow, so their maximum is a proper counter.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tracked {
    restarts_by_events: u64,
    restarts_by_inspect: u64,
    ooms_by_events: u64,
    ooms_by_inspect: u64,
    last_exit_code: Option<i64>,
    seen_restart_count: u64,
    seen_finished_at: Option<String>,
}

impl Tracked {
    /// Folds one cycle's events and inspect into the totals. The first reconciliation
    /// of a container starts from Docker's own counts.
    pub(crate) fn reconcile(&mut self, ev: &Pending, ins: &InspectCounters) {
        self.restarts_by_events += ev.restarts;
        self.restarts_by_inspect += if ins.restart_count >= self.seen_restart_count {
            ins.restart_count - self.seen_restart_count
        } else {
            // A manual start resets Docker's count.
            ins.restart_count
        };
        self.seen_restart_count = ins.restart_count;

        self.ooms_by_events += ev.oom_kills;
        let new_exit = ins.finished_at.is_some() && ins.finished_at != self.seen_finished_at;
        self.ooms_by_inspect += u64::from(new_exit && ins.oom_killed);
        if ins.finished_at.is_some() {
            self.seen_finished_at = ins.finished_at.clone();
        }

        if let Some(code) = ev.last_exit_code.or(ins.exit_code) {
            self.last_exit_code = Some(code);
        }
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.restarts_by_events.max(self.restarts_by_inspect)
    }

    pub(crate) fn oom_kills(&self) -> u64 {
        self.ooms_by_events.max(self.ooms_by_inspect)
    }

    pub(crate) fn last_exit_code(&self) -> Option<i64> {
        self.last_exit_code
    }
}

/// The events API's `since` for a time in nanoseconds since the epoch.
pub(super) fn since_arg(nanos: i64) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(action: &str, id: &str, t: i64, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            time_nano: Some(t),
            ..Default::default()
        }
    }

    #[test]
    fn a_start_after_a_die_is_a_restart_and_replays_are_skipped() {
        let mut t = EventTally::default();
        t.apply(&event("start", "c1", 1, &[]));
        assert_eq!(t.take("c1").restarts, 0, "a first start is no restart");
        t.apply(&event("die", "c1", 2, &[("exitCode", "1")]));
        t.apply(&event("start", "c1", 3, &[]));
        t.apply(&event("oom", "c1", 4, &[]));
        t.apply(&event("die", "c1", 5, &[("exitCode", "137")]));
        t.apply(&event("start", "c1", 6, &[]));
        // A resubscription replays from `since`: already counted events are skipped.
        t.apply(&event("start", "c1", 6, &[]));
        t.apply(&event("die", "c1", 5, &[("exitCode", "137")]));
        let p = t.take("c1");
        assert_eq!(
            (p.restarts, p.oom_kills, p.last_exit_code),
            (2, 1, Some(137))
        );
        assert_eq!(t.take("c1"), Pending::default(), "taken counts reset");
        assert_eq!(t.since().as_deref(), Some("0.000000006"));
        t.apply(&event("die", "c1", 7, &[]));
        t.apply(&event("destroy", "c1", 8, &[]));
        assert_eq!(
            t.take("c1"),
            Pending::default(),
            "destroy forgets the container"
        );
    }

    fn ins(
        restart_count: u64,
        oom_killed: bool,
        finished: Option<&str>,
        exit: Option<i64>,
    ) -> InspectCounters {
        InspectCounters {
            restart_count,
            oom_killed,
            finished_at: finished.map(str::to_string),
            exit_code: exit,
        }
    }

    #[test]
    fn counters_take_the_larger_of_events_and_inspect_without_double_counting() {
        let mut t = Tracked::default();
        // First sight of a container Docker has restarted 3 times already.
        t.reconcile(
            &Pending::default(),
            &ins(3, false, Some("2026-01-01T00:00:01Z"), None),
        );
        assert_eq!(t.restarts(), 3);
        // Events saw two restarts; the inspect of this cycle was read before the second.
        let two = Pending {
            restarts: 2,
            ..Default::default()
        };
        t.reconcile(&two, &ins(4, false, None, None));
        assert_eq!(t.restarts(), 4);
        // Next cycle inspect catches up: nothing counted twice.
        t.reconcile(&Pending::default(), &ins(5, false, None, None));
        assert_eq!(t.restarts(), 5);
        // A manual restart: Docker resets nothing and counts nothing, events do.
        let manual = Pending {
            restarts: 1,
            ..Default::default()
        };
        t.reconcile(&manual, &ins(5, false, None, None));
        assert_eq!(
            t.restarts(),
            5,
            "events total 3 stays below inspect total 5"
        );
    }

    #[test]
    fn an_oom_that_healed_between_cycles_is_counted_from_events() {
        let mut t = Tracked::default();
        t.reconcile(&Pending::default(), &ins(0, false, None, None));
        // Killed and restarted by the policy between two cycles: inspect shows a
        // running container with OOMKilled cleared.
        let ev = Pending {
            restarts: 1,
            oom_kills: 1,
            last_exit_code: Some(137),
            ..Default::default()
        };
        t.reconcile(&ev, &ins(1, false, Some("2026-01-01T00:00:02Z"), None));
        assert_eq!(
            (t.restarts(), t.oom_kills(), t.last_exit_code()),
            (1, 1, Some(137))
        );
        // Killed again and left down: inspect and events report the same kill.
        let ev = Pending {
            oom_kills: 1,
            last_exit_code: Some(137),
            ..Default::default()
        };
        t.reconcile(&ev, &ins(1, true, Some("2026-01-01T00:00:03Z"), Some(137)));
        assert_eq!(t.oom_kills(), 2);
        // Nothing new: the same FinishedAt is not a new kill.
        t.reconcile(
            &Pending::default(),
            &ins(1, true, Some("2026-01-01T00:00:03Z"), Some(137)),
        );
        assert_eq!(t.oom_kills(), 2);
    }
}
