//! The `[models]` section: model artifact files (read here, relative to the config file) and the
//! registry models to follow.
use super::file::ModelsConfig;
use super::{Invalid, Problems};
use crate::domain::model::{BoundModel, ModelArtifact};
use crate::domain::offer::Catalogue;
use crate::domain::policy::Models;
use std::path::Path;
use std::sync::Arc;

/// Where model files are read from, and the feature names they bind to (built-in, then
/// configured).
pub struct ModelFiles<'a> {
    /// The config file's directory.
    pub base: &'a Path,
    /// `features::all_names` of the config.
    pub names: Vec<String>,
}

/// Reads one artifact file; `entry` names the setting in problems.
pub fn read_model(entry: &str, path: &str, files: &ModelFiles) -> Result<Arc<BoundModel>, Invalid> {
    let full = files.base.join(path);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| (entry.to_string(), format!("cannot read {}: {e}", full.display())))?;
    let artifact: ModelArtifact = serde_json::from_str(&text)
        .map_err(|e| (entry.to_string(), format!("{} is not a model artifact: {e}", full.display())))?;
    BoundModel::bind_with(artifact, &files.names)
        .map(Arc::new)
        .map_err(|e| (entry.to_string(), format!("{}: {e}", full.display())))
}

/// The configured models that load; the others are problems.
pub fn load(m: &ModelsConfig, files: &ModelFiles, p: &mut Problems) -> Models {
    let mut opt = |entry: &str, path: &Option<String>| path.as_ref().and_then(|f| p.take(read_model(entry, f, files)));
    let churn = opt("models.churn", &m.churn);
    let purchase = opt("models.purchase", &m.purchase);
    let response = m
        .response
        .iter()
        .filter_map(|(offer, f)| {
            Some((offer.clone(), p.take(read_model(&format!("models.response.{offer}"), f, files))?))
        })
        .collect();
    Models { churn, purchase, response }
}

/// Checks the registry names, the poll interval and that response models name offers.
pub fn check(m: &ModelsConfig, catalogue: &Catalogue, p: &mut Problems) {
    for (i, name) in m.registry.iter().enumerate() {
        let known = matches!(name.as_str(), "churn" | "purchase")
            || name.strip_prefix("response:").is_some_and(|o| catalogue.get(o).is_some());
        if !known {
            p.add(format!("models.registry[{i}]"), format!("{name:?} is not churn, purchase or response:<offer id>"));
        }
    }
    if !(m.poll_seconds > 0.0 && m.poll_seconds.is_finite()) {
        p.add("models.poll_seconds", "must be a positive number of seconds");
    }
    for o in m.response.keys().filter(|o| catalogue.get(o).is_none()) {
        p.add(format!("models.response.{o}"), format!("unknown offer {o:?}"));
    }
}
