//! Experiments in a decision: every assignment of the user, and the variants' overrides
//! merged into one plan (priority, models, exploration, offer sets, holdout).
//!
//! When two variants a user is in override the same thing, the experiment listed later in
//! the config wins for that user (README: overlapping experiments).
use super::checks::DropReason;
use crate::domain::Millis;
use crate::domain::arbitration::{Exploration, Priority};
use crate::domain::experiment::{Assignment, GLOBAL_HOLDOUT, Overrides};
use crate::domain::model::BoundModel;
use crate::domain::policy::Policy;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Every experiment's assignment for a user (in config order, then the global holdout), in
/// the scope of a decision (targeting rules read it). `channel` is `None` when the caller
/// names none (every channel qualifies).
pub fn assign_all(
    policy: &Policy,
    user: &str,
    channel: Option<&str>,
    ctx: &cel::Context,
    now: Millis,
) -> Vec<Assignment> {
    let mut out: Vec<Assignment> =
        policy.experiments.iter().map(|e| e.assign(user, channel, now, |rule| rule.eval_bool(ctx))).collect();
    if let Some(h) = &policy.holdout {
        out.push(h.assign(user));
    }
    out
}

/// What the user's variants change in this decision.
#[derive(Debug, Default)]
pub struct Plan<'p> {
    /// The experiments (and global holdout) the user is in.
    pub assignments: Vec<Assignment>,
    /// Why every offer is dropped, when the user is held out.
    pub held_out: Option<DropReason>,
    /// Offer sets the candidates must be in, each with the reason for those that are not.
    pub offer_sets: Vec<(&'p BTreeSet<String>, DropReason)>,
    /// Merged overrides (priority, models, exploration); `offers` and `holdout` are in the
    /// fields above.
    pub overrides: Overrides,
}

impl Plan<'_> {
    /// Whether a variant swaps the churn or purchase model.
    pub fn models_changed(&self) -> bool {
        self.overrides.churn.is_some() || self.overrides.purchase.is_some()
    }

    /// The churn and purchase models in use for this user.
    pub fn models<'a>(&'a self, policy: &'a Policy) -> (Option<&'a Arc<BoundModel>>, Option<&'a Arc<BoundModel>>) {
        let ov = &self.overrides;
        (ov.churn.as_ref().or(policy.models.churn.as_ref()), ov.purchase.as_ref().or(policy.models.purchase.as_ref()))
    }

    /// The priority formula in use for this user.
    pub fn priority(&self, policy: &Policy) -> Priority {
        self.overrides.priority.clone().map(Priority::Rule).unwrap_or_else(|| policy.priority.clone())
    }

    /// The exploration policy in use for this user.
    pub fn exploration(&self, policy: &Policy) -> Exploration {
        self.overrides.exploration.unwrap_or(policy.exploration)
    }
}

/// Merges the overrides of the variants the user is in (later experiments win).
pub fn plan(policy: &Policy, assignments: Vec<Assignment>) -> Plan<'_> {
    let mut plan = Plan::default();
    for a in assignments.iter() {
        let Some(variant) = a.variant.as_deref() else { continue };
        if a.experiment_id == GLOBAL_HOLDOUT {
            if variant == "holdout" {
                plan.held_out = Some(DropReason::GlobalHoldout);
            }
            continue;
        }
        let Some(v) = policy
            .experiments
            .iter()
            .find(|e| e.id == a.experiment_id)
            .and_then(|e| e.variants.iter().find(|v| v.name == variant))
        else {
            continue;
        };
        let o = &v.overrides;
        let named = || (a.experiment_id.clone(), variant.to_string());
        if o.holdout {
            let (experiment, variant) = named();
            plan.held_out = Some(DropReason::HoldoutVariant { experiment, variant });
        }
        let ov = &mut plan.overrides;
        ov.priority = o.priority.clone().or(ov.priority.take());
        ov.churn = o.churn.clone().or(ov.churn.take());
        ov.purchase = o.purchase.clone().or(ov.purchase.take());
        ov.exploration = o.exploration.or(ov.exploration);
        if let Some(set) = &o.offers {
            let (experiment, variant) = named();
            plan.offer_sets.push((set, DropReason::NotInOfferSet { experiment, variant }));
        }
    }
    plan.assignments = assignments;
    plan
}

/// Why a user gets no offer, known without reading their profile: the global holdout, or a
/// holdout variant they would be in (targeting is not known without the profile, so a
/// targeted experiment counts as if it held: a degraded answer errs on the side of the
/// control group staying clean).
pub fn held_out_by_hash(policy: &Policy, user: &str, channel: &str, now: Millis) -> Option<DropReason> {
    if policy.holdout.as_ref().is_some_and(|h| h.assign(user).variant.as_deref() == Some("holdout")) {
        return Some(DropReason::GlobalHoldout);
    }
    policy.experiments.iter().find_map(|e| {
        let a = e.assign(user, Some(channel), now, |_| Ok(true));
        let v = a.variant?;
        e.variants
            .iter()
            .find(|x| x.name == v && x.overrides.holdout)
            .map(|_| DropReason::HoldoutVariant { experiment: e.id.clone(), variant: v.clone() })
    })
}
