//! The in-process decision: segment rules, eligibility rules, two logistic models and
//! arbitration over 50 offers of one stage (the benchmark), plus variants with a CEL
//! priority expression and with exploration. Run: `cargo bench --bench decision`.
use criterion::{Criterion, criterion_group, criterion_main};

// The server binary's allocator, so the bench measures what the server runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::hint::black_box;
use touchpoint::config::Config;
use touchpoint::domain::MS_PER_DAY;
use touchpoint::domain::contact::ContactState;
use touchpoint::domain::decision::{DecisionInputs, DecisionQuery, decide};
use touchpoint::domain::event::Event;
use touchpoint::domain::profile::{AttrValue, UserState};

fn model(dir: &std::path::Path, name: &str) -> String {
    let names = touchpoint::domain::features::FEATURE_NAMES;
    let a = serde_json::json!({
        "name": name, "version": "bench", "kind": "logistic_regression",
        "feature_names": names,
        "scaling": { "mean": vec![0.5; names.len()], "std": vec![1.5; names.len()] },
        "intercept": -1.0,
        "coefficients": (0..names.len()).map(|i| (i as f64 - 7.0) / 10.0).collect::<Vec<_>>()
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, a.to_string()).unwrap();
    path.display().to_string()
}

fn config(dir: &std::path::Path, extra: &str) -> Config {
    let mut src =
        format!("[models]\nchurn = \"{}\"\npurchase = \"{}\"\n{extra}\n", model(dir, "churn"), model(dir, "purchase"));
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
    ];
    for (name, extra) in variants {
        let cfg = config(dir.path(), extra);
        let policy = cfg.policy.clone();
        let probe = decide(
            &policy,
            &DecisionInputs { query: &query, state: &state, contacts: &contacts, now: 10 * MS_PER_DAY, seed: 1 },
        );
        assert_eq!(probe.candidates.len(), 50);
        assert_eq!(probe.chosen.len(), 3);
        c.bench_function(name, |b| {
            let mut seed = 0u64;
            b.iter(|| {
                seed += 1;
                let input =
                    DecisionInputs { query: &query, state: &state, contacts: &contacts, now: 10 * MS_PER_DAY, seed };
                black_box(decide(black_box(&policy), &input))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
