//! `touchpoint demo`: the embedded default. In-memory store seeded by the journey simulator,
//! the gRPC server, and a short scripted session over a real gRPC connection.
use super::client::{print_decision, print_journey};
use anyhow::Context;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use touchpoint::config::Config;
use touchpoint::domain::MS_PER_DAY;
use touchpoint::engine::{Engine, now_ms};
use touchpoint::grpc::pb::{self, decisions_client::DecisionsClient, profiles_client::ProfilesClient};
use touchpoint::sim::{SimConfig, simulate};

#[derive(clap::Args)]
pub struct Args {
    /// Exit after the scripted session instead of serving until ctrl-c.
    #[arg(long)]
    once: bool,
    /// Simulated users to seed.
    #[arg(long, default_value_t = 3000)]
    users: usize,
    /// Days of simulated history.
    #[arg(long, default_value_t = 90)]
    days: u32,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// gRPC address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: String,
    /// Metrics address; empty disables.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_listen: String,
    /// The store: the in-memory one by default; a Redis URL keeps the demo's journeys,
    /// decisions and outcomes for the trainer (export-decisions, evaluate) after it exits.
    #[arg(long, default_value = "memory://")]
    redis_url: String,
}

const EXAMPLE: &str = include_str!("../../examples/touchpoint.toml");
/// Churn and purchase models trained by `touchpoint-train` on simulated journeys (README,
/// "The demo's models"), embedded so the demo runs from any directory.
const MODELS: [(&str, &str); 2] = [
    ("churn", include_str!("../../examples/models/churn.json")),
    ("purchase", include_str!("../../examples/models/purchase.json")),
];

/// An A/B test the demo runs so the console has experiment results to show: the model-based
/// default priority (champion) against the static offer priorities (challenger). The
/// simulated responses depend on the offer (`sim::click_probability`), not on the formula.
const DEMO_EXPERIMENT: &str = r#"
[[experiments]]
id = "demo-priority-formula"
control = "champion"
attribution_days = 14

[[experiments.variants]]
name = "champion"
weight = 1

[[experiments.variants]]
name = "challenger"
weight = 1
priority = "offer.priority * offer.weight"
"#;

/// The example config plus the embedded models, written where the config can name them, and
/// `key` (an `[[auth.keys]]` entry minted for this run).
fn demo_config(vars: Vec<(String, String)>, key: &str) -> anyhow::Result<Config> {
    let dir = std::env::temp_dir().join(format!("touchpoint-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut src = EXAMPLE.to_string();
    src.push_str(DEMO_EXPERIMENT);
    src.push_str("\n[models]\n");
    for (name, json) in MODELS {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, json)?;
        src.push_str(&format!("{name} = {:?}\n", path.display().to_string()));
    }
    src.push('\n');
    src.push_str(key);
    let config = Config::from_toml(&src, "examples/touchpoint.toml", vars)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(config)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.push(("TOUCHPOINT_REDIS_URL".into(), args.redis_url.clone()));
    // The demo explores (epsilon-greedy, 0.2) unless told otherwise, so its decision log
    // carries selection probabilities below 1 and supports off-policy evaluation.
    for (var, value) in [
        ("TOUCHPOINT_DECISIONS_EXPLORATION_POLICY", "epsilon_greedy"),
        ("TOUCHPOINT_DECISIONS_EXPLORATION_EPSILON", "0.2"),
    ] {
        if std::env::var_os(var).is_none() {
            vars.push((var.into(), value.into()));
        }
    }
    vars.push(("TOUCHPOINT_SERVER_LISTEN".into(), args.listen.clone()));
    vars.push(("TOUCHPOINT_SERVER_METRICS_LISTEN".into(), args.metrics_listen.clone()));
    // A key with every role, minted for this run: the embedded server has authentication on
    // like any other, and the session below presents the key.
    let (api_key, entry) = super::keys::mint_all();
    let config = demo_config(vars, &entry)?;
    let versions = config.policy.models.versions();
    let server = config.file.server.clone();
    // The quick load keeps as many calls in flight as the server admits
    // (`server.limits.interactive`): more would be shed with RESOURCE_EXHAUSTED, not queued.
    let in_flight = server.limits.interactive as usize;
    let store = touchpoint::store::open(&config.file.redis).await?;
    let engine = Arc::new(Engine::new(store, config, None, vec![]));

    let t = Instant::now();
    let sim = simulate(&SimConfig { users: args.users, days: args.days, seed: args.seed, end: now_ms() });
    for u in &sim.users {
        engine.put_profile(&u.user_id, u.attributes.clone(), vec![]).await?;
    }
    for chunk in sim.events.chunks(1000) {
        engine.record_events(chunk.to_vec()).await?;
    }
    let mut by_stage: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for u in &sim.users {
        let p = engine.get_profile(&u.user_id).await?;
        by_stage.entry(p.stage).or_default().push(u.user_id.clone());
    }
    println!(
        "seeded {} simulated users and {} events over {} days in {:.2?} (seed {})",
        sim.users.len(),
        sim.events.len(),
        args.days,
        t.elapsed(),
        args.seed
    );
    let responses = simulate_responses(&engine, &sim.users, args.seed).await?;
    println!(
        "a campaign round: {} decisions on web, app and email; {} impressions, {} clicks, {} conversions \
         (simulated responses)",
        responses[0], responses[1], responses[2], responses[3]
    );
    println!("models: {versions:?} (churn and purchase propensity, logistic regression)");
    let stages: Vec<String> = engine.snapshot().config.policy.journey.stages().to_vec();
    for s in &stages {
        println!("  {:<14} {:>6} users", s, by_stage.get(s).map_or(0, Vec::len));
    }

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let serving = {
        let engine = engine.clone();
        tokio::spawn(async move { super::serve::run(engine, &server, Some(ready_tx)).await })
    };
    let addr = ready_rx.await.context("server did not start")?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    let channel = touchpoint::grpc::auth::keyed(
        channel,
        touchpoint::grpc::auth::ApiKey::new(Some(&api_key)).map_err(anyhow::Error::msg)?,
    );
    let mut decisions = DecisionsClient::new(channel.clone());
    let mut profiles = ProfilesClient::new(channel);
    println!("\ngRPC server on {addr}; the session below goes through a real gRPC client.");
    if !args.metrics_listen.is_empty() {
        println!(
            "Web console: http://{}/console (user: anything, password: this run's API key, printed at the end)",
            args.metrics_listen
        );
    }
    println!();

    println!("== One user per stage, channel web (explained) and email ==");
    for s in &stages {
        let Some(user) = by_stage.get(s).and_then(|u| u.first()) else {
            continue;
        };
        for (ch, explain) in [("web", true), ("email", false)] {
            let req = pb::DecideRequest {
                user_id: user.clone(),
                channel: ch.into(),
                limit: 2,
                explain,
                ..Default::default()
            };
            print_decision(&decisions.decide(req).await?.into_inner());
        }
        println!();
    }

    println!("== A new visitor walks the journey ==");
    let visitor = format!("demo-visitor-{}", now_ms());
    let steps: [&[(&str, f64)]; 3] =
        [&[("page_view", 0.0)], &[("product_view", 0.0), ("add_to_cart", 0.0)], &[("purchase", 59.9)]];
    let mut n = 0;
    for step in steps {
        let events = step
            .iter()
            .map(|(kind, value)| {
                n += 1;
                pb::Event::from(touchpoint::domain::event::Event {
                    event_id: format!("{visitor}-{n}"),
                    user_id: visitor.clone(),
                    event_type: kind.to_string(),
                    timestamp: now_ms() - MS_PER_DAY + n * 60_000,
                    channel: "web".into(),
                    offer_id: String::new(),
                    value: *value,
                    properties: Default::default(),
                })
            })
            .collect::<Vec<_>>();
        let r = decisions.record_events(pb::RecordEventsRequest { events: events.clone() }).await?.into_inner();
        let again = decisions.record_events(pb::RecordEventsRequest { events }).await?.into_inner();
        println!(
            "events {:?}: accepted {}, replayed: duplicates {}",
            step.iter().map(|s| s.0).collect::<Vec<_>>(),
            r.accepted,
            again.duplicates
        );
        let d = decisions
            .decide(pb::DecideRequest {
                user_id: visitor.clone(),
                channel: "web".into(),
                limit: 1,
                ..Default::default()
            })
            .await?
            .into_inner();
        print_decision(&d);
        if let Some(o) = d.offers.first() {
            let outcome = pb::RecordOutcomeRequest {
                decision_id: d.decision_id.clone(),
                user_id: visitor.clone(),
                offer_id: o.offer_id.clone(),
                outcome: pb::Outcome::Click as i32,
                value: 0.0,
                timestamp: None,
            };
            decisions.record_outcome(outcome).await?;
            println!("  outcome CLICK recorded for {}", o.offer_id);
        }
    }
    print_journey(&profiles.get_journey(pb::GetJourneyRequest { user_id: visitor }).await?.into_inner());

    println!("\n== Quick load: 5,000 Decide calls, {in_flight} in flight ==");
    let users: Vec<String> = sim.users.iter().map(|u| u.user_id.clone()).collect();
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..in_flight {
        let mut client = decisions.clone();
        let users = users.clone();
        tasks.spawn(async move {
            for i in (w..5000).step_by(in_flight) {
                let req = pb::DecideRequest {
                    user_id: users[i % users.len()].clone(),
                    channel: "web".into(),
                    ..Default::default()
                };
                client.decide(req).await?;
            }
            Ok::<_, tonic::Status>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let secs = t.elapsed().as_secs_f64();
    println!("5000 decisions in {secs:.2} s = {:.0} decisions/s (client and server share this machine)", 5000.0 / secs);

    if args.once {
        return Ok(());
    }
    println!(
        "\nServing on {addr} until ctrl-c. This run's API key (every role; gone when the demo stops):\n  \
         export TOUCHPOINT_API_KEY={api_key}\nTry: cargo run --release -- client decide u000001 --channel web --explain"
    );
    serving.await??;
    Ok(())
}

/// One decision per simulated user on a channel of their own (web, app or email) and simulated
/// responses to it, so the console's offer performance has something to show: an impression
/// per offer shown, a click with the simulator's true probability for that user and offer
/// (`sim::click_probability`), a conversion (value 20-80) for a quarter of the clicks.
/// Returns [decisions, impressions, clicks, conversions].
async fn simulate_responses(
    engine: &Engine,
    users: &[touchpoint::sim::SimUser],
    seed: u64,
) -> anyhow::Result<[u64; 4]> {
    use rand::{Rng, SeedableRng};
    use touchpoint::domain::decision::DecisionQuery;
    use touchpoint::domain::outcome::{OutcomeKind, OutcomeRecord};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut n = [0u64; 4];
    for (i, u) in users.iter().enumerate() {
        let channel = ["web", "app", "email"][i % 3];
        let query = DecisionQuery {
            user_id: u.user_id.clone(),
            channel: channel.into(),
            placement: String::new(),
            context: BTreeMap::new(),
            limit: 2,
            explain: false,
        };
        let d = engine.decide(query, None).await?;
        if d.degraded_reason.is_some() || d.offers.is_empty() {
            continue;
        }
        n[0] += 1;
        for o in &d.offers {
            let outcome = |kind, value| OutcomeRecord {
                decision_id: d.record.decision_id.clone(),
                user_id: u.user_id.clone(),
                offer_id: o.offer_id.clone(),
                outcome: kind,
                value,
                at: now_ms(),
            };
            engine.record_outcome(outcome(OutcomeKind::Impression, 0.0)).await?;
            n[1] += 1;
            if rng.gen_bool(touchpoint::sim::click_probability(u, &o.offer_id)) {
                engine.record_outcome(outcome(OutcomeKind::Click, 0.0)).await?;
                n[2] += 1;
                if rng.gen_bool(0.25) {
                    engine
                        .record_outcome(outcome(OutcomeKind::Conversion, rng.gen_range(20.0..80.0_f64).round()))
                        .await?;
                    n[3] += 1;
                }
            }
        }
    }
    Ok(n)
}
