//! Thompson sampling over per-(offer, stage) Beta posteriors of the response rate.
//!
//! **Where the posteriors come from.** Each offer's trials are the decisions that picked it and
//! its successes the linked outcomes of the configured kind (click, accept or conversion), in
//! the decision's stage, summed over channels and the last `window_days` days of the journey
//! analytics counters (`o|offer|stage|channel|metric`, see `funnel`). Those counters are
//! updated in Redis by the same script that logs the decision or links the outcome (atomic)
//! and sit in the user's slot (cluster-safe), so the posteriors need no state of their own. The
//! server reads them every `refresh_seconds` into a [`Posteriors`] snapshot; a posterior is
//! `Beta(prior_alpha + successes, prior_beta + max(trials − successes, 0))`.
//!
//! **Exact logged probabilities.** Thompson sampling shows the offer whose sampled response
//! rate is highest, so an offer's selection probability is P(its draw is the largest), which
//! has no closed form for more than two offers. Touchpoint estimates those win probabilities
//! by Monte Carlo (`samples` joint draws, seeded by the posteriors themselves, so the same
//! posteriors always give the same estimate) and then picks *from the estimate*. The policy is
//! therefore "Thompson sampling up to Monte Carlo error" (standard error at most
//! 0.5/√samples per probability: 0.011 at the default 2,000) and every logged probability is
//! exactly the probability the pick was made with. Ranks after the first repeat this among
//! the remaining offers (a fresh draw per rank, as epsilon-greedy and softmax do). An offer
//! whose estimated win probability is 0 (no draw of `samples` put it first) is not shown.
//!
//! Estimates are memoised per snapshot by the posteriors of the offers in play, so a server
//! pays for the draws once per snapshot and candidate set, not per decision.
use super::funnel::{DECISION, parse_offer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The score names a Thompson-sampled candidate carries (logged, so a replay uses the same
/// posteriors).
pub const ALPHA: &str = "thompson_alpha";
/// See [`ALPHA`].
pub const BETA: &str = "thompson_beta";

/// Memoised estimates kept per snapshot before the memo starts over.
const MEMO_CAP: usize = 4096;

/// One offer's posterior: Beta(alpha, beta).
pub type Posterior = (f64, f64);

/// The posteriors of one snapshot, with the memo of win probabilities.
#[derive(Debug, Default)]
pub struct Posteriors {
    /// stage -> offer -> posterior (nested, so a lookup borrows its keys).
    by_stage_offer: HashMap<String, HashMap<String, Posterior>>,
    prior: Posterior,
    memo: Mutex<HashMap<Vec<u64>, Arc<[f64]>>>,
}

impl Posteriors {
    /// Only the prior: every offer Beta(prior).
    pub fn prior_only(prior: Posterior) -> Self {
        Self { prior, ..Self::default() }
    }

    /// From summed analytics counters: trials = `decision`, successes = `reward` (an outcome
    /// kind's name), per (offer, stage), over every channel.
    pub fn from_counters(counters: &BTreeMap<String, f64>, reward: &str, prior: Posterior) -> Self {
        let mut by_stage_offer: HashMap<String, HashMap<String, Posterior>> = HashMap::new();
        // (trials, successes) first, turned into posteriors below.
        for (field, v) in counters {
            let Some((offer, stage, _channel, metric)) = parse_offer(field) else { continue };
            let t = by_stage_offer.entry(stage.to_string()).or_default().entry(offer.to_string()).or_default();
            if metric == DECISION {
                t.0 += v;
            } else if metric == reward {
                t.1 += v;
            }
        }
        for (trials, successes) in by_stage_offer.values_mut().flat_map(|o| o.values_mut()) {
            (*trials, *successes) = (prior.0 + *successes, prior.1 + (*trials - *successes).max(0.0));
        }
        Self { by_stage_offer, prior, memo: Mutex::default() }
    }

    /// From a logged decision's candidates' scores (for replay): what the decision used.
    pub fn from_logged<'a>(
        stage: &str,
        candidates: impl Iterator<Item = (&'a str, &'a BTreeMap<String, f64>)>,
    ) -> Self {
        let offers = candidates
            .filter_map(|(offer, scores)| Some((offer.to_string(), (*scores.get(ALPHA)?, *scores.get(BETA)?))))
            .collect();
        let by_stage_offer = HashMap::from([(stage.to_string(), offers)]);
        Self { by_stage_offer, prior: (1.0, 1.0), memo: Mutex::default() }
    }

    /// The posterior of `offer` in `stage` (the prior when nothing was counted).
    pub fn get(&self, stage: &str, offer: &str) -> Posterior {
        self.by_stage_offer.get(stage).and_then(|o| o.get(offer)).copied().unwrap_or(self.prior)
    }

    /// (offer, stage) pairs with counts.
    pub fn len(&self) -> usize {
        self.by_stage_offer.values().map(HashMap::len).sum()
    }

    /// No (offer, stage) pair has counts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`win_probabilities`], memoised.
    pub fn win_probabilities(&self, params: &[Posterior], samples: u32) -> Arc<[f64]> {
        let key: Vec<u64> =
            params.iter().flat_map(|(a, b)| [a.to_bits(), b.to_bits()]).chain([u64::from(samples)]).collect();
        if let Some(hit) = self.memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return hit;
        }
        let p: Arc<[f64]> = win_probabilities(params, samples).into();
        if let Ok(mut m) = self.memo.lock() {
            if m.len() >= MEMO_CAP {
                m.clear();
            }
            m.insert(key, p.clone());
        }
        p
    }
}

/// The Monte Carlo estimate of each offer's probability of the largest draw, from `samples`
/// joint draws (ties to the earlier offer), seeded by the parameters: deterministic.
pub fn win_probabilities(params: &[Posterior], samples: u32) -> Vec<f64> {
    let n = params.len();
    if n <= 1 {
        return vec![1.0; n];
    }
    // FNV-1a over the parameters' bits: the same posteriors, the same estimate.
    let seed = params
        .iter()
        .flat_map(|(a, b)| [a.to_bits(), b.to_bits()])
        .fold(0xcbf2_9ce4_8422_2325u64, |h, x| (h ^ x).wrapping_mul(0x0100_0000_01b3));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Parameters are validated positive and finite where they are built; a bad one draws 0.
    let dists: Vec<Option<Beta<f64>>> = params.iter().map(|&(a, b)| Beta::new(a, b).ok()).collect();
    let mut wins = vec![0u32; n];
    for _ in 0..samples.max(1) {
        let mut best = (0, f64::NEG_INFINITY);
        for (i, d) in dists.iter().enumerate() {
            let x = d.as_ref().map_or(0.0, |d| d.sample(&mut rng));
            if x > best.1 {
                best = (i, x);
            }
        }
        wins[best.0] += 1;
    }
    let total = f64::from(samples.max(1));
    wins.iter().map(|&w| f64::from(w) / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posteriors_sum_channels_and_days_per_offer_and_stage() {
        let counters: BTreeMap<String, f64> = [
            ("o|a|conversion|web|decision", 10.0),
            ("o|a|conversion|email|decision", 5.0),
            ("o|a|conversion|web|click", 3.0),
            ("o|a|conversion|email|click", 1.0),
            ("o|a|conversion|web|conversion", 2.0),
            ("o|b|conversion|web|decision", 1.0),
            ("o|b|conversion|web|click", 4.0), // more clicks than decisions: beta stays at the prior
            ("e|conversion|web", 7.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let p = Posteriors::from_counters(&counters, "click", (1.0, 1.0));
        assert_eq!(p.get("conversion", "a"), (5.0, 12.0));
        assert_eq!(p.get("conversion", "b"), (5.0, 1.0));
        assert_eq!(p.get("awareness", "a"), (1.0, 1.0));
        assert_eq!(p.len(), 2);
        let by_conversion = Posteriors::from_counters(&counters, "conversion", (2.0, 3.0));
        assert_eq!(by_conversion.get("conversion", "a"), (4.0, 16.0));
    }

    /// Two offers: P(X > Y) for X ~ Beta(a1, b1), Y ~ Beta(a2, b2) with integer parameters
    /// has a closed form (Evan Miller's formula); the estimate is within its Monte Carlo error.
    #[test]
    fn two_offer_win_probabilities_match_the_closed_form() {
        fn ln_beta(a: f64, b: f64) -> f64 {
            statrs::function::gamma::ln_gamma(a) + statrs::function::gamma::ln_gamma(b)
                - statrs::function::gamma::ln_gamma(a + b)
        }
        // P(Y > X) = Σ_{i=0}^{a2-1} B(a1+i, b1+b2) / ((b2+i) B(1+i, b2) B(a1, b1))
        let p_second_wins = |(a1, b1): Posterior, (a2, b2): Posterior| -> f64 {
            (0..a2 as u32)
                .map(|i| {
                    let i = f64::from(i);
                    (ln_beta(a1 + i, b1 + b2) - (b2 + i).ln() - ln_beta(1.0 + i, b2) - ln_beta(a1, b1)).exp()
                })
                .sum()
        };
        for (x, y) in [((3.0, 20.0), (5.0, 18.0)), ((1.0, 1.0), (2.0, 1.0)), ((40.0, 400.0), (30.0, 410.0))] {
            let exact_first = 1.0 - p_second_wins(x, y);
            let samples = 20_000;
            let est = win_probabilities(&[x, y], samples);
            let se = (exact_first * (1.0 - exact_first) / f64::from(samples)).sqrt();
            assert!((est[0] - exact_first).abs() < 4.5 * se + 1e-9, "{x:?} vs {y:?}: {} vs {exact_first}", est[0]);
            assert!((est[0] + est[1] - 1.0).abs() < 1e-12);
        }
        // Deterministic: the same posteriors, the same estimate; the memo returns it too.
        let params = [(3.0, 7.0), (2.0, 2.0), (9.0, 30.0)];
        assert_eq!(win_probabilities(&params, 500), win_probabilities(&params, 500));
        let p = Posteriors::prior_only((1.0, 1.0));
        assert_eq!(&*p.win_probabilities(&params, 500), &win_probabilities(&params, 500)[..]);
        assert_eq!(win_probabilities(&[(1.0, 1.0)], 10), vec![1.0]);
    }

    #[test]
    fn logged_posteriors_come_back_for_replay() {
        let a: BTreeMap<String, f64> =
            [(ALPHA.to_string(), 4.0), (BETA.to_string(), 9.0), ("response".to_string(), 0.2)].into();
        let b = BTreeMap::new();
        let p = Posteriors::from_logged("consideration", [("a", &a), ("b", &b)].into_iter());
        assert_eq!(p.get("consideration", "a"), (4.0, 9.0));
        assert_eq!(p.get("consideration", "b"), (1.0, 1.0));
    }
}
