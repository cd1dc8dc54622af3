//! `touchpoint client`: call a running server from the shell.
use anyhow::{Context, bail};
use clap::Subcommand;
use std::io::BufRead;
use touchpoint::domain::event::Event;
use touchpoint::grpc::convert::parse_cli_value;
use touchpoint::grpc::pb::{
    self, admin_client::AdminClient, decisions_client::DecisionsClient, profiles_client::ProfilesClient,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: super::keys::Conn,
    #[command(subcommand)]
    call: Call,
}

#[derive(Subcommand)]
enum Call {
    /// Ask for the next best offers for a user.
    Decide {
        user: String,
        #[arg(long, default_value = "web")]
        channel: String,
        #[arg(long, default_value = "")]
        placement: String,
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// List every candidate, kept or dropped, with the reason.
        #[arg(long)]
        explain: bool,
        /// Request context as key=value (repeatable); values true/false/numbers are typed.
        #[arg(long = "context", value_parser = key_value)]
        context: Vec<(String, String)>,
    },
    /// Send events: from a JSON Lines file (`-` for stdin), or one event from flags.
    Events {
        #[arg(long)]
        file: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value_t = 0.0)]
        value: f64,
        #[arg(long, default_value = "")]
        channel: String,
    },
    /// Report an outcome: impression, click, dismiss, accept or conversion.
    Outcome {
        decision_id: String,
        user: String,
        offer: String,
        outcome: String,
        #[arg(long, default_value_t = 0.0)]
        value: f64,
    },
    /// Show a profile, or change attributes with --set k=v / --remove k.
    Profile {
        user: String,
        #[arg(long = "set", value_parser = key_value)]
        set: Vec<(String, String)>,
        #[arg(long)]
        remove: Vec<String>,
    },
    /// Show a user's stage history.
    Journey { user: String },
    /// Erase every key of a user (and make their log entries unreadable).
    Delete { user: String },
    /// Withdraw (default) or, with --grant, grant again a user's consent for a channel.
    Consent {
        user: String,
        channel: String,
        #[arg(long)]
        grant: bool,
    },
    /// Server, config and store status.
    Status,
    /// Reload config (and models) on the server.
    Reload,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn ms(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn print_decision(d: &pb::DecideResponse) {
    println!(
        "decision {}  user {}  stage {}{}{}  config {}",
        d.decision_id,
        d.user_id,
        d.stage,
        if d.lapsed { " (lapsed)" } else { "" },
        if d.degraded { " DEGRADED" } else { "" },
        d.config_version
    );
    if !d.segments.is_empty() {
        println!("  segments {}", d.segments.join(", "));
    }
    if let Some(c) = d.explanation.first() {
        let mut user_scores: Vec<String> =
            ["churn", "purchase"].iter().filter_map(|k| c.scores.get(*k).map(|v| format!("{k} {v:.3}"))).collect();
        user_scores.sort();
        if !user_scores.is_empty() {
            println!("  scores {}", user_scores.join(", "));
        }
    }
    if d.offers.is_empty() {
        println!("  (no offer)");
    }
    for o in &d.offers {
        println!(
            "  {}. {:<22} score {:>8.3}  p {:.3}  {}",
            o.rank, o.offer_id, o.score, o.selection_probability, o.content_ref
        );
    }
    for c in &d.explanation {
        let verdict = if c.kept { "kept".to_string() } else { format!("dropped: {}", c.reason) };
        println!("     - {:<22} score {:>8.3}  {verdict}", c.offer_id, c.score);
    }
}

pub fn print_profile(p: &pb::Profile) {
    println!("user {}  stage {}{}", p.user_id, p.stage, if p.lapsed { " (lapsed)" } else { "" });
    let mut attrs: Vec<_> = p.attributes.iter().collect();
    attrs.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in attrs {
        let shown = match &v.kind {
            Some(pb::value::Kind::StringValue(s)) => format!("{s:?}"),
            Some(pb::value::Kind::NumberValue(n)) => n.to_string(),
            Some(pb::value::Kind::BoolValue(b)) => b.to_string(),
            None => "-".into(),
        };
        println!("  {k} = {shown}");
    }
    let mut withdrawn: Vec<_> =
        p.consent_withdrawn.iter().map(|(c, t)| format!("{c} (since {})", ms(&Some(*t)))).collect();
    withdrawn.sort();
    if !withdrawn.is_empty() {
        println!("  consent withdrawn: {}", withdrawn.join(", "));
    }
    if let Some(a) = &p.aggregates {
        let mut counts: Vec<_> = a.event_counts.iter().collect();
        counts.sort();
        println!("  events {counts:?}");
        println!(
            "  purchases {}  monetary {:.2}  first seen {}  last seen {}  last purchase {}",
            a.purchase_count,
            a.monetary_total,
            ms(&a.first_seen),
            ms(&a.last_seen),
            ms(&a.last_purchase)
        );
    }
}

pub fn print_journey(j: &pb::Journey) {
    println!("user {}  stage {}", j.user_id, j.stage);
    for t in &j.transitions {
        let from = if t.from_stage.is_empty() { "(new)" } else { &t.from_stage };
        println!("  {}  {from} -> {}  on {} ({})", ms(&t.at), t.to_stage, t.trigger_event_type, t.trigger_event_id);
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let channel = args.conn.connect().await?;
    let mut decisions = DecisionsClient::new(channel.clone());
    let mut profiles = ProfilesClient::new(channel.clone());
    match args.call {
        Call::Decide { user, channel: ch, placement, limit, explain, context } => {
            let context = context.into_iter().map(|(k, v)| (k, parse_cli_value(&v))).collect();
            let req = pb::DecideRequest { user_id: user, channel: ch, placement, context, limit, explain };
            print_decision(&decisions.decide(req).await?.into_inner());
        }
        Call::Events { file, user, event_type, id, value, channel: ch } => {
            let events: Vec<pb::Event> = match (file, user, event_type) {
                (Some(path), _, _) => {
                    let reader: Box<dyn BufRead> = if path == "-" {
                        Box::new(std::io::stdin().lock())
                    } else {
                        Box::new(std::io::BufReader::new(
                            std::fs::File::open(&path).with_context(|| format!("opening {path}"))?,
                        ))
                    };
                    let mut out = Vec::new();
                    for (i, line) in reader.lines().enumerate() {
                        let line = line?;
                        if line.trim().is_empty() {
                            continue;
                        }
                        let e: Event = serde_json::from_str(&line).with_context(|| format!("line {}", i + 1))?;
                        out.push(pb::Event::from(e));
                    }
                    out
                }
                (None, Some(user), Some(event_type)) => vec![pb::Event {
                    event_id: id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                    user_id: user,
                    event_type,
                    timestamp: None,
                    channel: ch,
                    offer_id: String::new(),
                    value,
                    properties: Default::default(),
                }],
                _ => bail!("give --file, or --user and --type"),
            };
            let (mut accepted, mut duplicates) = (0, 0);
            for chunk in events.chunks(1000) {
                let r = decisions.record_events(pb::RecordEventsRequest { events: chunk.to_vec() }).await?.into_inner();
                accepted += r.accepted;
                duplicates += r.duplicates;
            }
            println!("accepted {accepted}, duplicates {duplicates}");
        }
        Call::Outcome { decision_id, user, offer, outcome, value } => {
            let kind = pb::Outcome::from_str_name(&outcome.to_ascii_uppercase()).with_context(|| {
                format!("unknown outcome {outcome:?} (impression, click, dismiss, accept, conversion)")
            })?;
            let req = pb::RecordOutcomeRequest {
                decision_id,
                user_id: user,
                offer_id: offer,
                outcome: kind as i32,
                value,
                timestamp: None,
            };
            decisions.record_outcome(req).await?;
            println!("recorded");
        }
        Call::Profile { user, set, remove } => {
            let p = if set.is_empty() && remove.is_empty() {
                profiles.get_profile(pb::GetProfileRequest { user_id: user }).await?
            } else {
                let attributes = set.into_iter().map(|(k, v)| (k, parse_cli_value(&v))).collect();
                profiles
                    .put_profile(pb::PutProfileRequest { user_id: user, attributes, remove_attributes: remove })
                    .await?
            };
            print_profile(&p.into_inner());
        }
        Call::Journey { user } => {
            print_journey(&profiles.get_journey(pb::GetJourneyRequest { user_id: user }).await?.into_inner())
        }
        Call::Consent { user, channel, grant } => {
            let req = pb::SetConsentRequest { user_id: user, channel, granted: grant };
            print_profile(&profiles.set_consent(req).await?.into_inner());
        }
        Call::Delete { user } => {
            let r = profiles.delete_profile(pb::DeleteProfileRequest { user_id: user.clone() }).await?.into_inner();
            println!("deleted {} keys of {user}", r.keys_deleted);
        }
        Call::Status => {
            let s = AdminClient::new(channel).get_status(pb::GetStatusRequest {}).await?.into_inner();
            println!(
                "touchpoint {}  config {}  store {} ({}, breaker {})",
                s.server_version,
                s.config_version,
                s.store_kind,
                if s.store_healthy { "healthy".to_string() } else { format!("unhealthy: {}", s.store_error) },
                s.store_breaker
            );
        }
        Call::Reload => {
            let r = AdminClient::new(channel).reload(pb::ReloadRequest {}).await?.into_inner();
            println!("reloaded: config {}", r.config_version);
        }
    }
    Ok(())
}
