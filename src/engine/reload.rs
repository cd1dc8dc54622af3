//! Reloading the configuration: one path for SIGHUP and `Admin.Reload`, run off the async
//! runtime (parsing and compiling rules is CPU work), then a registry check so published
//! models are re-applied on top of the new configuration.
use super::{Engine, Error, Snapshot, now_ms};
use crate::config::{Config, ConfigError};
use std::sync::Arc;

impl Engine {
    /// Re-reads the config file and swaps it in; in-flight requests finish on the old one.
    /// Store and listener settings take effect only at restart.
    pub fn reload(&self) -> Result<Arc<Snapshot>, ConfigError> {
        let Some(path) = &self.config_path else {
            return Ok(self.snapshot());
        };
        let config = Config::load(path, self.vars.clone())?;
        // A reload must not leave a server that nobody can call (or that silently lost its keys).
        config.check_serving()?;
        self.snapshot.store(Arc::new(Snapshot { config, loaded_at: now_ms() }));
        Ok(self.snapshot())
    }

    /// The reload both SIGHUP and `Admin.Reload` use: re-reads the config on a blocking
    /// thread, swaps it in, then re-applies the models published in the registry. A rejected
    /// config leaves the old snapshot serving and is returned as `Error::Config`.
    pub async fn reload_now(self: &Arc<Self>) -> Result<Arc<Snapshot>, Error> {
        let engine = self.clone();
        let snap = tokio::task::spawn_blocking(move || engine.reload())
            .await
            .map_err(|e| Error::Internal(format!("reload task failed: {e}")))??;
        tracing::info!(config_version = %snap.config.version, "configuration reloaded");
        if let Err(e) = self.refresh_models().await {
            tracing::warn!(error = %e, "model registry check after reload failed");
        }
        Ok(self.snapshot())
    }
}
