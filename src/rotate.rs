//! Applying the pure retention plan to the backup directory.

use chrono_tz::Tz;
use serde::Serialize;

use crate::catalog::{Entry, Store};
use crate::error::Result;
use crate::retention::{self, Decision, Policy};

/// A decision with the backup it is about.
#[derive(Debug, Clone)]
pub struct Planned {
    pub entry: Entry,
    pub decision: Decision,
}

/// What the dry run prints and the real run does: SPEC.md's `rotate --dry-run --json` shape.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlanJson {
    pub keep: Vec<KeepJson>,
    pub delete: Vec<DeleteJson>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeepJson {
    pub name: String,
    pub reasons: Vec<retention::Reason>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeleteJson {
    pub name: String,
}

/// The plan for the local backups, newest first.
pub fn plan_local(store: &Store, policy: &Policy, tz: Tz) -> Result<Vec<Planned>> {
    let entries = store.list(tz)?;
    let input: Vec<retention::Entry> = entries
        .iter()
        .map(|e| retention::Entry {
            name: e.file_name(),
            created: e.created(tz),
            protected: e.protected(),
        })
        .collect();
    let decisions = retention::plan(&input, policy, tz)
        .map_err(|e| crate::error::ConfigError(e.to_string()))?;
    Ok(decisions
        .into_iter()
        .filter_map(|d| {
            let entry = entries.iter().find(|e| e.file_name() == d.name)?.clone();
            Some(Planned { entry, decision: d })
        })
        .collect())
}

pub fn to_json(plan: &[Planned]) -> PlanJson {
    PlanJson {
        keep: plan
            .iter()
            .filter(|p| p.decision.keep)
            .map(|p| KeepJson {
                name: p.decision.name.clone(),
                reasons: p.decision.reasons.clone(),
            })
            .collect(),
        delete: plan
            .iter()
            .filter(|p| !p.decision.keep)
            .map(|p| DeleteJson {
                name: p.decision.name.clone(),
            })
            .collect(),
    }
}

/// The result of applying a plan: what went, and what could not be deleted (and why).
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub deleted: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl Applied {
    /// One line naming every file that could not be deleted, for exit code 3.
    pub fn error_line(&self) -> Option<String> {
        (!self.failed.is_empty()).then(|| {
            let parts: Vec<String> = self
                .failed
                .iter()
                .map(|(n, e)| format!("{n} ({e})"))
                .collect();
            format!("rotation could not delete: {}", parts.join(", "))
        })
    }
}

/// Delete every backup the plan drops, with its record. Keeps going past a failure so one
/// stuck file does not stop the rest, and reports each failure by name. `spare` is never
/// deleted: the backup this run just made (a clock set back, or a legacy name from another
/// zone, can make an older-looking name newer than it).
pub fn apply(store: &Store, plan: &[Planned], spare: Option<&str>) -> Applied {
    let mut out = Applied::default();
    for p in plan.iter().filter(|p| !p.decision.keep) {
        // Defence in depth: the plan never drops a protected backup, and neither do we.
        if p.entry.protected() || Some(p.decision.name.as_str()) == spare {
            continue;
        }
        match store.delete(&p.entry) {
            Ok(()) => {
                tracing::info!(backup = %p.decision.name, "rotation deleted a backup");
                out.deleted.push(p.decision.name.clone());
            }
            Err(e) => {
                tracing::warn!(backup = %p.decision.name, error = %e, "rotation could not delete a backup");
                out.failed.push((p.decision.name.clone(), e.to_string()));
            }
        }
    }
    out
}
