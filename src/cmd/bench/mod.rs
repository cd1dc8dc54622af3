//! `touchpoint bench`: a load generator that runs `Decide` end to end next to a bare tonic server
//! (health check only) under the same client, in one process, so the throughput ratios
//! the product targets (README, Performance) can be read off one run on one machine.
//!
//! Everything goes to 127.0.0.1; every phase is bounded in time (`--seconds`) and every call by
//! a timeout. Client and servers share the process and the machine's cores: the numbers compare
//! the servers with each other, they are not what a dedicated server machine would do.
use anyhow::{Context, bail};
use futures::StreamExt;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::Endpoint;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use touchpoint::config::Config;
use touchpoint::engine::{Engine, now_ms};
use touchpoint::grpc::auth::{ApiKey, KeyedChannel};
use touchpoint::grpc::pb::{self, decisions_client::DecisionsClient};
use touchpoint::sim::{SimConfig, simulate};

mod counters;
mod flood;
mod load;
use load::*;

#[derive(clap::Args)]
pub struct Args {
    /// Store: memory:// (embedded) or a redis:// URL (keys under the prefix `tpbench`).
    #[arg(long, default_value = "memory://")]
    redis_url: String,
    /// Simulated users to seed; calls pick among them at random.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Calls in flight (one client task each).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Length of each phase in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Calls/s of the open-loop Decide phase; default: half of the measured closed-loop peak.
    #[arg(long)]
    rate: Option<f64>,
    /// Instead of the throughput phases: Decide at idle, then under a flood of
    /// `--flood-calls` calls in flight, with production limits (admitted, degraded and shed
    /// calls measured apart).
    #[arg(long)]
    flood: bool,
    /// Calls in flight during the flood.
    #[arg(long, default_value_t = 1000)]
    flood_calls: usize,
    /// With `--flood`: cap the h2load flood from another process at this many calls/s in all
    /// (h2load's `--rps`, split over its connections; about twice what this 2-core machine
    /// serves); 0: as fast as answers come back.
    #[arg(long, default_value_t = 10_000)]
    flood_rate: u32,
    /// With `--flood`: alternating rounds of idle and h2load-flood phases (the ratio reported
    /// is the median of the rounds).
    #[arg(long, default_value_t = 3)]
    flood_rounds: usize,
    /// Instead of the throughput phases: what the funnel and offer counters cost Redis (CPU
    /// per event, decision and outcome from INFO commandstats; memory per offer row and day).
    #[arg(long)]
    counters: bool,
}

const EXAMPLE: &str = include_str!("../../../examples/touchpoint.toml");
/// A call slower than this is abandoned and counted as an error, so a stuck server cannot
/// stretch a phase beyond `--seconds` by more than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The same for a whole DecideBatch stream of `USERS_PER_BATCH` users (at least ~35 users/s).
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// DecideBatch streams in flight at most: the engine bounds batch decisions in flight across
/// all streams (`server.limits.batch_decisions`), so more streams only queue (and 32 streams of 1000 users behind a slow store
/// would make every stream's latency, and the phase's tail, many seconds long).
const BATCH_STREAMS: usize = 4;
const SIM_DAYS: u32 = 90;
const SIM_SEED: u64 = 42;
const EVENTS_PER_CALL: usize = 100;
const USERS_PER_BATCH: usize = 1000;
/// The server-side latency histogram (see `grpc::layer`).
const SERVER_HISTOGRAM: &str = "touchpoint_grpc_request_duration_seconds_bucket{";

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.users == 0 || args.users > 1_000_000 {
        bail!("--users must be 1..=1000000");
    }
    if args.concurrency == 0 || args.concurrency > 4096 {
        bail!("--concurrency must be 1..=4096");
    }
    if args.seconds == 0 || args.seconds > 300 {
        bail!("--seconds must be 1..=300");
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number");
    }
    if args.flood {
        if args.flood_calls == 0 || args.flood_calls > 20_000 {
            bail!("--flood-calls must be 1..=20000");
        }
        return flood::run(&args.redis_url, args.flood_calls, args.flood_rate, args.flood_rounds.max(1), args.seconds)
            .await;
    }
    let phase_len = Duration::from_secs(args.seconds);
    let c = args.concurrency;

    // The example config with a generous decision deadline: under overload a Decide must wait
    // for the store rather than answer from the fallbacks, or the benchmark would measure the
    // fallback path. The deadline is not overridable from variables, hence the text edit.
    let toml = EXAMPLE.replace("deadline_ms = 50", "deadline_ms = 1000");
    if toml == EXAMPLE {
        bail!("examples/touchpoint.toml no longer contains `deadline_ms = 50`; update bench.rs");
    }
    // The process environment is left out on purpose: the flags describe the whole run.
    let mut vars = vec![
        ("TOUCHPOINT_REDIS_URL".to_string(), args.redis_url.clone()),
        ("TOUCHPOINT_REDIS_KEY_PREFIX".to_string(), "tpbench".to_string()),
    ];
    // Authentication on, as served: a key minted for this run, sent with every call (to the
    // bare health server too, so both sides carry the same header).
    let (api_key, entry) = super::keys::mint_all();
    let key = ApiKey::new(Some(&api_key)).map_err(anyhow::Error::msg)?;
    let toml = format!("{toml}\n{entry}");
    // This measures throughput, not shedding: the server admits the calls the load keeps in
    // flight. The server limits may still be set from the environment to compare them
    // (TOUCHPOINT_SERVER_LIMITS_*).
    vars.push(("TOUCHPOINT_SERVER_LIMITS_INTERACTIVE".to_string(), args.concurrency.max(8).to_string()));
    vars.extend(std::env::vars().filter(|(k, _)| k.starts_with("TOUCHPOINT_SERVER_LIMITS_")));
    if args.counters {
        return counters::run(&args.redis_url, args.users.min(5_000), &toml, vars).await;
    }
    let config = Config::from_toml(&toml, "examples/touchpoint.toml", vars)?;
    let store = touchpoint::store::open(&config.file.redis).await.context("opening the store")?;
    let engine = Arc::new(Engine::new(store, config, None, vec![]));
    // Install the metrics recorder a served process has, so the server does the same
    // per-call accounting as in production and we can read its own latency histogram.
    let probe = Probe {
        metrics: touchpoint::telemetry::prometheus(),
        redis: args.redis_url.starts_with("redis").then(|| redis::Client::open(args.redis_url.as_str())).transpose()?,
    };

    let t = std::time::Instant::now();
    let sim = simulate(&SimConfig { users: args.users, days: SIM_DAYS, seed: SIM_SEED, end: now_ms() });
    for u in &sim.users {
        engine.put_profile(&u.user_id, u.attributes.clone(), vec![]).await?;
    }
    for chunk in sim.events.chunks(1000) {
        engine.record_events(chunk.to_vec()).await?;
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "store {}: seeded {} users and {} events in {:.2?}; {c} calls in flight, {} s per phase, {cpus} CPUs \
         shared by client and servers",
        args.redis_url,
        sim.users.len(),
        sim.events.len(),
        t.elapsed(),
        args.seconds
    );
    let users = sim.users.len();
    drop(sim);

    // Both servers, each on its own ephemeral port, stopped together at the end.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let stopped = |mut rx: tokio::sync::watch::Receiver<()>| async move {
        let _ = rx.changed().await;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let tp_addr = listener.local_addr()?;
    let tp_server = tokio::spawn(touchpoint::grpc::serve(listener, engine.clone(), stopped(stop_rx.clone())));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = listener.local_addr()?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("bench.Echo", tonic_health::ServingStatus::Serving).await;
    // Same socket treatment as `grpc::serve` (Nagle off), so only the handler differs.
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok::<_, std::io::Error>(conn)
    });
    let echo_server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health_service)
            .serve_with_incoming_shutdown(incoming, stopped(stop_rx)),
    );
    println!("touchpoint on {tp_addr}, bare tonic health server on {echo_addr}\n");

    let mut phases = Vec::new();

    // (a) The baseline, over both ways of holding connections; the faster one is used for
    // every other phase so that Decide gets the same client setup as the baseline.
    let echo_call = |mut client: HealthClient<KeyedChannel>, _: &mut ChaCha8Rng| async move {
        let req = HealthCheckRequest { service: "bench.Echo".into() };
        let tally = match client.check(req).await {
            Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => Tally::item(1),
            _ => Tally::error(),
        };
        (client, tally)
    };
    let mut best: Option<(Conns, f64)> = None;
    for conns in [Conns::Shared, Conns::PerTask] {
        let clients = channels(echo_addr, c, conns, &key).await?.into_iter().map(HealthClient::new).collect();
        let p = phase(format!("echo Health/Check, {}", conns.label()), "calls", None, &probe, async {
            drive(clients, phase_len, CALL_TIMEOUT, None, echo_call).await
        })
        .await?;
        if best.is_none_or(|(_, t)| p.throughput() > t) {
            best = Some((conns, p.throughput()));
        }
        phases.push(p);
    }
    let (conns, echo_peak) = best.context("no echo phase ran")?;

    // (b) Decide, closed loop: the peak.
    let decide_call = move |mut client: DecisionsClient<KeyedChannel>, rng: &mut ChaCha8Rng| {
        let req = pb::DecideRequest {
            user_id: user_id(rng.gen_range(0..users)),
            channel: "web".into(),
            limit: 3,
            ..Default::default()
        };
        async move {
            // A degraded answer is a fallback, not a decision: it counts as an error here.
            let tally = match client.decide(req).await {
                Ok(r) if !r.get_ref().degraded => Tally::item(1),
                _ => Tally::error(),
            };
            (client, tally)
        }
    };
    let decide_clients = || async {
        anyhow::Ok(channels(tp_addr, c, conns, &key).await?.into_iter().map(DecisionsClient::new).collect::<Vec<_>>())
    };
    let clients = decide_clients().await?;
    let p = phase(format!("Decide web, {}", conns.label()), "calls", Some("Decide"), &probe, async {
        drive(clients, phase_len, CALL_TIMEOUT, None, decide_call).await
    })
    .await?;
    let decide_peak = p.throughput();
    phases.push(p);

    // (c) Decide, open loop at half the peak: calls leave on a fixed schedule whether or not
    // earlier ones returned, and latency counts from the scheduled time, so a stall shows up
    // in the percentiles instead of silently lowering the rate (coordinated omission).
    let rate = args.rate.unwrap_or(decide_peak / 2.0).max(1.0);
    let period = Duration::from_secs_f64(c as f64 / rate);
    let clients = decide_clients().await?;
    let half = phase(format!("Decide web, open loop {rate:.0}/s"), "calls", Some("Decide"), &probe, async {
        drive(clients, phase_len, CALL_TIMEOUT, Some(period), decide_call).await
    })
    .await?;

    // (d) RecordEvents: fresh event ids every call, so every event is applied, not deduplicated.
    let nonce = now_ms();
    let events_call = move |mut client: DecisionsClient<KeyedChannel>, rng: &mut ChaCha8Rng| {
        let events: Vec<pb::Event> = (0..EVENTS_PER_CALL)
            .map(|_| pb::Event {
                event_id: format!("bench-{nonce}-{:016x}", rng.r#gen::<u64>()),
                user_id: user_id(rng.gen_range(0..users)),
                event_type: "page_view".into(),
                channel: "web".into(),
                ..Default::default()
            })
            .collect();
        async move {
            let tally = match client.record_events(pb::RecordEventsRequest { events }).await {
                Ok(r) => {
                    let r = r.into_inner();
                    Tally { items: r.accepted.into(), duplicates: r.duplicates.into(), ..Tally::default() }
                }
                Err(_) => Tally::error(),
            };
            (client, tally)
        }
    };
    let clients = decide_clients().await?;
    let events_phase =
        phase(format!("RecordEvents x{EVENTS_PER_CALL} page_view"), "events", Some("RecordEvents"), &probe, async {
            drive(clients, phase_len, CALL_TIMEOUT, None, events_call).await
        })
        .await?;

    // (e) DecideBatch: a campaign send of consecutive users, drained to the end of the stream.
    let batch_call = move |mut client: DecisionsClient<KeyedChannel>, rng: &mut ChaCha8Rng| {
        let first = rng.gen_range(0..users);
        let req = pb::DecideBatchRequest {
            user_ids: (0..USERS_PER_BATCH).map(|k| user_id((first + k) % users)).collect(),
            channel: "email".into(),
            limit: 1,
            ..Default::default()
        };
        async move {
            let mut tally = Tally::default();
            match client.decide_batch(req).await {
                Err(_) => tally.errors += 1,
                Ok(r) => {
                    let mut stream = r.into_inner();
                    // Bounded: the server sends at most one item per requested user.
                    loop {
                        match stream.message().await {
                            Ok(Some(item)) => {
                                if item.decision.as_ref().is_some_and(|d| d.degraded) {
                                    tally.errors += 1;
                                } else {
                                    tally.items += 1;
                                    tally.suppressed += u64::from(!item.suppression_reason.is_empty());
                                    tally.contact_limited +=
                                        u64::from(item.suppression_reason.starts_with("contact limit"));
                                }
                            }
                            Ok(None) => break,
                            Err(_) => {
                                tally.errors += 1;
                                break;
                            }
                        }
                    }
                }
            }
            (client, tally)
        }
    };
    let mut clients = decide_clients().await?;
    clients.truncate(BATCH_STREAMS);
    // No server-side view here: the phase is about users/s (the server times a DecideBatch to
    // the end of its stream, see `grpc::layer`).
    let batch_phase = phase(
        format!("DecideBatch x{USERS_PER_BATCH} email, {} streams", c.min(BATCH_STREAMS)),
        "users",
        None,
        &probe,
        async { drive(clients, phase_len, BATCH_TIMEOUT, None, batch_call).await },
    )
    .await?;

    let _ = stop_tx.send(());
    for (name, server) in [("touchpoint", tp_server), ("echo", echo_server)] {
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("{name} server failed: {e}"),
            Ok(Err(e)) => eprintln!("{name} server task failed: {e}"),
            Err(_) => eprintln!("{name} server did not stop within 5 s"),
        }
    }

    let (half_p99, half_send_p99, half_server_p99) =
        (half.ms(0.99), ms(&half.load.from_send, 0.99), half.server_quantile(0.99));
    let (events_rate, batch_rate, batch) = (events_phase.throughput(), batch_phase.throughput(), batch_phase.tally());
    let duplicates = events_phase.tally().duplicates;
    phases.extend([half, events_phase, batch_phase]);
    print_table(&phases);

    println!();
    println!(
        "Decide / echo throughput: {decide_peak:.0} / {echo_peak:.0} = {:.2} (target >= 0.6)",
        decide_peak / echo_peak
    );
    let server = match half_server_p99 {
        Some(s) => format!("{}: {}", bound(s), verdict(s <= 0.001)),
        None => "no data".into(),
    };
    println!(
        "Decide p99 at {rate:.0}/s (half load), target <= 1 ms: server {server}; client from scheduled send \
         {half_p99:.3} ms: {}, from actual send {half_send_p99:.3} ms: {}",
        verdict(half_p99 <= 1.0),
        verdict(half_send_p99 <= 1.0),
    );
    println!("RecordEvents: {events_rate:.0} events/s (target >= 20000), {duplicates} reported as duplicates");
    println!(
        "DecideBatch: {batch_rate:.0} users/s (target >= 20000); of {} answers {} were suppressions, {} of them by \
         the email contact policy",
        batch.items, batch.suppressed, batch.contact_limited
    );
    Ok(())
}
