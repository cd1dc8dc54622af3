//! The journey simulator: synthetic users with known propensities, for the demo, tests and
//! benchmarks (the trainer's `simulate` command writes its output).
//!
//! Generative story, per user (all draws from one ChaCha8 stream seeded by `seed`):
//! 1. Attributes: age 18-75, gender, income band (low/mid/high), country and region,
//!    interests (each of six with probability 0.3).
//! 2. Latent behaviour: daily visit probability `v` (skewed: most users visit rarely),
//!    daily churn hazard `h` (younger users churn faster), purchase probability per visit `b`
//!    (higher income buys more; capped at 0.15).
//! 3. The user arrives on a day in the first 70% of the window. Each later day they churn
//!    with probability `h` (then never return); otherwise they visit with probability `v`.
//! 4. A visit is a funnel: page_view; product_view (0.6); add_to_cart (0.4 of those);
//!    checkout_started (0.7 of those); purchase with the probability that makes the
//!    per-visit purchase rate exactly `b`. A purchase is worth a log-normal amount whose
//!    median grows with income; after it, review_posted (0.08) and referral (0.04).
//!
//! Ground truth at the end of the window for a horizon of H days: a churned user has churn
//! probability 1 and purchase probability 0; otherwise, with survival S_d = (1-h)^d,
//! P(churn) = Π_{d=1..H} (1 - v·S_d) and P(purchase) = 1 - Π_{d=1..H} (1 - v·b·S_d).
use crate::domain::event::Event;
use crate::domain::profile::AttrValue;
use crate::domain::{MS_PER_DAY, Millis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of users (ids `u000000`, `u000001`, ...).
    pub users: usize,
    /// Length of the simulated window, in days.
    pub days: u32,
    /// Seed of the random stream: one seed, one simulation.
    pub seed: u64,
    /// End of the simulated window (ms since epoch).
    pub end: Millis,
}

/// A simulated user: attributes and the latent behaviour behind their events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimUser {
    /// User id.
    pub user_id: String,
    /// Age, gender, income band, country, region and interests.
    pub attributes: BTreeMap<String, AttrValue>,
    /// Probability of a visit on any day after arrival, while not churned.
    pub visit_prob: f64,
    /// Daily probability of churning (never returning).
    pub churn_hazard: f64,
    /// Probability that a visit ends in a purchase.
    pub buy_prob: f64,
    /// Churned before the end of the window.
    pub churned: bool,
}

impl SimUser {
    /// True probabilities of (churn, purchase) within `horizon_days` after the window's end.
    pub fn ground_truth(&self, horizon_days: u32) -> (f64, f64) {
        if self.churned {
            return (1.0, 0.0);
        }
        let (mut no_visit, mut no_buy, mut survive) = (1.0, 1.0, 1.0);
        for _ in 0..horizon_days {
            survive *= 1.0 - self.churn_hazard;
            no_visit *= 1.0 - self.visit_prob * survive;
            no_buy *= 1.0 - self.visit_prob * self.buy_prob * survive;
        }
        (no_visit, 1.0 - no_buy)
    }
}

/// FNV-1a, then SplitMix64's finaliser (so ids differing in one byte land far apart), to a
/// number in [0, 1): stable across runs and platforms.
fn unit_hash(s: &str) -> f64 {
    let mut h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// An offer's appeal in the simulator's response model: 0.02 to 0.30, fixed by its id.
pub fn offer_appeal(offer: &str) -> f64 {
    0.02 + 0.28 * unit_hash(offer)
}

/// The true probability that `user` clicks `offer` when shown it (the simulator's response
/// model, known so that off-policy estimates can be checked against on-policy truth): the
/// offer's appeal times 0.5 + a user–offer affinity (0 to 1, fixed by the pair), plus the
/// user's purchase propensity times the affinity.
pub fn click_probability(user: &SimUser, offer: &str) -> f64 {
    let affinity = unit_hash(&format!("{}|{offer}", user.user_id));
    (offer_appeal(offer) * (0.5 + affinity) + user.buy_prob * affinity).min(0.95)
}

/// A simulation's output.
pub struct Simulation {
    /// Every user, in id order.
    pub users: Vec<SimUser>,
    /// Every event, in time order.
    pub events: Vec<Event>,
}

const INTERESTS: [&str; 6] = ["books", "music", "fashion", "electronics", "sports", "home"];
const COUNTRIES: [(&str, [&str; 2], f64); 5] = [
    ("US", ["east", "west"], 0.4),
    ("GB", ["england", "scotland"], 0.2),
    ("DE", ["north", "south"], 0.15),
    ("FR", ["north", "south"], 0.15),
    ("ES", ["north", "south"], 0.1),
];

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[(&'a str, f64)]) -> &'a str {
    let mut x: f64 = rng.r#gen();
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

/// Runs the simulation (see the module doc); deterministic for a given config.
pub fn simulate(cfg: &SimConfig) -> Simulation {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let start = cfg.end - i64::from(cfg.days) * MS_PER_DAY;
    let mut users = Vec::with_capacity(cfg.users);
    let mut events = Vec::new();
    for n in 0..cfg.users {
        let user_id = format!("u{n:06}");
        let age = rng.gen_range(18..=75);
        let gender = pick(&mut rng, &[("female", 0.48), ("male", 0.48), ("other", 0.04)]);
        let income = pick(&mut rng, &[("low", 0.3), ("mid", 0.5), ("high", 0.2)]);
        let country_ix = {
            let weights: Vec<(&str, f64)> = COUNTRIES.iter().map(|(c, _, w)| (*c, *w)).collect();
            let c = pick(&mut rng, &weights);
            COUNTRIES.iter().position(|(x, _, _)| *x == c).unwrap_or(0)
        };
        let region = COUNTRIES[country_ix].1[rng.gen_range(0..2)];
        let interests: Vec<&str> = INTERESTS.iter().copied().filter(|_| rng.gen_bool(0.3)).collect();

        let u: f64 = rng.r#gen();
        let visit_prob = 0.02 + 0.3 * u * u;
        let churn_hazard = 0.002 + 0.02 * rng.r#gen::<f64>() * (if age < 30 { 1.5 } else { 1.0 });
        let income_mult = match income {
            "low" => 0.6,
            "mid" => 1.0,
            _ => 1.5,
        };
        let buy_prob = (0.05 * income_mult * rng.gen_range(0.3..1.7_f64)).min(0.15);

        let mut attributes = BTreeMap::new();
        attributes.insert("age".into(), AttrValue::Num(f64::from(age)));
        attributes.insert("gender".into(), AttrValue::Str(gender.into()));
        attributes.insert("income_band".into(), AttrValue::Str(income.into()));
        attributes.insert("country".into(), AttrValue::Str(COUNTRIES[country_ix].0.into()));
        attributes.insert("region".into(), AttrValue::Str(region.into()));
        attributes.insert("interests".into(), AttrValue::Str(interests.join(",")));

        let arrival = rng.gen_range(0..=(cfg.days * 7 / 10).max(1));
        let mut churned = false;
        let mut seq = 0u32;
        let mut emit = |kind: &str, t: Millis, value: f64, events: &mut Vec<Event>| {
            seq += 1;
            events.push(Event {
                event_id: format!("{user_id}-{seq}"),
                user_id: user_id.clone(),
                event_type: kind.into(),
                timestamp: t,
                channel: if kind == "page_view" && seq.is_multiple_of(3) { "app".into() } else { "web".into() },
                offer_id: String::new(),
                value,
                properties: BTreeMap::new(),
            });
        };
        for day in arrival..cfg.days {
            if day > arrival && rng.gen_bool(churn_hazard) {
                churned = true;
                break;
            }
            if day > arrival && !rng.gen_bool(visit_prob) {
                continue;
            }
            let mut t = start + i64::from(day) * MS_PER_DAY + rng.gen_range(0..MS_PER_DAY - 3_600_000);
            let mut step = |rng: &mut ChaCha8Rng| {
                t += rng.gen_range(5_000..300_000);
                t
            };
            emit("page_view", step(&mut rng), 0.0, &mut events);
            if !rng.gen_bool(0.6) {
                continue;
            }
            emit("product_view", step(&mut rng), 0.0, &mut events);
            if !rng.gen_bool(0.4) {
                continue;
            }
            emit("add_to_cart", step(&mut rng), 0.0, &mut events);
            if !rng.gen_bool(0.7) {
                continue;
            }
            emit("checkout_started", step(&mut rng), 0.0, &mut events);
            if !rng.gen_bool((buy_prob / (0.6 * 0.4 * 0.7)).min(1.0)) {
                continue;
            }
            let median: f64 = match income {
                "low" => 25.0,
                "mid" => 45.0,
                _ => 90.0,
            };
            let z: f64 = rng.sample(rand_distr_normal());
            let value = (median.ln() + 0.5 * z).exp();
            emit("purchase", step(&mut rng), (value * 100.0).round() / 100.0, &mut events);
            if rng.gen_bool(0.08) {
                emit("review_posted", step(&mut rng), 0.0, &mut events);
            }
            if rng.gen_bool(0.04) {
                emit("referral", step(&mut rng), 0.0, &mut events);
            }
        }
        users.push(SimUser { user_id, attributes, visit_prob, churn_hazard, buy_prob, churned });
    }
    events.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.event_id.cmp(&b.event_id)));
    Simulation { users, events }
}

/// A standard normal draw (Box-Muller), so the simulator needs no extra crate.
fn rand_distr_normal() -> impl rand::distributions::Distribution<f64> {
    struct Normal;
    impl rand::distributions::Distribution<f64> for Normal {
        fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
            let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
            let u2: f64 = rng.r#gen();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }
    Normal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64) -> Simulation {
        simulate(&SimConfig { users: 300, days: 60, seed, end: 1_700_000_000_000 })
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (a, b, c) = (run(7), run(7), run(8));
        assert_eq!(a.events, b.events);
        assert_ne!(a.events, c.events);
    }

    #[test]
    fn events_in_window_and_ordered_and_purchases_valued() {
        let s = run(1);
        let end = 1_700_000_000_000;
        assert!(s.events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
        assert!(s.events.iter().all(|e| e.timestamp > end - 60 * MS_PER_DAY && e.timestamp < end));
        assert!(s.events.iter().filter(|e| e.event_type == "purchase").all(|e| e.value > 0.0));
        assert!(s.events.iter().any(|e| e.event_type == "referral" || e.event_type == "review_posted"));
    }

    #[test]
    fn ground_truth_is_a_probability_and_ordered_by_activity() {
        let s = run(2);
        for u in &s.users {
            let (c, p) = u.ground_truth(30);
            assert!((0.0..=1.0).contains(&c) && (0.0..=1.0).contains(&p));
        }
        let mut u = s.users[0].clone();
        u.churned = false;
        u.visit_prob = 0.05;
        let low = u.ground_truth(30);
        u.visit_prob = 0.3;
        let high = u.ground_truth(30);
        assert!(high.0 < low.0 && high.1 > low.1);
    }
}
