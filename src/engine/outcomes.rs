//! Recording outcomes: a user's reaction to an offer of a logged decision.
use super::{Engine, Error};
use crate::domain::limits::FieldError;
use crate::domain::outcome::OutcomeRecord;
use crate::store::OutcomeLink;

impl Engine {
    /// Appends an outcome to the decision log, linked to one of the user's recent decisions.
    /// Returns false when the same outcome was already recorded (a retry): acknowledged, not
    /// appended again.
    pub async fn record_outcome(&self, record: OutcomeRecord) -> Result<bool, Error> {
        let windows = self.snapshot().config.policy.attribution_windows();
        match self.store.log_outcome(&record, &windows).await? {
            OutcomeLink::Linked => Ok(true),
            OutcomeLink::Duplicate => Ok(false),
            OutcomeLink::UnknownDecision => Err(Error::NotFound(format!(
                "decision {} is not among the recent decisions of user {}",
                record.decision_id, record.user_id
            ))),
            OutcomeLink::OfferNotInDecision => Err(FieldError::new(
                "offer_id",
                format!("offer {} was not part of decision {}", record.offer_id, record.decision_id),
            )
            .into()),
        }
    }
}
