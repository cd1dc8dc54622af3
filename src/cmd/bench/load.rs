//! The load generator's machinery: connections, the bounded closed- and open-loop drivers,
//! latency histograms, server-side buckets from `/metrics`, and the result table.
use super::*;

/// `u000042`: the simulator's user ids.
pub(super) fn user_id(n: usize) -> String {
    format!("u{n:06}")
}

pub(super) fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// A server-side quantile is only known to a histogram bucket: "<= 0.5 ms".
pub(super) fn bound(seconds: f64) -> String {
    if seconds.is_finite() { format!("<= {:.2} ms", seconds * 1000.0) } else { "> largest bucket".into() }
}

/// How the client tasks hold connections: one HTTP/2 connection for all, or one each.
#[derive(Clone, Copy)]
pub(super) enum Conns {
    Shared,
    PerTask,
}

impl Conns {
    pub(super) fn label(self) -> &'static str {
        match self {
            Conns::Shared => "1 connection",
            Conns::PerTask => "1 connection per task",
        }
    }
}

/// `n` channels to `addr`, connected now so that connecting is not timed.
pub(super) async fn channels(
    addr: SocketAddr,
    n: usize,
    conns: Conns,
    key: &ApiKey,
) -> anyhow::Result<Vec<KeyedChannel>> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
    let keyed = |c| touchpoint::grpc::auth::keyed(c, key.clone());
    match conns {
        Conns::Shared => {
            let channel = keyed(endpoint.connect().await?);
            Ok(vec![channel; n])
        }
        Conns::PerTask => {
            let mut all = Vec::with_capacity(n);
            for _ in 0..n {
                all.push(keyed(endpoint.connect().await?));
            }
            Ok(all)
        }
    }
}

/// What calls produced: `items` are units of work done (calls, events or users answered).
#[derive(Default, Clone, Copy)]
pub(super) struct Tally {
    pub(super) items: u64,
    pub(super) errors: u64,
    pub(super) duplicates: u64,
    pub(super) suppressed: u64,
    /// Suppressions by the channel's contact policy (a subset of `suppressed`).
    pub(super) contact_limited: u64,
}

impl Tally {
    pub(super) fn item(n: u64) -> Tally {
        Tally { items: n, ..Tally::default() }
    }

    pub(super) fn error() -> Tally {
        Tally { errors: 1, ..Tally::default() }
    }

    pub(super) fn add(&mut self, o: Tally) {
        self.items += o.items;
        self.errors += o.errors;
        self.duplicates += o.duplicates;
        self.suppressed += o.suppressed;
        self.contact_limited += o.contact_limited;
    }
}

pub(super) fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub(super) fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What `drive` measured.
pub(super) struct Load {
    pub(super) calls: u64,
    pub(super) tally: Tally,
    pub(super) elapsed: Duration,
    /// Call latency in µs, from the scheduled send time in an open loop.
    pub(super) latency: Histogram<u64>,
    /// Call latency in µs from the actual send. In an open loop it leaves out how late the
    /// client's timer fired (tokio timers have millisecond resolution) and any queueing on
    /// the client side; in a closed loop it equals `latency`.
    pub(super) from_send: Histogram<u64>,
    pub(super) open_loop: bool,
}

/// Runs one task per client for `run_for` (plus at most `call_timeout` for the calls in
/// flight at the end): back to back (closed loop) or, with `period`, one
/// call per period per task (open loop, latency from the scheduled send time). `call` gets a
/// client and gives it back with the tally of the call.
pub(super) async fn drive<T, F, Fut>(
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
pub(super) struct Phase {
    pub(super) name: String,
    pub(super) unit: &'static str,
    pub(super) load: Load,
    /// The server's own latency buckets for the phase: (upper bound in s, calls), cumulative.
    pub(super) server: Vec<(f64, u64)>,
    /// CPU this process used during the phase (client tasks and servers together), in µs.
    pub(super) cpu_us: f64,
    /// CPU the redis-server used during the phase, in µs (INFO cpu); None on the memory store.
    pub(super) redis_us: Option<f64>,
}

/// What a phase reads besides its load: the server's metrics and, on Redis, its CPU.
pub(super) struct Probe {
    pub(super) metrics: &'static metrics_exporter_prometheus::PrometheusHandle,
    pub(super) redis: Option<redis::Client>,
}

impl Probe {
    /// The redis-server's CPU so far (user + system, INFO cpu), in µs.
    async fn redis_cpu_us(&self) -> Option<f64> {
        let mut c = self.redis.as_ref()?.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut c).await.ok()?;
        let field =
            |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<f64>().ok());
        Some((field("used_cpu_user")? + field("used_cpu_sys")?) * 1e6)
    }
}

/// CPU this process has used so far (user + system), in µs.
fn process_cpu_us() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given and reads nothing else.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(u.ru_utime) + us(u.ru_stime)
}

impl Phase {
    pub(super) fn throughput(&self) -> f64 {
        self.load.tally.items as f64 / self.load.elapsed.as_secs_f64().max(1e-9)
    }

    pub(super) fn ms(&self, q: f64) -> f64 {
        ms(&self.load.latency, q)
    }

    /// The upper bound (s) of the server histogram bucket holding quantile `q`.
    pub(super) fn server_quantile(&self, q: f64) -> Option<f64> {
        let total = self.server.last()?.1;
        if total == 0 {
            return None;
        }
        self.server.iter().find(|(_, n)| *n as f64 >= q * total as f64).map(|(le, _)| *le)
    }

    pub(super) fn tally(&self) -> Tally {
        self.load.tally
    }
}

/// Runs a phase and takes the server's histogram of `rpc` before and after it, so the row
/// shows the server-side latency of this phase alone.
pub(super) async fn phase(
    name: String,
    unit: &'static str,
    rpc: Option<&str>,
    probe: &Probe,
    load: impl Future<Output = anyhow::Result<Load>>,
) -> anyhow::Result<Phase> {
    let metrics = probe.metrics;
    let before = rpc.map(|r| server_buckets(&metrics.render(), r)).unwrap_or_default();
    let (cpu0, redis0) = (process_cpu_us(), probe.redis_cpu_us().await);
    let load = load.await?;
    let (cpu1, redis1) = (process_cpu_us(), probe.redis_cpu_us().await);
    let after = rpc.map(|r| server_buckets(&metrics.render(), r)).unwrap_or_default();
    let server = after
        .iter()
        .map(|(le, n)| {
            let earlier = before.iter().find(|(l, _)| l == le).map_or(0, |(_, m)| *m);
            (*le, n.saturating_sub(earlier))
        })
        .collect();
    eprintln!("  done: {name}");
    let redis_us = redis0.zip(redis1).map(|(a, b)| b - a);
    Ok(Phase { name, unit, load, server, cpu_us: cpu1 - cpu0, redis_us })
}

/// Cumulative bucket counts of the server's latency histogram for `rpc`, in rendered (ascending)
/// order, from the Prometheus text format:
/// `touchpoint_grpc_request_duration_seconds_bucket{rpc="Decide",le="0.001"} 42`.
pub(super) fn server_buckets(text: &str, rpc: &str) -> Vec<(f64, u64)> {
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

pub(super) fn print_table(phases: &[Phase]) {
    println!(
        "\n{:<42} {:>9} {:>18} {:>8} {:>8} {:>9} {:>7} {:>14} {:>9} {:>9}",
        "phase", "calls", "throughput", "p50 ms", "p99 ms", "p99.9 ms", "errors", "server p99", "cpu us", "redis us"
    );
    for p in phases {
        let server = match p.server_quantile(0.99) {
            Some(s) if s.is_finite() => format!("<= {:.2} ms", s * 1000.0),
            Some(_) => "> 1 s".into(),
            None => "-".into(),
        };
        let items = p.load.tally.items.max(1) as f64;
        let redis = p.redis_us.map_or("-".to_string(), |us| format!("{:.1}", us / items));
        println!(
            "{:<42} {:>9} {:>18} {:>8.3} {:>8.3} {:>9.3} {:>7} {:>14} {:>9.1} {:>9}",
            p.name,
            p.load.calls,
            format!("{:.0} {}/s", p.throughput(), p.unit),
            p.ms(0.5),
            p.ms(0.99),
            p.ms(0.999),
            p.tally().errors,
            server,
            p.cpu_us / items,
            redis
        );
        if p.load.open_loop {
            let h = &p.load.from_send;
            let name = "  same calls, from actual send";
            println!("{name:<42} {:>9} {:>18} {:>8.3} {:>8.3} {:>9.3}", "", "", ms(h, 0.5), ms(h, 0.99), ms(h, 0.999));
        }
    }
    println!(
        "(client latency per call, from the send or, open loop, from the scheduled send; errors: failed calls, \
         timeouts and degraded answers; server p99: upper bound of the server histogram's bucket; cpu us: this \
         process's CPU (load generator and servers together) per call, event or user; redis us: the \
         redis-server's per call, event or user)"
    );
}
