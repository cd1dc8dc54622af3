//! Experiments: deterministic assignment, layers, targeting, per-variant overrides, the
//! global holdout, and the attribution rule every store follows.
//!
//! Hashing (stable across restarts, machines and releases, pinned by test vectors):
//! `bucket(key, user) = u64::from_be_bytes(SHA-256(key + ":" + user)[0..8]) mod 10_000`.
//! - Layer slice: `bucket("layer:" + layer, user)`. An experiment owns the slice
//!   `[offset, offset + allocation)` of its layer (fractions of 10,000); experiments of one
//!   layer own disjoint slices, so they get disjoint traffic; different layers hash
//!   independently. Growing `allocation` (same `offset`) keeps every assigned user in.
//! - Variant: `bucket("variant:" + salt, user)` against the cumulative variant weights:
//!   independent of the allocation, so growing an experiment never moves a user.
//! - Global holdout: `bucket("holdout:" + salt, user) < share * 10_000`.
use super::Millis;
use super::arbitration::Exploration;
use super::model::BoundModel;
use super::rules::Rule;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Hash buckets per layer or holdout: slices and shares are fractions of 10,000.
pub const BUCKETS: u64 = 10_000;

/// The user's bucket under `key`, in `0..BUCKETS`: the first 8 bytes of
/// `SHA-256(key + ":" + user)` as a big-endian integer, mod 10,000 (see the module doc).
pub fn bucket(key: &str, user: &str) -> u64 {
    let digest = Sha256::new().chain_update(key.as_bytes()).chain_update(b":").chain_update(user.as_bytes()).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// What a variant changes in the decisions of its users.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// A CEL priority rule replacing the policy's priority.
    pub priority: Option<Rule>,
    /// A churn model replacing the configured one.
    pub churn: Option<Arc<BoundModel>>,
    /// A purchase model replacing the configured one.
    pub purchase: Option<Arc<BoundModel>>,
    /// Only these offers are candidates.
    pub offers: Option<BTreeSet<String>>,
    /// An exploration policy replacing the configured one.
    pub exploration: Option<Exploration>,
    /// No offer at all (the control of "does contacting help?").
    pub holdout: bool,
}

/// One arm of an experiment.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Name, unique within the experiment.
    pub name: String,
    /// Relative weight (positive): the variant's share is its weight over the sum of weights.
    pub weight: f64,
    /// What the variant changes.
    pub overrides: Overrides,
}

/// A randomised experiment over decisions, compiled from the config.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Experiment id, as reported in assignments and results.
    pub id: String,
    /// Salt of the variant hash; a new salt re-randomises the variants.
    pub salt: String,
    /// The layer it shares traffic in (experiments of a layer get disjoint users).
    pub layer: String,
    /// Where its slice of the layer starts, as a fraction of the layer in [0, 1].
    pub offset: f64,
    /// Its share of the layer, a fraction in (0, 1]; `offset + allocation <= 1`.
    pub allocation: f64,
    /// Start time (ms since the epoch, inclusive); None: no start.
    pub start: Option<Millis>,
    /// End time (ms since the epoch, exclusive); None: never ends.
    pub end: Option<Millis>,
    /// Decisions on these channels only (empty: all).
    pub channels: Vec<String>,
    /// CEL rule: only users for whom it holds are assigned.
    pub targeting: Option<Rule>,
    /// The arms, at least two.
    pub variants: Vec<Variant>,
    /// Name of the variant the others are compared with.
    pub control: String,
    /// Outcomes count for a variant up to this long after the user's first exposure.
    pub attribution_ms: Millis,
}

/// The global holdout: a share of users who never receive offers (reported like an
/// experiment named `global_holdout` with variants `holdout` and `treated`).
#[derive(Debug, Clone)]
pub struct GlobalHoldout {
    /// Salt of the holdout hash.
    pub salt: String,
    /// Fraction of all users held out, in (0, 1).
    pub share: f64,
    /// Outcomes count up to this long (ms) after the user's first decision.
    pub attribution_ms: Millis,
}

/// The experiment id (and layer) under which the global holdout is reported.
pub const GLOBAL_HOLDOUT: &str = "global_holdout";

/// A user's assignment in one experiment, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The experiment (or `global_holdout`).
    pub experiment_id: String,
    /// The experiment's layer.
    pub layer: String,
    /// None when the user is not in the experiment.
    pub variant: Option<String>,
    /// The user's bucket in the layer (or in the holdout).
    pub bucket: u64,
    /// Why the user is or is not in the experiment, in words.
    pub reason: String,
}

impl Experiment {
    /// Whether `now` is inside `[start, end)`.
    pub fn running(&self, now: Millis) -> bool {
        self.start.is_none_or(|s| now >= s) && self.end.is_none_or(|e| now < e)
    }

    /// The slice of its layer this experiment owns, in buckets.
    pub fn slice(&self) -> (u64, u64) {
        let b = BUCKETS as f64;
        ((self.offset * b).round() as u64, ((self.offset + self.allocation) * b).round() as u64)
    }

    /// The variant a user falls in when they are in the experiment.
    pub fn variant_of(&self, user: &str) -> &Variant {
        let total: f64 = self.variants.iter().map(|v| v.weight).sum();
        let point = bucket(&format!("variant:{}", self.salt), user) as f64 / BUCKETS as f64 * total;
        let mut acc = 0.0;
        for v in &self.variants {
            acc += v.weight;
            if point < acc {
                return v;
            }
        }
        self.variants.last().expect("an experiment has variants")
    }

    /// Assigns `user`; `targeting` evaluates the targeting rule (Ok(true) means targeted).
    pub fn assign(
        &self,
        user: &str,
        channel: Option<&str>,
        now: Millis,
        targeting: impl FnOnce(&Rule) -> Result<bool, String>,
    ) -> Assignment {
        let layer_bucket = bucket(&format!("layer:{}", self.layer), user);
        let out = |variant: Option<String>, reason: String| Assignment {
            experiment_id: self.id.clone(),
            layer: self.layer.clone(),
            variant,
            bucket: layer_bucket,
            reason,
        };
        if !self.running(now) {
            return out(None, "the experiment is not running".into());
        }
        if let Some(ch) = channel.filter(|c| !self.channels.is_empty() && !self.channels.iter().any(|x| x == c)) {
            return out(None, format!("channel {ch} is not one of the experiment's ({})", self.channels.join(", ")));
        }
        let (from, to) = self.slice();
        if !(from..to).contains(&layer_bucket) {
            return out(
                None,
                format!("bucket {layer_bucket} of layer {} is outside the experiment's slice {from}..{to}", self.layer),
            );
        }
        if let Some(rule) = &self.targeting {
            match targeting(rule) {
                Ok(true) => {}
                Ok(false) => return out(None, "the targeting rule is false".into()),
                Err(e) => return out(None, format!("the targeting rule could not be evaluated: {e}")),
            }
        }
        let v = self.variant_of(user);
        out(
            Some(v.name.clone()),
            format!(
                "bucket {layer_bucket} is in slice {from}..{to} of layer {}; variant {} by weight",
                self.layer, v.name
            ),
        )
    }
}

impl GlobalHoldout {
    /// Assigns `user` to `holdout` (bucket below `share * 10,000`) or `treated`.
    pub fn assign(&self, user: &str) -> Assignment {
        let b = bucket(&format!("holdout:{}", self.salt), user);
        let held = (b as f64) < self.share * BUCKETS as f64;
        Assignment {
            experiment_id: GLOBAL_HOLDOUT.into(),
            layer: GLOBAL_HOLDOUT.into(),
            variant: Some(if held { "holdout" } else { "treated" }.into()),
            bucket: b,
            reason: format!("holdout bucket {b} {} {:.0}", if held { "<" } else { ">=" }, self.share * BUCKETS as f64),
        }
    }
}

/// Per-variant counters of an experiment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantCounters {
    /// Unique users exposed (first decision in the experiment).
    pub exposed: u64,
    /// Decisions that touched the experiment.
    pub decisions: u64,
    /// Unique users with a visit (click outcome or visit event) inside the attribution window.
    pub visitors: u64,
    /// Unique users with a conversion (conversion outcome or purchase event) inside it.
    pub converters: u64,
    /// Sum of attributed conversion values.
    pub revenue: f64,
    /// Sum over users of their attributed revenue squared (for Welch's t-test).
    pub revenue_sq: f64,
}

/// A user's exposure to one experiment, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exposure {
    /// The variant the user was assigned at first exposure.
    pub variant: String,
    /// Time of the first exposure (ms since the epoch): the attribution window starts here.
    pub first: Millis,
    /// Already counted as a visitor.
    pub visited: bool,
    /// Already counted as a converter.
    pub converted: bool,
    /// Conversion value attributed to this user so far.
    pub revenue: f64,
}

/// Something a user did that may count for their experiment variants (see `attribute`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Happening {
    /// A visit (a click outcome or a visit event).
    Visit {
        /// When (ms since the epoch).
        at: Millis,
    },
    /// A conversion (a conversion outcome or a purchase event).
    Conversion {
        /// When (ms since the epoch).
        at: Millis,
        /// Its monetary value, added to the variant's revenue.
        value: f64,
    },
}

/// The attribution rule (the Redis store runs the same in Lua): a happening inside
/// `[first exposure, first exposure + window]` counts the user once as a visitor or converter
/// of their variant; conversion values add to revenue, and to the sum of squared per-user
/// revenue.
pub fn attribute(exposure: &mut Exposure, counters: &mut VariantCounters, window_ms: Millis, happening: Happening) {
    let at = match happening {
        Happening::Visit { at } | Happening::Conversion { at, .. } => at,
    };
    if at < exposure.first || at > exposure.first + window_ms {
        return;
    }
    match happening {
        Happening::Visit { .. } => {
            if !exposure.visited {
                exposure.visited = true;
                counters.visitors += 1;
            }
        }
        Happening::Conversion { value, .. } => {
            if !exposure.converted {
                exposure.converted = true;
                counters.converters += 1;
            }
            if value != 0.0 {
                let before = exposure.revenue;
                exposure.revenue += value;
                counters.revenue += value;
                counters.revenue_sq += exposure.revenue * exposure.revenue - before * before;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned: these values must never change (users would switch variants). Computed
    /// independently with Python: int.from_bytes(hashlib.sha256(f"{key}:{user}".encode()).digest()[:8], "big") % 10000
    #[test]
    fn hash_test_vectors() {
        for (key, user, expected) in [
            ("layer:ranking", "u000001", 9072),
            ("layer:ranking", "alice", 1555),
            ("variant:exp-a", "u000001", 9442),
            ("holdout:global", "bob", 456),
            ("variant:hillstrom", "Zoë", 7427),
        ] {
            assert_eq!(bucket(key, user), expected, "{key} {user}");
        }
    }

    fn exp(layer: &str, offset: f64, allocation: f64) -> Experiment {
        Experiment {
            id: format!("{layer}-{offset}"),
            salt: format!("{layer}-{offset}"),
            layer: layer.into(),
            offset,
            allocation,
            start: None,
            end: None,
            channels: vec![],
            targeting: None,
            variants: ["a", "b"]
                .iter()
                .map(|n| Variant { name: n.to_string(), weight: 1.0, overrides: Overrides::default() })
                .collect(),
            control: "a".into(),
            attribution_ms: 1000,
        }
    }

    fn assigned(e: &Experiment, user: &str) -> Option<String> {
        e.assign(user, None, 0, |_| Ok(true)).variant
    }

    #[test]
    fn balanced_split_by_chi_square_over_100k_users() {
        let e = exp("l", 0.0, 1.0);
        let mut counts = [0u64; 2];
        for i in 0..100_000 {
            match assigned(&e, &format!("user-{i}")).as_deref() {
                Some("a") => counts[0] += 1,
                Some("b") => counts[1] += 1,
                other => panic!("{other:?}"),
            }
        }
        let (chi2, p) = crate::domain::stats::srm(&counts, &[1.0, 1.0]).unwrap();
        assert!(p > 0.001, "split {counts:?}: chi2 {chi2}, p {p}");
    }

    #[test]
    fn layers_are_disjoint_and_independent_and_growth_keeps_users() {
        let first = exp("l", 0.0, 0.3);
        let second = exp("l", 0.3, 0.3);
        let other_layer = exp("m", 0.0, 0.5);
        let (mut both_first_second, mut in_other_given_first, mut in_first) = (0, 0, 0);
        let grown = Experiment { allocation: 0.6, ..first.clone() };
        for i in 0..20_000 {
            let u = format!("u{i}");
            let (a, b, c) = (assigned(&first, &u), assigned(&second, &u), assigned(&other_layer, &u));
            both_first_second += usize::from(a.is_some() && b.is_some());
            if a.is_some() {
                in_first += 1;
                in_other_given_first += usize::from(c.is_some());
                assert_eq!(assigned(&grown, &u), a, "growing keeps the user in the same variant");
            }
        }
        assert_eq!(both_first_second, 0, "one layer: disjoint traffic");
        let share = in_other_given_first as f64 / in_first as f64;
        assert!((share - 0.5).abs() < 0.03, "another layer is independent: {share}");
        assert!((in_first as f64 / 20_000.0 - 0.3).abs() < 0.02);
    }

    #[test]
    fn targeting_channel_and_window_say_why() {
        let mut e = exp("l", 0.0, 1.0);
        assert!(e.assign("u", None, 0, |_| Ok(false)).variant.is_some(), "no rule, no check");
        e.targeting = Some(Rule::compile("true", crate::domain::rules::Expect::Bool, false).unwrap());
        assert_eq!(e.assign("u", None, 0, |_| Ok(false)).reason, "the targeting rule is false");
        assert!(e.assign("u", None, 0, |_| Err("no value".into())).reason.contains("could not be evaluated"));
        e.channels = vec!["email".into()];
        assert!(e.assign("u", Some("web"), 0, |_| Ok(true)).reason.contains("channel web"));
        e.start = Some(10);
        assert_eq!(e.assign("u", Some("email"), 5, |_| Ok(true)).variant, None);
    }

    #[test]
    fn attribution_counts_users_once_inside_the_window() {
        let mut x = Exposure { variant: "a".into(), first: 100, ..Default::default() };
        let mut c = VariantCounters { exposed: 1, ..Default::default() };
        attribute(&mut x, &mut c, 50, Happening::Visit { at: 99 });
        attribute(&mut x, &mut c, 50, Happening::Visit { at: 120 });
        attribute(&mut x, &mut c, 50, Happening::Visit { at: 130 });
        attribute(&mut x, &mut c, 50, Happening::Conversion { at: 140, value: 3.0 });
        attribute(&mut x, &mut c, 50, Happening::Conversion { at: 150, value: 2.0 });
        attribute(&mut x, &mut c, 50, Happening::Conversion { at: 151, value: 100.0 });
        assert_eq!((c.visitors, c.converters, c.revenue, c.revenue_sq), (1, 1, 5.0, 25.0));
    }
}
