//! Experiments: a user's assignments with reasons, and per-variant results.
use super::{Engine, Error, now_ms};
use crate::domain::decision;
use crate::domain::experiment::{Assignment, GLOBAL_HOLDOUT};
use crate::domain::results::ExperimentReport;

impl Engine {
    /// A user's assignment in every experiment (or one), with the reasons; with a channel,
    /// as a decision on that channel would assign them (an unknown channel is refused).
    pub async fn get_assignment(
        &self,
        user: &str,
        experiment: Option<&str>,
        channel: Option<&str>,
    ) -> Result<Vec<Assignment>, Error> {
        let snap = self.snapshot();
        let policy = &snap.config.policy;
        if let Some(channel) = channel {
            Self::check_channel(&snap.config, "channel", channel)?;
        }
        if let Some(e) = experiment
            && e != GLOBAL_HOLDOUT
            && !policy.experiments.iter().any(|x| x.id == e)
        {
            return Err(Error::NotFound(format!("no experiment {e:?}")));
        }
        let loaded = self.store.load_user(user, &[], None).await?;
        let all = decision::assignments(policy, user, channel, &loaded.state, now_ms());
        Ok(all.into_iter().filter(|a| experiment.is_none_or(|e| a.experiment_id == e)).collect())
    }

    /// Per-variant exposure, visits, conversions, revenue, lifts and the SRM check.
    pub async fn experiment_results(&self, id: &str) -> Result<ExperimentReport, Error> {
        let snap = self.snapshot();
        let policy = &snap.config.policy;
        let (control, weights): (String, Vec<(String, f64)>) = if id == GLOBAL_HOLDOUT {
            let h = policy.holdout.as_ref().ok_or_else(|| Error::NotFound("no global holdout is configured".into()))?;
            ("holdout".into(), vec![("holdout".into(), h.share), ("treated".into(), 1.0 - h.share)])
        } else {
            let e = policy
                .experiments
                .iter()
                .find(|e| e.id == id)
                .ok_or_else(|| Error::NotFound(format!("no experiment {id:?}")))?;
            (e.control.clone(), e.variants.iter().map(|v| (v.name.clone(), v.weight)).collect())
        };
        let counters = self.store.experiment_counters(id).await?;
        Ok(crate::domain::results::report(id, &control, &weights, &counters))
    }
}
