//! Job event kinds and outcomes: their names as the CLI prints them and
//! `--json` carries them, and the outcome each final event means.

use crate::pb::{JobEventKind, JobOutcome};

impl JobEventKind {
    /// `started`, `phase`, `tick`, `aborted`, `finished`, `failed`,
    /// `cancelled`.
    pub fn name(self) -> &'static str {
        match self {
            JobEventKind::Unspecified => "unspecified",
            JobEventKind::Started => "started",
            JobEventKind::Phase => "phase",
            JobEventKind::Tick => "tick",
            JobEventKind::Aborted => "aborted",
            JobEventKind::Finished => "finished",
            JobEventKind::Failed => "failed",
            JobEventKind::Cancelled => "cancelled",
        }
    }

    /// The outcome a job's last event means; `None` for an event a job
    /// goes on after.
    pub fn outcome(self) -> Option<JobOutcome> {
        match self {
            JobEventKind::Finished => Some(JobOutcome::Finished),
            JobEventKind::Failed => Some(JobOutcome::Failed),
            JobEventKind::Cancelled => Some(JobOutcome::Cancelled),
            _ => None,
        }
    }
}

impl JobOutcome {
    /// `running`, `finished`, `failed`, `cancelled`.
    pub fn name(self) -> &'static str {
        match self {
            JobOutcome::Unspecified => "unspecified",
            JobOutcome::Running => "running",
            JobOutcome::Finished => "finished",
            JobOutcome::Failed => "failed",
            JobOutcome::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_events_name_their_outcome() {
        for k in [
            JobEventKind::Finished,
            JobEventKind::Failed,
            JobEventKind::Cancelled,
        ] {
            assert_eq!(k.outcome().map(JobOutcome::name), Some(k.name()));
        }
        assert_eq!(JobEventKind::Tick.outcome(), None);
    }
}
