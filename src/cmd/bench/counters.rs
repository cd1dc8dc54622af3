//! `touchpoint bench --counters --redis-url redis://...`: what the write-time funnel and offer
//! counters (issue 13) cost Redis, measured with `INFO commandstats` (Redis's own CPU time per
//! command, scripts' inner commands included) after `CONFIG RESETSTAT`.
//!
//! - Per event: the same commits through commit.lua, alternately with and without their
//!   funnel counts (batches of users, A/B/A/B...), so the difference of the script's CPU per
//!   call is the whole extra cost, Lua included.
//! - Per decision and per outcome: the CPU of the counter commands themselves (`HINCRBY`,
//!   `HINCRBYFLOAT`, `PEXPIREAT`; no experiment is configured, so nothing else uses them).
//! - Memory: `MEMORY USAGE` of the day's counter hash per offer × stage × channel row.
use anyhow::Context;
use std::collections::BTreeMap;
use std::sync::Arc;
use touchpoint::config::Config;
use touchpoint::domain::decision::DecisionQuery;
use touchpoint::domain::funnel;
use touchpoint::domain::outcome::{OutcomeKind, OutcomeRecord};
use touchpoint::engine::{Engine, now_ms};
use touchpoint::sim::{SimConfig, simulate};
use touchpoint::store::{Attribution, UserWrite, new_version};

/// `INFO commandstats` as command -> (calls, usec).
async fn commandstats(c: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<BTreeMap<String, (f64, f64)>> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(c).await?;
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else { continue };
        let field = |k: &str| {
            rest.split(',').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse::<f64>().ok()).unwrap_or(0.0)
        };
        out.insert(name.to_string(), (field("calls"), field("usec")));
    }
    Ok(out)
}

async fn reset(c: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<()> {
    redis::cmd("CONFIG").arg("RESETSTAT").query_async::<()>(c).await?;
    Ok(())
}

/// µs of the counter commands in `stats`.
fn counter_usec(stats: &BTreeMap<String, (f64, f64)>) -> f64 {
    ["hincrby", "hincrbyfloat", "pexpireat"].iter().filter_map(|c| stats.get(*c)).map(|(_, us)| us).sum()
}

pub(super) async fn run(redis_url: &str, users: usize, toml: &str, vars: Vec<(String, String)>) -> anyhow::Result<()> {
    anyhow::ensure!(redis_url.starts_with("redis://"), "--counters needs --redis-url redis://...");
    let config = Config::from_toml(toml, "examples/touchpoint.toml", vars)?;
    let store = touchpoint::store::open(&config.file.redis).await.context("opening the store")?;
    let engine = Arc::new(Engine::new(store.clone(), config.clone(), None, vec![]));
    let mut c = redis::Client::open(redis_url)?.get_multiplexed_async_connection().await?;
    let journey = config.policy.journey.clone();
    let sim = simulate(&SimConfig { users, days: 30, seed: 7, end: now_ms() });
    let mut by_user: BTreeMap<&str, Vec<&touchpoint::domain::event::Event>> = BTreeMap::new();
    for e in &sim.events {
        by_user.entry(e.user_id.as_str()).or_default().push(e);
    }

    // Events: each user's events in one commit, with (A) or without (B) the counts, in
    // alternating batches of 50 users.
    reset(&mut c).await?;
    let (mut usec, mut calls, mut events) = ([0.0; 2], [0.0; 2], [0.0; 2]);
    for (batch, chunk) in by_user.iter().collect::<Vec<_>>().chunks(50).enumerate() {
        let side = batch % 2;
        let before = commandstats(&mut c).await?;
        for (user, evs) in chunk {
            let loaded = store.load_user(user, &[], None).await?;
            let mut state = loaded.state;
            let (transitions, mut counts) = funnel::apply_events(&journey, &mut state, evs);
            // As the engine does (engine/events.rs): the funnel per segment too.
            if counts.iter().any(|c| c.day.is_some()) {
                let segments = touchpoint::domain::decision::segments_of(&config.policy, &state, now_ms());
                counts.extend(funnel::by_segment(&counts, &segments));
            }
            let owned: Vec<_> = evs.iter().map(|e| (*e).clone()).collect();
            let write = UserWrite {
                state: &state,
                before: None,
                new_transitions: &transitions,
                events: &owned,
                now: now_ms(),
                new_version: new_version(),
                attribution: Attribution::default(),
                counts: if side == 0 { &counts } else { &[] },
            };
            anyhow::ensure!(store.commit_user(user, loaded.version, write).await?, "commit conflict for {user}");
            events[side] += evs.len() as f64;
        }
        let after = commandstats(&mut c).await?;
        let d = |k: &str, i: usize| {
            let a = after.get(k).map_or(0.0, |v| if i == 0 { v.0 } else { v.1 });
            let b = before.get(k).map_or(0.0, |v| if i == 0 { v.0 } else { v.1 });
            a - b
        };
        calls[side] += d("evalsha", 0);
        usec[side] += d("evalsha", 1);
    }
    let stats = commandstats(&mut c).await?;
    let with = usec[0] / calls[0].max(1.0);
    let without = usec[1] / calls[1].max(1.0);
    let per_event_extra = (usec[0] / events[0].max(1.0)) - (usec[1] / events[1].max(1.0));
    println!("events: {} users, {} events in commits with counts, {} without", by_user.len(), events[0], events[1]);
    println!(
        "  commit.lua: {with:.2} µs per commit with counts, {without:.2} µs without ({:.2} events per commit)",
        events[0] / calls[0].max(1.0)
    );
    println!("  extra Redis CPU per event: {per_event_extra:.2} µs (difference of script CPU per event)");
    println!(
        "  of which counter commands (HINCRBY, PEXPIREAT): {:.2} µs per event",
        counter_usec(&stats) / events[0].max(1.0)
    );

    // Decisions and outcomes.
    reset(&mut c).await?;
    let mut decided = Vec::new();
    for (i, u) in sim.users.iter().enumerate() {
        let channel = ["web", "app", "email"][i % 3];
        let q = DecisionQuery {
            user_id: u.user_id.clone(),
            channel: channel.into(),
            placement: String::new(),
            context: BTreeMap::new(),
            limit: 3,
            explain: false,
        };
        let d = engine.decide(q, None).await?;
        if d.degraded_reason.is_none() && !d.offers.is_empty() {
            decided.push(d);
        }
    }
    let stats = commandstats(&mut c).await?;
    let shown: usize = decided.iter().map(|d| d.offers.len()).sum();
    let script = stats.get("evalsha").map_or(0.0, |s| s.1 / s.0.max(1.0));
    println!(
        "decisions: {} logged, {shown} offers shown; decision.lua {script:.2} µs per call, of which counter commands {:.2} µs per decision",
        decided.len(),
        counter_usec(&stats) / (decided.len().max(1) as f64)
    );
    reset(&mut c).await?;
    let mut outcomes: f64 = 0.0;
    for d in &decided {
        for (kind, value) in
            [(OutcomeKind::Impression, 0.0), (OutcomeKind::Click, 0.0), (OutcomeKind::Conversion, 25.0)]
        {
            let o = OutcomeRecord {
                decision_id: d.record.decision_id.clone(),
                user_id: d.record.user_id.clone(),
                offer_id: d.offers[0].offer_id.clone(),
                outcome: kind,
                value,
                at: now_ms(),
            };
            engine.record_outcome(o).await?;
            outcomes += 1.0;
        }
    }
    let stats = commandstats(&mut c).await?;
    let script = stats.get("evalsha").map_or(0.0, |s| s.1 / s.0.max(1.0));
    println!(
        "outcomes: {outcomes} (impression, click, conversion with a value); outcome.lua {script:.2} µs per call, of which counter commands {:.2} µs per outcome",
        counter_usec(&stats) / outcomes.max(1.0)
    );

    // Memory of today's counter hash per offer × stage × channel row.
    let today = funnel::day_of(now_ms());
    let key = format!("{}:kd:{today}", config.file.redis.key_prefix);
    let fields: Vec<String> = redis::cmd("HKEYS").arg(&key).query_async(&mut c).await?;
    let bytes: i64 = redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0).query_async(&mut c).await?;
    let offer_fields = fields.iter().filter(|f| f.starts_with("o|")).count();
    let rows: std::collections::BTreeSet<String> = fields
        .iter()
        .filter(|f| f.starts_with("o|"))
        .filter_map(|f| f.rsplit_once('|').map(|(r, _)| r.to_string()))
        .collect();
    println!(
        "memory: today's counter hash {key}: {} fields ({offer_fields} offer fields in {} offer × stage × channel rows), {bytes} B = {:.0} B per field, {:.0} B per row (all 7 offer metrics: {:.0} B)",
        fields.len(),
        rows.len(),
        bytes as f64 / fields.len().max(1) as f64,
        bytes as f64 / fields.len().max(1) as f64 * offer_fields as f64 / rows.len().max(1) as f64,
        bytes as f64 / fields.len().max(1) as f64 * 7.0
    );
    Ok(())
}
