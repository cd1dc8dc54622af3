//! `touchpoint bench`: a load generator that runs `Decide` end to end next to a bare tonic server
//! (health check only) under the same client, in one process, so the ratios of DESIGN.md
//! "Targets" can be read off one run on one machine.
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
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use touchpoint::config::Config;
use touchpoint::engine::{Engine, now_ms};
use touchpoint::grpc::pb::{self, decisions_client::DecisionsClient};
use touchpoint::sim::{SimConfig, simulate};

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
}

const EXAMPLE: &str = include_str!("../../examples/touchpoint.toml");
/// A call slower than this is abandoned and counted as an error, so a stuck server cannot
/// stretch a phase beyond `--seconds` by more than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The same for a whole DecideBatch stream of `USERS_PER_BATCH` users (at least ~35 users/s).
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// DecideBatch streams in flight at most: the engine already works on 256 users of each stream
/// at once, so more streams only queue (and 32 streams of 1000 users behind a slow store
/// would make every stream's latency, and the phase's tail, many seconds long).
const BATCH_STREAMS: usize = 4;
const SIM_DAYS: u32 = 90;
const SIM_SEED: u64 = 42;
const EVENTS_PER_CALL: usize = 100;
const USERS_PER_BATCH: usize = 1000;
/// The server-side latency histogram (see `grpc::observed`).
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
    let vars = vec![
        ("TOUCHPOINT_REDIS_URL".to_string(), args.redis_url.clone()),
        ("TOUCHPOINT_REDIS_KEY_PREFIX".to_string(), "tpbench".to_string()),
    ];
    let config = Config::from_toml(&toml, "examples/touchpoint.toml", vars)?;
    let store = touchpoint::store::open(&config.file.redis).await.context("opening the store")?;
    let engine = Arc::new(Engine::new(store, config, None, vec![]));
    // Install the metrics recorder a served process has, so the server does the same
    // per-call accounting as in production and we can read its own latency histogram.
    let metrics = touchpoint::telemetry::prometheus();

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
    let echo_call = |mut client: HealthClient<Channel>, _: &mut ChaCha8Rng| async move {
        let req = HealthCheckRequest { service: "bench.Echo".into() };
        let tally = match client.check(req).await {
            Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => Tally::item(1),
            _ => Tally::error(),
        };
        (client, tally)
    };
    let mut best: Option<(Conns, f64)> = None;
    for conns in [Conns::Shared, Conns::PerTask] {
        let clients = channels(echo_addr, c, conns).await?.into_iter().map(HealthClient::new).collect();
        let p = phase(format!("echo Health/Check, {}", conns.label()), "calls", None, metrics, async {
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
    let decide_call = move |mut client: DecisionsClient<Channel>, rng: &mut ChaCha8Rng| {
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
        anyhow::Ok(channels(tp_addr, c, conns).await?.into_iter().map(DecisionsClient::new).collect::<Vec<_>>())
    };
    let clients = decide_clients().await?;
    let p = phase(format!("Decide web, {}", conns.label()), "calls", Some("Decide"), metrics, async {
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
    let half = phase(format!("Decide web, open loop {rate:.0}/s"), "calls", Some("Decide"), metrics, async {
        drive(clients, phase_len, CALL_TIMEOUT, Some(period), decide_call).await
    })
    .await?;

    // (d) RecordEvents: fresh event ids every call, so every event is applied, not deduplicated.
    let nonce = now_ms();
    let events_call = move |mut client: DecisionsClient<Channel>, rng: &mut ChaCha8Rng| {
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
        phase(format!("RecordEvents x{EVENTS_PER_CALL} page_view"), "events", Some("RecordEvents"), metrics, async {
            drive(clients, phase_len, CALL_TIMEOUT, None, events_call).await
        })
        .await?;

    // (e) DecideBatch: a campaign send of consecutive users, drained to the end of the stream.
    let batch_call = move |mut client: DecisionsClient<Channel>, rng: &mut ChaCha8Rng| {
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
    // No server-side view here: the server's timer for DecideBatch stops when the stream is
    // handed over, before any decision is made.
    let batch_phase = phase(
        format!("DecideBatch x{USERS_PER_BATCH} email, {} streams", c.min(BATCH_STREAMS)),
        "users",
        None,
        metrics,
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

/// `u000042`: the simulator's user ids.
fn user_id(n: usize) -> String {
    format!("u{n:06}")
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// A server-side quantile is only known to a histogram bucket: "<= 0.5 ms".
fn bound(seconds: f64) -> String {
    if seconds.is_finite() { format!("<= {:.2} ms", seconds * 1000.0) } else { "> largest bucket".into() }
}

/// How the client tasks hold connections: one HTTP/2 connection for all, or one each.
#[derive(Clone, Copy)]
enum Conns {
    Shared,
    PerTask,
}

impl Conns {
    fn label(self) -> &'static str {
        match self {
            Conns::Shared => "1 connection",
            Conns::PerTask => "1 connection per task",
        }
    }
}

/// `n` channels to `addr`, connected now so that connecting is not timed.
async fn channels(addr: SocketAddr, n: usize, conns: Conns) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
    match conns {
        Conns::Shared => {
            let channel = endpoint.connect().await?;
            Ok(vec![channel; n])
        }
        Conns::PerTask => {
            let mut all = Vec::with_capacity(n);
            for _ in 0..n {
                all.push(endpoint.connect().await?);
            }
            Ok(all)
        }
    }
}

/// What calls produced: `items` are units of work done (calls, events or users answered).
#[derive(Default, Clone, Copy)]
struct Tally {
    items: u64,
    errors: u64,
    duplicates: u64,
    suppressed: u64,
    /// Suppressions by the channel's contact policy (a subset of `suppressed`).
    contact_limited: u64,
}

impl Tally {
    fn item(n: u64) -> Tally {
        Tally { items: n, ..Tally::default() }
    }

    fn error() -> Tally {
        Tally { errors: 1, ..Tally::default() }
    }

    fn add(&mut self, o: Tally) {
        self.items += o.items;
        self.errors += o.errors;
        self.duplicates += o.duplicates;
        self.suppressed += o.suppressed;
        self.contact_limited += o.contact_limited;
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What `drive` measured.
struct Load {
    calls: u64,
    tally: Tally,
    elapsed: Duration,
    /// Call latency in µs, from the scheduled send time in an open loop.
    latency: Histogram<u64>,
    /// Call latency in µs from the actual send. In an open loop it leaves out how late the
    /// client's timer fired (tokio timers have millisecond resolution) and any queueing on
    /// the client side; in a closed loop it equals `latency`.
    from_send: Histogram<u64>,
    open_loop: bool,
}

/// Runs one task per client for `run_for` (plus at most `call_timeout` for the calls in
/// flight at the end): back to back (closed loop) or, with `period`, one
/// call per period per task (open loop, latency from the scheduled send time). `call` gets a
/// client and gives it back with the tally of the call.
async fn drive<T, F, Fut>(
    clients: Vec<T>,
    run_for: Duration,
    call_timeout: Duration,
    period: Option<Duration>,
    call: F,
) -> anyhow::Result<Load>
where
    T: Clone + Send + 'static,
    F: Fn(T, &mut ChaCha8Rng) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (T, Tally)> + Send,
{
    let start = Instant::now();
    let deadline = start + run_for;
    let n = clients.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, spare) in clients.into_iter().enumerate() {
        let call = call.clone();
        tasks.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
            let (mut latency, mut from_send) = (histogram(), histogram());
            let (mut calls, mut tally) = (0u64, Tally::default());
            // Tasks start staggered over one period so the open-loop calls are evenly spread.
            let mut ticker = period.map(|p| {
                let mut t = tokio::time::interval_at(start + p.mul_f64(i as f64 / n as f64), p);
                // A late tick fires at once: the schedule is kept, lateness is measured.
                t.set_missed_tick_behavior(MissedTickBehavior::Burst);
                t
            });
            // The client is moved into each call; a call abandoned on timeout takes it along,
            // and the spare clone replaces it.
            let mut client = Some(spare.clone());
            loop {
                let sent = match ticker.as_mut() {
                    Some(t) => match tokio::time::timeout_at(deadline, t.tick()).await {
                        Ok(at) => at,
                        Err(_) => break,
                    },
                    None => Instant::now(),
                };
                if sent >= deadline {
                    break;
                }
                let c = client.take().unwrap_or_else(|| spare.clone());
                let actual = Instant::now();
                let t = match tokio::time::timeout(call_timeout, call(c, &mut rng)).await {
                    Ok((c, t)) => {
                        client = Some(c);
                        t
                    }
                    Err(_) => Tally::error(),
                };
                latency.saturating_record(sent.elapsed().as_micros() as u64);
                from_send.saturating_record(actual.elapsed().as_micros() as u64);
                calls += 1;
                tally.add(t);
            }
            (calls, tally, latency, from_send, Instant::now())
        });
    }
    let mut load = Load {
        calls: 0,
        tally: Tally::default(),
        elapsed: Duration::ZERO,
        latency: histogram(),
        from_send: histogram(),
        open_loop: period.is_some(),
    };
    while let Some(r) = tasks.join_next().await {
        let (calls, tally, latency, from_send, done) = r.context("load task panicked")?;
        load.calls += calls;
        load.tally.add(tally);
        load.latency.add(&latency).map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
        load.from_send.add(&from_send).map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?;
        load.elapsed = load.elapsed.max(done - start);
    }
    Ok(load)
}

/// One row of the report.
struct Phase {
    name: String,
    unit: &'static str,
    load: Load,
    /// The server's own latency buckets for the phase: (upper bound in s, calls), cumulative.
    server: Vec<(f64, u64)>,
}

impl Phase {
    fn throughput(&self) -> f64 {
        self.load.tally.items as f64 / self.load.elapsed.as_secs_f64().max(1e-9)
    }

    fn ms(&self, q: f64) -> f64 {
        ms(&self.load.latency, q)
    }

    /// The upper bound (s) of the server histogram bucket holding quantile `q`.
    fn server_quantile(&self, q: f64) -> Option<f64> {
        let total = self.server.last()?.1;
        if total == 0 {
            return None;
        }
        self.server.iter().find(|(_, n)| *n as f64 >= q * total as f64).map(|(le, _)| *le)
    }

    fn tally(&self) -> Tally {
        self.load.tally
    }
}

/// Runs a phase and takes the server's histogram of `rpc` before and after it, so the row
/// shows the server-side latency of this phase alone.
async fn phase(
    name: String,
    unit: &'static str,
    rpc: Option<&str>,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
    load: impl Future<Output = anyhow::Result<Load>>,
) -> anyhow::Result<Phase> {
    let before = rpc.map(|r| server_buckets(&metrics.render(), r)).unwrap_or_default();
    let load = load.await?;
    let after = rpc.map(|r| server_buckets(&metrics.render(), r)).unwrap_or_default();
    let server = after
        .iter()
        .map(|(le, n)| {
            let earlier = before.iter().find(|(l, _)| l == le).map_or(0, |(_, m)| *m);
            (*le, n.saturating_sub(earlier))
        })
        .collect();
    eprintln!("  done: {name}");
    Ok(Phase { name, unit, load, server })
}

/// Cumulative bucket counts of the server's latency histogram for `rpc`, in rendered (ascending)
/// order, from the Prometheus text format:
/// `touchpoint_grpc_request_duration_seconds_bucket{rpc="Decide",le="0.001"} 42`.
fn server_buckets(text: &str, rpc: &str) -> Vec<(f64, u64)> {
    let want = format!("rpc=\"{rpc}\"");
    text.lines()
        .filter_map(|line| {
            let (labels, count) = line.strip_prefix(SERVER_HISTOGRAM)?.split_once("} ")?;
            if !labels.split(',').any(|l| l == want) {
                return None;
            }
            let le = labels.split(',').find_map(|l| l.strip_prefix("le=\""))?.trim_end_matches('"');
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

fn print_table(phases: &[Phase]) {
    println!(
        "\n{:<42} {:>9} {:>18} {:>8} {:>8} {:>9} {:>7} {:>14}",
        "phase", "calls", "throughput", "p50 ms", "p99 ms", "p99.9 ms", "errors", "server p99"
    );
    for p in phases {
        let server = match p.server_quantile(0.99) {
            Some(s) if s.is_finite() => format!("<= {:.2} ms", s * 1000.0),
            Some(_) => "> 1 s".into(),
            None => "-".into(),
        };
        println!(
            "{:<42} {:>9} {:>18} {:>8.3} {:>8.3} {:>9.3} {:>7} {:>14}",
            p.name,
            p.load.calls,
            format!("{:.0} {}/s", p.throughput(), p.unit),
            p.ms(0.5),
            p.ms(0.99),
            p.ms(0.999),
            p.tally().errors,
            server
        );
        if p.load.open_loop {
            let h = &p.load.from_send;
            let name = "  same calls, from actual send";
            println!("{name:<42} {:>9} {:>18} {:>8.3} {:>8.3} {:>9.3}", "", "", ms(h, 0.5), ms(h, 0.99), ms(h, 0.999));
        }
    }
    println!(
        "(client latency per call, from the send or, open loop, from the scheduled send; errors: failed calls, \
         timeouts and degraded answers; server p99: upper bound of the server histogram's bucket)"
    );
}
