//! The model registry: follow the published `current` versions and swap them in.
use super::{Engine, Error, Snapshot};
use crate::config::Config;
use crate::domain::model::{BoundModel, ModelArtifact};
use std::sync::Arc;
use std::time::Duration;

impl Engine {
    /// Follows the model registry: for each model named in `models.registry` whose `current`
    /// pointer names another version than the one in use, loads that artifact and swaps in a
    /// snapshot with it. Returns the names switched. A bad artifact is logged and skipped.
    pub async fn refresh_models(&self) -> Result<Vec<String>, Error> {
        let snap = self.snapshot();
        let mut updates = Vec::new();
        for name in &snap.config.file.models.registry {
            let Some(version) = self.store.current_model(name).await? else { continue };
            if snap.config.policy.models.get(name).is_some_and(|m| m.version() == version) {
                continue;
            }
            let Some(json) = self.store.get_model(name, &version).await? else {
                tracing::error!(model = %name, %version, "registry points at a version it does not hold");
                continue;
            };
            let names = crate::domain::features::all_names(&snap.config.policy.features);
            let bound = serde_json::from_str::<ModelArtifact>(&json)
                .map_err(|e| e.to_string())
                .and_then(|a| BoundModel::bind_with(a, &names));
            match bound {
                Ok(m) => updates.push((name.clone(), Arc::new(m))),
                Err(e) => tracing::error!(model = %name, %version, error = %e, "cannot use the published model"),
            }
        }
        if updates.is_empty() {
            return Ok(vec![]);
        }
        let mut applied = false;
        self.snapshot.rcu(|old| {
            // A reload that changed the configured features while the registry was read:
            // these models were bound against the old names; the next poll binds them anew.
            applied = old.config.policy.features == snap.config.policy.features;
            if !applied {
                return Snapshot { config: old.config.clone(), loaded_at: old.loaded_at };
            }
            let mut policy = (*old.config.policy).clone();
            for (name, model) in &updates {
                policy.models.set(name, model.clone());
            }
            let config = Config { policy: Arc::new(policy), ..old.config.clone() };
            Snapshot { config, loaded_at: old.loaded_at }
        });
        if !applied {
            return Ok(vec![]);
        }
        let names: Vec<String> = updates
            .into_iter()
            .map(|(n, m)| {
                tracing::info!(model = %n, version = %m.version(), "switched to the published model");
                n
            })
            .collect();
        Ok(names)
    }

    /// Checks the registry every `models.poll_seconds` until the engine is dropped.
    pub fn spawn_model_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(engine) = weak.upgrade() else { return };
                if !engine.snapshot().config.file.models.registry.is_empty()
                    && let Err(e) = engine.refresh_models().await
                {
                    tracing::warn!(error = %e, "model registry check failed");
                }
                let period = Duration::from_secs_f64(engine.snapshot().config.file.models.poll_seconds);
                drop(engine);
                tokio::time::sleep(period).await;
            }
        })
    }
}
