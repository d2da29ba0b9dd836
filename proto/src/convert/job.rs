//! Jobs: a workload with its typed parameters <-> the domain [`Workload`],
//! validated by the one parser the model has; event kinds and outcomes,
//! their names as the CLI prints them and `--json` carries them, and the
//! outcome each final event means.

use std::collections::HashMap;

use lockstep_model::workload::Workload;

use crate::ProtoError;
use crate::pb::{self, JobEventKind, JobOutcome, Phase, job_spec};

/// Each phase and its name in the model's workload definitions.
const PHASES: [(Phase, &str); 19] = [
    (Phase::Prepare, lockstep_model::workload::PREPARE),
    (Phase::Commit, lockstep_model::workload::COMMIT),
    (Phase::Edges, "edges"),
    (Phase::Degrees, "degrees"),
    (Phase::Spread, "spread"),
    (Phase::Apply, "apply"),
    (Phase::Stage, "stage"),
    (Phase::Tokenize, "tokenize"),
    (Phase::Df, "df"),
    (Phase::Tf, "tf"),
    (Phase::Score, "score"),
    (Phase::Empty1, "empty-1"),
    (Phase::Empty2, "empty-2"),
    (Phase::Empty3, "empty-3"),
    (Phase::Empty4, "empty-4"),
    (Phase::Empty5, "empty-5"),
    (Phase::Empty6, "empty-6"),
    (Phase::Empty7, "empty-7"),
    (Phase::Empty8, "empty-8"),
];

impl Phase {
    /// The phase a workload definition names; `None` for a name no
    /// built-in workload has.
    pub fn of(name: &str) -> Option<Phase> {
        PHASES.iter().find(|(_, n)| *n == name).map(|(p, _)| *p)
    }

    /// Its name in the workload definitions (`spread`, `empty-3`);
    /// `unspecified` for the zero value.
    pub fn name(self) -> &'static str {
        PHASES
            .iter()
            .find(|(p, _)| *p == self)
            .map_or("unspecified", |(_, n)| n)
    }

    /// The phase of a request, refusing the zero value.
    pub fn named(self) -> Result<&'static str, ProtoError> {
        match self {
            Phase::Unspecified => Err(ProtoError::Missing("phase")),
            p => Ok(p.name()),
        }
    }
}

/// The spec of a job running `workload` for `ticks` ticks.
pub fn job_spec(workload: &Workload, ticks: u64) -> pb::JobSpec {
    pb::JobSpec {
        ticks,
        workload: Some(workload.into()),
    }
}

impl From<&Workload> for job_spec::Workload {
    fn from(w: &Workload) -> Self {
        match w {
            Workload::Ingest(p) => job_spec::Workload::Ingest(pb::IngestParams {
                generate: p.generate.map(|n| n as u64),
                file: p.file.clone(),
                seed: Some(p.seed),
                batch: Some(p.batch as u64),
            }),
            Workload::Attention(p) => job_spec::Workload::Attention(pb::AttentionParams {
                damping: Some(p.damping),
                link_types: p
                    .link_types
                    .iter()
                    .flatten()
                    .map(|t| t.name.to_string())
                    .collect(),
                top: Some(p.top as u64),
            }),
            Workload::Tfidf(p) => job_spec::Workload::Tfidf(pb::TfidfParams {
                docs: p.docs.clone(),
                top: Some(p.top as u64),
            }),
            Workload::Barrier => job_spec::Workload::Barrier(pb::BarrierParams {}),
        }
    }
}

/// The spec of a job running workload `name` with `params` as the CLI's
/// flags give them (`damping`, `link-types`, …), validated.
pub fn spec_of(
    name: &str,
    ticks: u64,
    params: &HashMap<String, String>,
) -> Result<pb::JobSpec, ProtoError> {
    Ok(job_spec(&Workload::parse(name, params)?, ticks))
}

/// A spec's workload name and the parameters it gives, as the user
/// would write them (`damping`, `link-types`, …); left-out ones are
/// absent.
pub fn named_params(
    spec: &pb::JobSpec,
) -> Result<(&'static str, HashMap<String, String>), ProtoError> {
    let mut p = HashMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            p.insert(k.to_string(), v);
        }
    };
    let name = match &spec.workload {
        None => return Err(ProtoError::Missing("job spec's workload")),
        Some(job_spec::Workload::Ingest(i)) => {
            put("generate", i.generate.map(|v| v.to_string()));
            put("file", i.file.clone());
            put("seed", i.seed.map(|v| v.to_string()));
            put("batch", i.batch.map(|v| v.to_string()));
            "ingest"
        }
        Some(job_spec::Workload::Attention(a)) => {
            // f64's Display is the shortest text that parses back to the
            // same bits.
            put("damping", a.damping.map(|v| v.to_string()));
            put(
                "link-types",
                (!a.link_types.is_empty()).then(|| a.link_types.join(",")),
            );
            put("top", a.top.map(|v| v.to_string()));
            "attention"
        }
        Some(job_spec::Workload::Tfidf(t)) => {
            put("docs", Some(t.docs.clone()).filter(|d| !d.is_empty()));
            put("top", t.top.map(|v| v.to_string()));
            "tfidf"
        }
        Some(job_spec::Workload::Barrier(_)) => "barrier",
    };
    Ok((name, p))
}

impl TryFrom<&pb::JobSpec> for Workload {
    type Error = ProtoError;

    /// Validates as the CLI's flags are: one set of rules.
    fn try_from(spec: &pb::JobSpec) -> Result<Workload, ProtoError> {
        let (name, params) = named_params(spec)?;
        Ok(Workload::parse(name, &params)?)
    }
}

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
    fn every_phase_of_every_workload_has_its_enum_value() {
        let all = ["ingest", "attention", "tfidf", "barrier"].map(|name| {
            let params: HashMap<String, String> = match name {
                "ingest" => [("generate".to_string(), "1".to_string())].into(),
                "tfidf" => [("docs".to_string(), ".".to_string())].into(),
                _ => HashMap::new(),
            };
            Workload::parse(name, &params).unwrap()
        });
        for w in &all {
            for tick in 1..=2 {
                for phase in w.setup_phases().iter().chain(w.tick_phases(tick)) {
                    let p = Phase::of(phase).unwrap_or_else(|| panic!("{phase} has no Phase"));
                    assert_eq!(p.name(), *phase);
                }
            }
        }
        assert!(Phase::Unspecified.named().is_err());
    }

    #[test]
    fn typed_params_round_trip_and_are_validated() {
        let given = |name: &str, kv: &[(&str, &str)]| {
            let map = kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Workload::parse(name, &map).unwrap()
        };
        for w in [
            given(
                "attention",
                &[
                    ("damping", "0.1234567890123"),
                    ("link-types", "Inheritance,MemberLink"),
                    ("top", "3"),
                ],
            ),
            given(
                "ingest",
                &[("generate", "1000"), ("seed", "7"), ("batch", "10")],
            ),
            given("ingest", &[("file", "kb.scm")]),
            given("tfidf", &[("docs", "docs"), ("top", "5")]),
            given("barrier", &[]),
        ] {
            let spec = job_spec(&w, 3);
            assert_eq!(Workload::try_from(&spec).unwrap(), w);
        }
        let bad = pb::JobSpec {
            ticks: 1,
            workload: Some(job_spec::Workload::Attention(pb::AttentionParams {
                damping: Some(1.5),
                ..Default::default()
            })),
        };
        assert!(
            Workload::try_from(&bad)
                .unwrap_err()
                .to_string()
                .contains("damping")
        );
        let none = pb::JobSpec {
            ticks: 1,
            workload: None,
        };
        assert!(Workload::try_from(&none).is_err());
    }

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
