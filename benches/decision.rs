//! The in-process decision: segment rules, eligibility rules, two logistic models and
//! arbitration over 50 offers of one stage (the benchmark), plus variants with a CEL
//! priority expression and with exploration, with gradient-boosted models instead, and the
//! scoring of one model alone (logistic, and 100 trees of depth 6).
//! Run: `cargo bench --bench decision`.
use criterion::{Criterion, criterion_group, criterion_main};
use touchpoint::domain::thompson::{Posteriors, win_probabilities};

// The server binary's allocator, so the bench measures what the server runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::hint::black_box;
use touchpoint::config::Config;
use touchpoint::domain::MS_PER_DAY;
use touchpoint::domain::contact::ContactState;
use touchpoint::domain::decision::{DecisionInputs, DecisionQuery, decide};
use touchpoint::domain::event::Event;
use touchpoint::domain::features::Features;
use touchpoint::domain::model::{BoundModel, ModelArtifact};
use touchpoint::domain::profile::{AttrValue, UserState};
use touchpoint::domain::trees::{Node, Tree};

/// A fixed pseudo-random sequence in [0, 1) (no dependency, the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A `gbdt` artifact of `n` complete trees of `depth` over the journey features, splits on
/// random features at thresholds in the 0..4 range the bench users' features span.
fn gbdt_artifact(name: &str, n: usize, depth: u32) -> ModelArtifact {
    let names = touchpoint::domain::features::FEATURE_NAMES;
    let mut rng = Lcg(42);
    let splits = (1usize << depth) - 1;
    let trees = (0..n)
        .map(|_| Tree {
            nodes: (0..2 * splits + 1)
                .map(|i| {
                    if i < splits {
                        let feature = (rng.next() * names.len() as f64) as usize;
                        Node::Split { feature, threshold: rng.next() * 4.0, left: 2 * i + 1, right: 2 * i + 2 }
                    } else {
                        Node::Leaf(rng.next() * 0.2 - 0.1)
                    }
                })
                .collect(),
        })
        .collect();
    let a = serde_json::json!({
        "name": name, "version": "bench", "kind": "gbdt",
        "feature_names": names,
        "scaling": { "mean": vec![0.0; names.len()], "std": vec![1.0; names.len()] },
        "intercept": -1.0,
    });
    let mut a: ModelArtifact = serde_json::from_value(a).unwrap();
    a.trees = trees;
    a
}

fn model(dir: &std::path::Path, name: &str, gbdt: bool) -> String {
    let path = dir.join(format!("{name}.json"));
    if gbdt {
        std::fs::write(&path, serde_json::to_string(&gbdt_artifact(name, 100, 6)).unwrap()).unwrap();
        return path.display().to_string();
    }
    let names = touchpoint::domain::features::FEATURE_NAMES;
    let a = serde_json::json!({
        "name": name, "version": "bench", "kind": "logistic_regression",
        "feature_names": names,
        "scaling": { "mean": vec![0.5; names.len()], "std": vec![1.5; names.len()] },
        "intercept": -1.0,
        "coefficients": (0..names.len()).map(|i| (i as f64 - 7.0) / 10.0).collect::<Vec<_>>()
    });
    std::fs::write(&path, a.to_string()).unwrap();
    path.display().to_string()
}

fn config(dir: &std::path::Path, extra: &str, gbdt: bool) -> Config {
    let mut src = format!(
        "[models]\nchurn = \"{}\"\npurchase = \"{}\"\n{extra}\n",
        model(dir, "churn", gbdt),
        model(dir, "purchase", gbdt)
    );
    for (id, rule) in [
        ("young", "has(profile.age) && profile.age < 30.0"),
        ("buyers", "profile.purchase_count >= 2.0"),
        ("tech", "has(profile.interests) && profile.interests.contains('electronics')"),
        ("eu", "has(profile.country) && profile.country in ['DE', 'FR', 'ES']"),
    ] {
        src += &format!("[[segments]]\nid = \"{id}\"\nrule = \"{rule}\"\n");
    }
    let rules = [
        "profile.purchase_count >= 1.0",
        "scores.churn < 0.9",
        "has(profile.country) && profile.country != 'US'",
        "profile.monetary_total > 10.0 || lapsed",
    ];
    for i in 0..50 {
        src += &format!(
            "[[offers]]\nid = \"o{i:02}\"\nstages = [\"retention\"]\nchannels = [\"web\"]\ncontent_ref = \"cms://{i}\"\nvalue = {}\nweight = 1.0\n",
            1.0 + i as f64
        );
        if i % 2 == 0 {
            src += &format!("eligibility = \"{}\"\n", rules[i / 2 % rules.len()]);
        }
        if i % 5 == 0 {
            src += "cap = { max = 3, days = 7 }\n";
        }
    }
    Config::from_toml(&src, "bench.toml", std::iter::empty()).unwrap()
}

fn user() -> UserState {
    let j = touchpoint::domain::journey::JourneyDef::default_journey();
    let mut s = UserState::default();
    for (k, v) in [
        ("country", AttrValue::Str("FR".into())),
        ("age", AttrValue::Num(27.0)),
        ("interests", AttrValue::Str("books,electronics".into())),
    ] {
        s.attributes.insert(k.into(), v);
    }
    let evs: Vec<Event> = ["page_view", "product_view", "add_to_cart", "purchase", "purchase"]
        .iter()
        .enumerate()
        .map(|(i, t)| Event {
            event_id: i.to_string(),
            user_id: "u".into(),
            event_type: t.to_string(),
            timestamp: (i as i64 + 1) * MS_PER_DAY,
            channel: "web".into(),
            offer_id: String::new(),
            value: 40.0,
            properties: Default::default(),
        })
        .collect();
    j.apply_events(&mut s, &evs.iter().collect::<Vec<_>>());
    s
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let state = user();
    let contacts = ContactState::default();
    let query = DecisionQuery {
        user_id: "u".into(),
        channel: "web".into(),
        placement: String::new(),
        context: Default::default(),
        limit: 3,
        explain: false,
    };
    let variants = [
        ("decide_50_offers_default_priority", ""),
        (
            "decide_50_offers_cel_priority",
            "[decisions]\npriority = \"scores.purchase * (offer.value - offer.cost) * offer.weight\"",
        ),
        ("decide_50_offers_epsilon_greedy", "[decisions.exploration]\npolicy = \"epsilon_greedy\"\nepsilon = 0.1"),
        ("decide_50_offers_gbdt_models", ""),
        ("decide_50_offers_thompson", "[decisions.exploration]\npolicy = \"thompson\""),
    ];
    // Thompson sampling's posteriors: offer oNN shown 200 times, clicked 2 + NN % 17 times
    // (one snapshot for the whole run, so its memo is warm after the first decisions).
    let counters: std::collections::BTreeMap<String, f64> = (0..50)
        .flat_map(|i| {
            [
                (format!("o|o{i:02}|retention|web|decision"), 200.0),
                (format!("o|o{i:02}|retention|web|click"), f64::from(2 + i % 17)),
            ]
        })
        .collect();
    let posteriors = Posteriors::from_counters(&counters, "click", (1.0, 1.0));
    let params: Vec<(f64, f64)> = (0..50).map(|i| posteriors.get("retention", &format!("o{i:02}"))).collect();
    c.bench_function("thompson_win_probabilities_50_offers_2000_samples_cold", |b| {
        b.iter(|| black_box(win_probabilities(black_box(&params), 2000)))
    });
    for (name, extra) in variants {
        let cfg = config(dir.path(), extra, name.ends_with("gbdt_models"));
        let policy = cfg.policy.clone();
        let probe = decide(
            &policy,
            &DecisionInputs {
                query: &query,
                state: &state,
                contacts: &contacts,
                now: 10 * MS_PER_DAY,
                seed: 1,
                posteriors: Some(&posteriors),
            },
        );
        assert_eq!(probe.candidates.len(), 50);
        assert_eq!(probe.chosen.len(), 3);
        c.bench_function(name, |b| {
            let mut seed = 0u64;
            b.iter(|| {
                seed += 1;
                let input = DecisionInputs {
                    query: &query,
                    state: &state,
                    contacts: &contacts,
                    now: 10 * MS_PER_DAY,
                    seed,
                    posteriors: Some(&posteriors),
                };
                black_box(decide(black_box(&policy), &input))
            })
        });
    }
}

/// One model scoring one feature vector: the per-model cost inside a decision. The inputs
/// cycle through 64 different vectors so the trees' branches are not always the same.
fn scoring(c: &mut Criterion) {
    let mut rng = Lcg(7);
    let inputs: Vec<Features> =
        (0..64).map(|_| std::array::from_fn(|_| (rng.next() * 4.0 * 100.0).round() / 100.0)).collect();
    let gbdt = BoundModel::bind(gbdt_artifact("purchase", 100, 6)).unwrap();
    assert_eq!(gbdt.artifact.trees.len(), 100);
    assert!(gbdt.artifact.trees.iter().all(|t| t.depth() == 6));
    let dir = tempfile::tempdir().unwrap();
    let lr: ModelArtifact =
        serde_json::from_str(&std::fs::read_to_string(model(dir.path(), "p", false)).unwrap()).unwrap();
    for (name, m) in [("score_gbdt_100_trees_depth_6", gbdt), ("score_logistic", BoundModel::bind(lr).unwrap())] {
        c.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % inputs.len();
                black_box(m.score(black_box(&inputs[i])))
            })
        });
    }
}

criterion_group!(benches, bench, scoring);
criterion_main!(benches);
