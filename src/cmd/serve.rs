//! Running the server: listeners, signals (SIGTERM/ctrl-c drain, SIGHUP reload), metrics.
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use touchpoint::config::ServerConfig;
use touchpoint::engine::Engine;

/// Serves until SIGTERM or ctrl-c (or `stop`, when given), then drains in-flight calls for up
/// to `shutdown_grace_ms`. `ready` learns the bound gRPC address.
pub async fn run(
    engine: Arc<Engine>,
    server: &ServerConfig,
    ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&server.listen).await.with_context(|| format!("binding {}", server.listen))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if !server.metrics_listen.is_empty() {
        let ml = TcpListener::bind(&server.metrics_listen)
            .await
            .with_context(|| format!("binding {}", server.metrics_listen))?;
        let routes = if server.http_api_enabled() {
            tracing::info!(addr = %ml.local_addr()?, "metrics at /metrics, the console at /console, JSON at /v1/<method>");
            touchpoint::console::http_routes(engine.clone())
        } else {
            tracing::info!(addr = %ml.local_addr()?, "metrics at /metrics (server.http_api is off: no console or JSON API)");
            axum::Router::new()
        };
        tokio::spawn(touchpoint::telemetry::serve_http(ml, routes, stopped(stop_rx.clone())));
    } else {
        touchpoint::telemetry::prometheus();
    }
    tokio::spawn(signals(engine.clone(), stop_tx));
    let _watcher = engine.spawn_model_watcher();
    let _kpis = engine.spawn_kpi_refresher();
    let _posteriors = engine.spawn_posterior_refresher();
    tracing::info!(%addr, store = engine.store().kind(), config_version = %engine.snapshot().config.version, "touchpoint serving");
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }
    let grace = Duration::from_millis(server.shutdown_grace_ms);
    let mut rx = stop_rx.clone();
    let serve = touchpoint::grpc::serve(listener, engine, stopped(stop_rx));
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => r?,
        _ = async { let _ = rx.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "in-flight calls did not finish within the grace period");
        }
    }
    tracing::info!("touchpoint stopped");
    Ok(())
}

async fn signals(engine: Arc<Engine>, stop: watch::Sender<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    if let Err(e) = engine.reload_now().await {
                        tracing::error!(error = %e, "reload rejected, keeping the old config");
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = &engine;
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: draining in-flight calls");
    let _ = stop.send(true);
}
