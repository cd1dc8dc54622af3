//! Profiles: read, merge attributes, erase, and the stage history.
use super::{Engine, Error, MAX_COMMIT_ATTEMPTS, now_ms};
use crate::domain::Millis;
use crate::domain::decision::RESERVED_PROFILE_NAMES;
use crate::domain::limits::{FieldError, MAX_ATTRIBUTES_PER_PROFILE};
use crate::domain::profile::{AttrValue, UserState};
use crate::store::{Attribution, UserWrite, new_version};
use std::collections::BTreeMap;

/// A user's profile as answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileView {
    /// The user.
    pub user_id: String,
    /// The user's stage.
    pub stage: String,
    /// Whether the user is lapsed.
    pub lapsed: bool,
    /// Attributes, aggregates and stage history.
    pub state: UserState,
}

impl Engine {
    async fn load_existing(&self, user: &str) -> Result<(u64, UserState), Error> {
        let loaded = self.store.load_user(user, &[], None).await?;
        if loaded.version == 0 {
            return Err(Error::NotFound(format!("user {user} has no profile")));
        }
        Ok((loaded.version, loaded.state))
    }

    fn view(&self, user: &str, state: UserState) -> ProfileView {
        let snap = self.snapshot();
        let journey = &snap.config.policy.journey;
        ProfileView {
            user_id: user.to_string(),
            stage: journey.stage_of(&state).to_string(),
            lapsed: journey.is_lapsed(&state, now_ms()),
            state,
        }
    }

    /// A stored user's profile (`NotFound` for a user never written).
    pub async fn get_profile(&self, user: &str) -> Result<ProfileView, Error> {
        let (_, state) = self.load_existing(user).await?;
        Ok(self.view(user, state))
    }

    /// Merges attributes (and removes the named ones) with an optimistic write.
    pub async fn put_profile(
        &self,
        user: &str,
        set: BTreeMap<String, AttrValue>,
        remove: Vec<String>,
    ) -> Result<ProfileView, Error> {
        if let Some(name) = set.keys().find(|k| RESERVED_PROFILE_NAMES.contains(&k.as_str())) {
            return Err(
                FieldError::new(format!("attributes[{name:?}]"), "is the name of an aggregate rules read").into()
            );
        }
        self.update_profile(user, |state, _| {
            for name in &remove {
                state.attributes.remove(name);
            }
            state.attributes.extend(set.clone());
            if state.attributes.len() > MAX_ATTRIBUTES_PER_PROFILE {
                return Err(FieldError::new(
                    "attributes",
                    format!(
                        "the profile would hold {} attributes, at most {MAX_ATTRIBUTES_PER_PROFILE}",
                        state.attributes.len()
                    ),
                )
                .into());
            }
            Ok(())
        })
        .await
    }

    /// Withdraws (`granted == false`) or grants consent for a configured channel, now; creates
    /// the profile when there is none (an opt-out must hold even before the first event).
    pub async fn set_consent(&self, user: &str, channel: &str, granted: bool) -> Result<ProfileView, Error> {
        Self::check_channel(&self.snapshot().config, "channel", channel)?;
        self.update_profile(user, |state, now| {
            state.set_consent(channel, granted, now);
            Ok(())
        })
        .await
    }

    /// Reads the user, applies `change` (given the time of the write) and writes the result
    /// back only if nobody wrote in between, retrying on contention.
    async fn update_profile(
        &self,
        user: &str,
        change: impl Fn(&mut UserState, Millis) -> Result<(), Error>,
    ) -> Result<ProfileView, Error> {
        let _turn = self.lock_user(user).await;
        for attempt in 0..MAX_COMMIT_ATTEMPTS {
            if attempt > 0 {
                Self::backoff(attempt).await;
            }
            let loaded = self.store.load_user(user, &[], None).await?;
            let mut state = loaded.state.clone();
            let now = now_ms();
            change(&mut state, now)?;
            let write = UserWrite {
                state: &state,
                before: Some(&loaded.state),
                new_transitions: &[],
                events: &[],
                now,
                new_version: new_version(),
                attribution: Attribution::default(),
                counts: &[],
            };
            if self.store.commit_user(user, loaded.version, write).await? {
                return Ok(self.view(user, state));
            }
        }
        Err(Error::Contention(user.to_string()))
    }

    /// Erases every per-user key of the user; returns how many were removed.
    pub async fn delete_profile(&self, user: &str) -> Result<u64, Error> {
        let _turn = self.lock_user(user).await;
        Ok(self.store.delete_user(user).await?)
    }

    /// A stored user's stage history (with the profile).
    pub async fn get_journey(&self, user: &str) -> Result<ProfileView, Error> {
        let (_, state) = self.load_existing(user).await?;
        Ok(self.view(user, state))
    }
}
