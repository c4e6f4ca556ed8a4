//! How long drift has lasted: when each drifted field, and each missing or extra resource, was
//! first seen, carried from one report of an application to the next.
//!
//! Argo CD keeps no time for going OutOfSync (argo-cd #11698), so "drifted for more than N
//! minutes" cannot be asked of it. Here a drift keeps the time of the first report that had it
//! for as long as every report since has had it; a drift that went away and came back is new.
//! The times are read back from the previous report (see [`FirstSeen::from_report`]), so they
//! survive restarts and a change of the replica that analyses the app.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::classify::{Severity, Status};
use crate::report::{ChangeReport, DriftReport, ResourceReport};

/// When each drift of one application was first seen, by drift (see [`drift_key`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirstSeen {
    times: BTreeMap<String, DateTime<Utc>>,
}

/// The identity of one drift: a field of a modified resource (by its JSON pointer), or a
/// resource missing or extra as a whole. The value is not part of it: a field edited again while
/// it is drifted has been drifted since the first edit.
fn drift_key(resource: &ResourceReport, change: Option<&ChangeReport>) -> String {
    let key = resource.key();
    match change {
        Some(change) => format!("{key}#{}", change.path),
        None => format!("{key}@{}", resource.status.as_str()),
    }
}

/// The drifts of a report, each with its severity: a modified resource's changes, a missing or
/// extra resource whole.
fn drifts(report: &DriftReport) -> impl Iterator<Item = (String, Severity)> + '_ {
    report
        .resources
        .iter()
        .filter(|r| r.status != Status::Synced)
        .flat_map(|r| {
            let whole = (r.changes.is_empty()).then(|| (drift_key(r, None), r.severity));
            let fields = r
                .changes
                .iter()
                .map(move |c| (drift_key(r, Some(c)), c.severity));
            whole.into_iter().chain(fields)
        })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// RFC 3339 in UTC to the second, as Kubernetes writes times (`2026-12-07T20:15:03Z`).
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl FirstSeen {
    /// The times a report carries (as [`FirstSeen::stamp`] wrote them). A time that does not
    /// parse is left out: that drift counts as new.
    pub fn from_report(report: &DriftReport) -> FirstSeen {
        let mut times = BTreeMap::new();
        for r in report
            .resources
            .iter()
            .filter(|r| r.status != Status::Synced)
        {
            if r.changes.is_empty() {
                if let Some(t) = r.first_seen.as_deref().and_then(parse_time) {
                    times.insert(drift_key(r, None), t);
                }
            }
            for c in &r.changes {
                if let Some(t) = c.first_seen.as_deref().and_then(parse_time) {
                    times.insert(drift_key(r, Some(c)), t);
                }
            }
        }
        FirstSeen { times }
    }

    /// Give every drift of `report` its first-seen time: the one `self` (the previous report's)
    /// holds for it, else `now`. A resource carries its oldest drift's. Returns the times of
    /// this report, for the next.
    pub fn stamp(&self, report: &mut DriftReport, now: DateTime<Utc>) -> FirstSeen {
        let mut times = BTreeMap::new();
        for r in report.resources.iter_mut() {
            if r.status == Status::Synced {
                r.first_seen = None;
                for c in &mut r.changes {
                    c.first_seen = None;
                }
                continue;
            }
            let mut oldest = None;
            if r.changes.is_empty() {
                let key = drift_key(r, None);
                let t = self.times.get(&key).copied().unwrap_or(now);
                times.insert(key, t);
                oldest = Some(t);
            }
            let mut changes = std::mem::take(&mut r.changes);
            for c in &mut changes {
                let key = drift_key(r, Some(c));
                let t = self.times.get(&key).copied().unwrap_or(now);
                c.first_seen = Some(format_time(t));
                times.insert(key, t);
                oldest = Some(oldest.map_or(t, |o: DateTime<Utc>| o.min(t)));
            }
            r.changes = changes;
            r.first_seen = oldest.map(format_time);
        }
        FirstSeen { times }
    }

    /// The first-seen time of the oldest drift of each severity in `report`, from these times
    /// (a drift without one is left out).
    pub fn oldest_by_severity(&self, report: &DriftReport) -> BTreeMap<Severity, DateTime<Utc>> {
        let mut oldest: BTreeMap<Severity, DateTime<Utc>> = BTreeMap::new();
        for (key, severity) in drifts(report) {
            if let Some(&t) = self.times.get(&key) {
                oldest
                    .entry(severity)
                    .and_modify(|o| *o = (*o).min(t))
                    .or_insert(t);
            }
        }
        oldest
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The times as text, by drift, oldest first: to keep them where no report carries them
    /// (beside a report of a failed analysis, which holds no resources).
    pub fn to_list(&self) -> Vec<(String, String)> {
        let mut list: Vec<_> = self.times.iter().collect();
        list.sort_by_key(|(key, t)| (**t, *key));
        list.into_iter()
            .map(|(key, t)| (key.clone(), format_time(*t)))
            .collect()
    }

    /// The times [`FirstSeen::to_list`] wrote; a time that does not parse is left out.
    pub fn from_list(list: Vec<(String, String)>) -> FirstSeen {
        let times = list
            .into_iter()
            .filter_map(|(key, t)| parse_time(&t).map(|t| (key, t)))
            .collect();
        FirstSeen { times }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Severity;

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    fn change(path: &str, severity: Severity) -> ChangeReport {
        serde_json::from_value(serde_json::json!({
            "path": path, "field": path, "op": "replace", "desired": 1, "live": 2,
            "severity": severity, "rule": "test", "manager": null, "attribution": "unknown",
        }))
        .unwrap()
    }

    fn resource(name: &str, status: Status, changes: Vec<ChangeReport>) -> ResourceReport {
        let severity = changes.iter().map(|c| c.severity).max();
        serde_json::from_value(serde_json::json!({
            "group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop",
            "name": name, "status": status, "severity": severity.unwrap_or(Severity::High),
            "changes": changes,
        }))
        .unwrap()
    }

    /// Deployment shop/web with its replicas drifted (high).
    fn web_replicas() -> ResourceReport {
        resource(
            "web",
            Status::Modified,
            vec![change("/spec/replicas", Severity::High)],
        )
    }

    fn report(resources: Vec<ResourceReport>) -> DriftReport {
        DriftReport {
            summary: Default::default(),
            resources,
        }
    }

    fn first_seen_of(report: &DriftReport, name: &str, path: Option<&str>) -> Option<String> {
        let r = report.resources.iter().find(|r| r.name == name)?;
        match path {
            Some(path) => r
                .changes
                .iter()
                .find(|c| c.path == path)?
                .first_seen
                .clone(),
            None => r.first_seen.clone(),
        }
    }

    #[test]
    fn a_drift_keeps_its_first_time_while_it_lasts_and_a_new_one_gets_now() {
        let t0 = at("2026-12-07T10:00:00Z");
        let t1 = at("2026-12-07T10:05:00Z");
        let mut first = report(vec![web_replicas()]);
        let seen = FirstSeen::default().stamp(&mut first, t0);
        assert_eq!(
            first_seen_of(&first, "web", Some("/spec/replicas")).as_deref(),
            Some("2026-12-07T10:00:00Z")
        );
        // Five minutes on: the replicas still drift (edited again: another value), and a second
        // field has drifted since.
        let mut second = report(vec![resource(
            "web",
            Status::Modified,
            vec![
                change("/spec/replicas", Severity::High),
                change("/spec/template/spec/containers/0/image", Severity::Critical),
            ],
        )]);
        second.resources[0].changes[0].live = Some(serde_json::json!(7));
        let seen = seen.stamp(&mut second, t1);
        assert_eq!(
            first_seen_of(&second, "web", Some("/spec/replicas")).as_deref(),
            Some("2026-12-07T10:00:00Z")
        );
        assert_eq!(
            first_seen_of(
                &second,
                "web",
                Some("/spec/template/spec/containers/0/image")
            )
            .as_deref(),
            Some("2026-12-07T10:05:00Z")
        );
        // The resource carries its oldest drift's time.
        assert_eq!(
            first_seen_of(&second, "web", None).as_deref(),
            Some("2026-12-07T10:00:00Z")
        );
        let oldest = seen.oldest_by_severity(&second);
        assert_eq!(oldest.get(&Severity::High), Some(&t0));
        assert_eq!(oldest.get(&Severity::Critical), Some(&t1));
    }

    #[test]
    fn a_drift_that_went_away_and_came_back_is_new() {
        let t0 = at("2026-12-07T10:00:00Z");
        let drifted = || report(vec![web_replicas()]);
        let mut first = drifted();
        let seen = FirstSeen::default().stamp(&mut first, t0);
        let mut synced = report(vec![resource("web", Status::Synced, vec![])]);
        let seen = seen.stamp(&mut synced, at("2026-12-07T10:01:00Z"));
        assert!(seen.is_empty());
        assert_eq!(first_seen_of(&synced, "web", None), None);
        let mut again = drifted();
        seen.stamp(&mut again, at("2026-12-07T10:02:00Z"));
        assert_eq!(
            first_seen_of(&again, "web", Some("/spec/replicas")).as_deref(),
            Some("2026-12-07T10:02:00Z")
        );
    }

    #[test]
    fn missing_and_extra_resources_are_dated_whole_and_a_change_of_status_is_new() {
        let t0 = at("2026-12-07T10:00:00Z");
        let t1 = at("2026-12-07T11:00:00Z");
        let mut first = report(vec![
            resource("gone", Status::Missing, vec![]),
            resource("stray", Status::Extra, vec![]),
        ]);
        let seen = FirstSeen::default().stamp(&mut first, t0);
        let mut second = report(vec![
            resource("gone", Status::Missing, vec![]),
            // Now in Git but different from live: another drift.
            resource(
                "stray",
                Status::Modified,
                vec![change("/data/a", Severity::Medium)],
            ),
        ]);
        seen.stamp(&mut second, t1);
        assert_eq!(
            first_seen_of(&second, "gone", None).as_deref(),
            Some("2026-12-07T10:00:00Z")
        );
        assert_eq!(
            first_seen_of(&second, "stray", None).as_deref(),
            Some("2026-12-07T11:00:00Z")
        );
    }

    #[test]
    fn the_times_are_read_back_from_a_report_as_it_was_written_as_json() {
        let mut first = report(vec![
            web_replicas(),
            resource("gone", Status::Missing, vec![]),
        ]);
        let seen = FirstSeen::default().stamp(&mut first, at("2026-12-07T10:00:00Z"));
        let text = serde_json::to_string(&first).unwrap();
        assert!(
            text.contains(r#""firstSeen":"2026-12-07T10:00:00Z""#),
            "{text}"
        );
        let read: DriftReport = serde_json::from_str(&text).unwrap();
        assert_eq!(FirstSeen::from_report(&read), seen);
        // A time that does not parse counts as new.
        let broken: DriftReport =
            serde_json::from_str(&text.replace("2026-12-07T10:00:00Z", "yesterday")).unwrap();
        assert!(FirstSeen::from_report(&broken).is_empty());
    }

    #[test]
    fn the_times_as_a_list_are_oldest_first_and_read_back_whole() {
        let mut r = report(vec![web_replicas()]);
        let seen = FirstSeen::default().stamp(&mut r, at("2026-12-07T10:05:00Z"));
        let mut later = report(vec![
            web_replicas(),
            resource("gone", Status::Missing, vec![]),
        ]);
        let seen = seen.stamp(&mut later, at("2026-12-07T11:00:00Z"));
        let list = seen.to_list();
        assert_eq!(
            list,
            [
                (
                    "Deployment.apps shop/web#/spec/replicas".to_string(),
                    "2026-12-07T10:05:00Z".to_string()
                ),
                (
                    "Deployment.apps shop/gone@missing".to_string(),
                    "2026-12-07T11:00:00Z".to_string()
                ),
            ]
        );
        assert_eq!(FirstSeen::from_list(list), seen);
        let broken = vec![("k".to_string(), "soon".to_string())];
        assert!(FirstSeen::from_list(broken).is_empty());
    }

    #[test]
    fn a_report_without_first_seen_times_serialises_as_before() {
        let r = report(vec![web_replicas()]);
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("firstSeen"), "{text}");
    }
}
