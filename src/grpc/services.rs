//! Thin service handlers: convert the request, call the engine, convert the answer.
use super::pb::{
    self, admin_server::Admin, analytics_server::Analytics, decisions_server::Decisions,
    experiments_server::Experiments, profiles_server::Profiles,
};
use super::{convert, report};
use crate::domain::decision::DecisionQuery;
use crate::engine::Engine;
use crate::engine::Error;
use futures::StreamExt;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub const NAMES: [&str; 5] = [
    "touchpoint.v1.Decisions",
    "touchpoint.v1.Profiles",
    "touchpoint.v1.Experiments",
    "touchpoint.v1.Analytics",
    "touchpoint.v1.Admin",
];

#[derive(Clone)]
pub struct Services {
    engine: Arc<Engine>,
}

impl Services {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

type Stream<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Decisions for Services {
    async fn decide(&self, req: Request<pb::DecideRequest>) -> Result<Response<pb::DecideResponse>, Status> {
        let deadline = convert::grpc_timeout(req.metadata());
        let query = DecisionQuery::try_from(req.into_inner()).map_err(Error::from)?;
        let decision = self.engine.decide(query, deadline).await?;
        Ok(Response::new(decision.into()))
    }

    type DecideBatchStream = Stream<pb::DecideBatchItem>;

    async fn decide_batch(
        &self,
        req: Request<pb::DecideBatchRequest>,
    ) -> Result<Response<Self::DecideBatchStream>, Status> {
        let (template, users) = convert::decide_batch(req.into_inner()).map_err(Error::from)?;
        let decisions = self.engine.decide_batch(template, users)?;
        let items = decisions.enumerate().map(|(i, d)| {
            let d = d?;
            Ok(pb::DecideBatchItem {
                index: i as u32,
                user_id: d.record.user_id.clone(),
                suppression_reason: d.record.suppression.as_ref().map(|s| s.to_string()).unwrap_or_default(),
                suppression_code: d.record.suppression.as_ref().map(|s| s.code().to_string()).unwrap_or_default(),
                decision: Some(d.into()),
            })
        });
        Ok(Response::new(Box::pin(items) as Self::DecideBatchStream))
    }

    async fn record_events(
        &self,
        req: Request<pb::RecordEventsRequest>,
    ) -> Result<Response<pb::RecordEventsResponse>, Status> {
        let events = convert::events(req.into_inner()).map_err(Error::from)?;
        let s = self.engine.record_events(events).await?;
        Ok(Response::new(pb::RecordEventsResponse { accepted: s.accepted, duplicates: s.duplicates }))
    }

    async fn record_outcome(
        &self,
        req: Request<pb::RecordOutcomeRequest>,
    ) -> Result<Response<pb::RecordOutcomeResponse>, Status> {
        let outcome = convert::outcome(req.into_inner()).map_err(Error::from)?;
        let recorded = self.engine.record_outcome(outcome).await?;
        Ok(Response::new(pb::RecordOutcomeResponse { recorded, duplicate: !recorded }))
    }
}

#[tonic::async_trait]
impl Profiles for Services {
    async fn get_profile(&self, req: Request<pb::GetProfileRequest>) -> Result<Response<pb::Profile>, Status> {
        let user = convert::user_id(&req.into_inner().user_id).map_err(Error::from)?;
        Ok(Response::new(self.engine.get_profile(&user).await?.into()))
    }

    async fn put_profile(&self, req: Request<pb::PutProfileRequest>) -> Result<Response<pb::Profile>, Status> {
        let (user, set, remove) = convert::put_profile(req.into_inner()).map_err(Error::from)?;
        Ok(Response::new(self.engine.put_profile(&user, set, remove).await?.into()))
    }

    async fn delete_profile(
        &self,
        req: Request<pb::DeleteProfileRequest>,
    ) -> Result<Response<pb::DeleteProfileResponse>, Status> {
        let user = convert::user_id(&req.into_inner().user_id).map_err(Error::from)?;
        let keys_deleted = self.engine.delete_profile(&user).await?;
        Ok(Response::new(pb::DeleteProfileResponse { keys_deleted }))
    }

    async fn set_consent(&self, req: Request<pb::SetConsentRequest>) -> Result<Response<pb::Profile>, Status> {
        let (user, channel, granted) = convert::set_consent(req.into_inner()).map_err(Error::from)?;
        Ok(Response::new(self.engine.set_consent(&user, &channel, granted).await?.into()))
    }

    async fn get_journey(&self, req: Request<pb::GetJourneyRequest>) -> Result<Response<pb::Journey>, Status> {
        let user = convert::user_id(&req.into_inner().user_id).map_err(Error::from)?;
        Ok(Response::new(convert::journey(self.engine.get_journey(&user).await?)))
    }
}

#[tonic::async_trait]
impl Experiments for Services {
    async fn get_assignment(
        &self,
        req: Request<pb::GetAssignmentRequest>,
    ) -> Result<Response<pb::GetAssignmentResponse>, Status> {
        let r = req.into_inner();
        let user = convert::user_id(&r.user_id).map_err(Error::from)?;
        let experiment = match r.experiment_id.as_str() {
            "" => None,
            id => Some(convert::experiment_id(id).map_err(Error::from)?),
        };
        let channel = (!r.channel.is_empty()).then_some(r.channel.as_str());
        let assignments = self.engine.get_assignment(&user, experiment.as_deref(), channel).await?;
        Ok(Response::new(convert::assignments(user, assignments)))
    }

    async fn get_experiment_results(
        &self,
        req: Request<pb::GetExperimentResultsRequest>,
    ) -> Result<Response<pb::ExperimentResults>, Status> {
        let id = convert::experiment_id(&req.into_inner().experiment_id).map_err(Error::from)?;
        Ok(Response::new(self.engine.experiment_results(&id).await?.into()))
    }
}

#[tonic::async_trait]
impl Admin for Services {
    async fn reload(&self, _req: Request<pb::ReloadRequest>) -> Result<Response<pb::ReloadResponse>, Status> {
        let snap = self.engine.reload_now().await?;
        Ok(Response::new(pb::ReloadResponse {
            config_version: snap.config.version.clone(),
            model_versions: snap.config.policy.models.versions().into_iter().collect(),
        }))
    }

    async fn get_status(&self, _req: Request<pb::GetStatusRequest>) -> Result<Response<pb::ServerStatus>, Status> {
        let s = self.engine.status().await;
        Ok(Response::new(pb::ServerStatus {
            server_version: crate::VERSION.to_string(),
            config_version: s.config_version,
            model_versions: s.model_versions.into_iter().collect(),
            store_kind: s.store_kind.to_string(),
            store_healthy: s.store_error.is_none(),
            store_error: s.store_error.unwrap_or_default(),
            started_at: Some(convert::timestamp(s.started_at)),
            config_loaded_at: Some(convert::timestamp(s.config_loaded_at)),
            store_breaker: s.store_breaker.to_string(),
        }))
    }
}

#[tonic::async_trait]
impl Analytics for Services {
    async fn get_funnel(&self, req: Request<pb::GetFunnelRequest>) -> Result<Response<pb::Funnel>, Status> {
        let r = req.into_inner();
        let asked = report::asked(r.range).map_err(Error::from)?;
        let channel = (!r.channel.is_empty()).then_some(r.channel.as_str());
        let segment = (!r.segment.is_empty()).then_some(r.segment.as_str());
        let (days, rows) = self.engine.funnel(asked, channel, segment).await?;
        Ok(Response::new(report::funnel(days, r.channel.clone(), r.segment.clone(), rows)))
    }

    async fn get_offer_performance(
        &self,
        req: Request<pb::GetOfferPerformanceRequest>,
    ) -> Result<Response<pb::OfferPerformance>, Status> {
        let r = req.into_inner();
        let query = report::offer_query(&r);
        let asked = report::asked(r.range).map_err(Error::from)?;
        let (days, rows) = self.engine.offer_performance(asked, &query).await?;
        Ok(Response::new(report::offers(days, rows)))
    }

    async fn get_kpis(&self, _req: Request<pb::GetKpisRequest>) -> Result<Response<pb::Kpis>, Status> {
        let (as_of, status) = self.engine.kpis().await?;
        Ok(Response::new(report::kpis(as_of, status)))
    }
}
