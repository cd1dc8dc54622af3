//! Experiments end to end: the Hillstrom replay through the engine, and experiments over a
//! real gRPC socket and a real redis-server (assignment and why, targeting, holdouts,
//! overrides, attribution, results, the report command).
use crate::grpc_e2e::ev;
use crate::harness::{RedisServer, TestServer, redis_store};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use touchpoint::config::Config;
use touchpoint::engine::Engine;
use touchpoint::grpc::convert::parse_cli_value;
use touchpoint::grpc::pb;

/// The copy vendored in the repository (gzip-compressed, see data/README.md).
fn hillstrom_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/hillstrom.csv.gz")
}

/// Running the file through the engine reproduces its per-arm counts exactly (the file is read
/// independently here), and the lifts' p-values match scipy's to 1% (relative).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hillstrom_run_reproduces_the_files_arms_and_scipys_p_values() {
    let mut want: BTreeMap<&str, (u64, u64, u64, f64)> = BTreeMap::new();
    let file = touchpoint::io::open_maybe_gz(&hillstrom_path()).unwrap();
    let mut rdr = csv::Reader::from_reader(file);
    for rec in rdr.records() {
        let r = rec.unwrap();
        let arm = match &r[8] {
            "Mens E-Mail" => "mens_email",
            "Womens E-Mail" => "womens_email",
            _ => "no_email",
        };
        let e = want.entry(arm).or_default();
        e.0 += 1;
        e.1 += u64::from(&r[9] == "1");
        e.2 += u64::from(&r[10] == "1");
        e.3 += r[11].parse::<f64>().unwrap();
    }
    assert_eq!(want["mens_email"].0, 21_307, "the data README's arm sizes");

    let config = touchpoint::hillstrom::config("memory://").unwrap();
    let store = touchpoint::store::open(&config.file.redis).await.unwrap();
    let engine = Arc::new(Engine::new(store, config, None, vec![]));
    let report = touchpoint::hillstrom::run(engine, &hillstrom_path()).await.unwrap();
    for v in &report.variants {
        let (n, visits, conversions, spend) = want[v.variant.as_str()];
        let c = v.counters;
        assert_eq!((c.exposed, c.visitors, c.converters), (n, visits, conversions), "{}", v.variant);
        assert!((c.revenue - spend).abs() < 1e-6 * spend, "{}: {} vs {spend}", v.variant, c.revenue);
    }
    let rate = |arm: &str, f: fn(&touchpoint::domain::results::VariantResult) -> f64| {
        f(report.variants.iter().find(|v| v.variant == arm).unwrap())
    };
    // The figures the data README gives, to their precision.
    for (arm, visit, conversion, spend) in
        [("mens_email", 18.28, 1.253, 1.423), ("womens_email", 15.14, 0.884, 1.077), ("no_email", 10.62, 0.573, 0.653)]
    {
        assert_eq!(format!("{:.2}", 100.0 * rate(arm, |v| v.visit_rate)), format!("{visit:.2}"), "{arm} visit");
        assert_eq!(
            format!("{:.3}", 100.0 * rate(arm, |v| v.conversion_rate)),
            format!("{conversion:.3}"),
            "{arm} conversion"
        );
        assert_eq!(format!("{:.3}", rate(arm, |v| v.revenue_per_user)), format!("{spend:.3}"), "{arm} spend");
    }
    assert_eq!(report.control, "no_email");
    let mens = report.variants.iter().find(|v| v.variant == "mens_email").unwrap();
    let lift = mens.conversion.unwrap();
    assert!(lift.lift > 1.0 && lift.ci.0 > 0.0 && lift.p_value < 1e-6, "{lift:?}");
    assert!(!report.srm_alarm, "the arms are balanced");
    assert!(report.table().contains("18.276%"));

    // The visit lifts against no e-mail: scipy's two-sided 2 * norm.sf(|z|) of the pooled
    // two-proportion z (python3, scipy 1.17, on this file). Far below 1e-100, where 1 - cdf
    // gives 0: the table must print them, not a bound.
    let scipy = [("mens_email", 5.685165482802317e-112), ("womens_email", 3.1824031593349214e-44)];
    for (arm, want) in scipy {
        let got = report.variants.iter().find(|v| v.variant == arm).unwrap().visit.unwrap().p_value;
        assert!((got - want).abs() / want < 0.01, "{arm} visit p-value {got:e} vs scipy {want:e}");
    }
    let table = report.table();
    assert!(table.contains("p=5.69e-112") && !table.contains("<5e-324"), "{table}");
    assert!(table.contains("sample ratio: chi-square 0.203, p = 0.9037  (no mismatch)"), "{table}");
}

const BODY: &str = r#"
[holdout]
share = 0.2
salt = "test-holdout"

[[offers]]
id = "first"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://first"
priority = 10

[[offers]]
id = "second"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://second"
priority = 5

[[experiments]]
id = "ranking"
layer = "arbitration"
allocation = 0.5
targeting = "has(profile.country) && profile.country == 'FR'"
[[experiments.variants]]
name = "champion"
[[experiments.variants]]
name = "reversed"
priority = "0.0 - offer.priority"

[[experiments]]
id = "neighbour"
layer = "arbitration"
offset = 0.5
allocation = 0.5
[[experiments.variants]]
name = "a"
[[experiments.variants]]
name = "b"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_over_grpc_assign_override_hold_out_attribute_and_report() {
    let redis = RedisServer::start();
    let cfg =
        Config::from_toml(&format!("[redis]\nurl = \"{}\"\n{BODY}", redis.url()), "t", std::iter::empty()).unwrap();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, cfg).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());
    let mut ex = pb::experiments_client::ExperimentsClient::new(srv.channel.clone());

    let mut seen = HashMap::new();
    for i in 0..200 {
        let user = format!("user{i}");
        let country = if i % 2 == 0 { "FR" } else { "US" };
        let attrs = HashMap::from([("country".to_string(), parse_cli_value(country))]);
        p.put_profile(pb::PutProfileRequest { user_id: user.clone(), attributes: attrs, remove_attributes: vec![] })
            .await
            .unwrap();
        let a = ex
            .get_assignment(pb::GetAssignmentRequest { user_id: user.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let by_id: HashMap<&str, &pb::Assignment> =
            a.assignments.iter().map(|x| (x.experiment_id.as_str(), x)).collect();
        let (ranking, neighbour, holdout) = (by_id["ranking"], by_id["neighbour"], by_id["global_holdout"]);
        // One layer, disjoint traffic.
        assert!(ranking.variant.is_empty() || neighbour.variant.is_empty(), "{a:?}");
        if country == "US" {
            assert!(ranking.variant.is_empty());
            assert!(
                ranking.reason == "the targeting rule is false"
                    || ranking.reason.contains("outside the experiment's slice"),
                "{ranking:?}"
            );
        }
        if !ranking.variant.is_empty() {
            assert!(ranking.reason.contains("slice 0..5000"), "{ranking:?}");
        }

        let r = d
            .decide(pb::DecideRequest {
                user_id: user.clone(),
                channel: "web".into(),
                limit: 2,
                explain: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let assigned: HashMap<&str, &str> =
            r.assignments.iter().map(|x| (x.experiment_id.as_str(), x.variant.as_str())).collect();
        assert_eq!(
            assigned.get("global_holdout"),
            Some(&holdout.variant.as_str()),
            "the decision agrees with GetAssignment"
        );
        let order: Vec<&str> = r.offers.iter().map(|o| o.offer_id.as_str()).collect();
        match (holdout.variant.as_str(), ranking.variant.as_str()) {
            ("holdout", _) => {
                assert!(order.is_empty(), "global holdout users never get an offer");
                assert!(r.explanation.iter().all(|c| c.reason == "global holdout"), "{r:?}");
            }
            (_, "reversed") => assert_eq!(order, ["second", "first"], "the variant's priority expression"),
            _ => assert_eq!(order, ["first", "second"]),
        }
        *seen.entry((holdout.variant.clone(), ranking.variant.clone())).or_insert(0) += 1;
        // A click from every FR user in the reversed variant who got an offer; a purchase from
        // every held-out user (attributed through their assignment).
        if ranking.variant == "reversed" && !r.offers.is_empty() {
            let click = pb::RecordOutcomeRequest {
                decision_id: r.decision_id.clone(),
                user_id: user.clone(),
                offer_id: r.offers[0].offer_id.clone(),
                outcome: pb::Outcome::Click as i32,
                value: 0.0,
                timestamp: None,
            };
            d.record_outcome(click).await.unwrap();
        }
        if holdout.variant == "holdout" {
            let mut purchase = ev(&user, &format!("{user}-buy"), "purchase", 0, 10.0);
            purchase.timestamp = None;
            d.record_events(pb::RecordEventsRequest { events: vec![purchase] }).await.unwrap();
        }
    }
    let count = |h: &str, r: &str| seen.iter().filter(|((a, b), _)| a == h && b == r).map(|(_, n)| *n).sum::<u64>();
    assert!(count("holdout", "") + count("holdout", "champion") + count("holdout", "reversed") > 15, "{seen:?}");
    let reversed_treated = count("treated", "reversed");
    assert!(reversed_treated > 5 && count("treated", "champion") > 5, "{seen:?}");

    let results = ex
        .get_experiment_results(pb::GetExperimentResultsRequest { experiment_id: "ranking".into() })
        .await
        .unwrap()
        .into_inner();
    let v: HashMap<&str, &pb::VariantResult> = results.variants.iter().map(|v| (v.variant.as_str(), v)).collect();
    let exposed_ranking: u64 = v.values().map(|x| x.exposed_users).sum();
    assert_eq!(
        exposed_ranking,
        count("holdout", "champion") + count("holdout", "reversed") + count("treated", "champion") + reversed_treated
    );
    assert_eq!(v["reversed"].visitors, reversed_treated, "each click counted once, in its variant");
    assert_eq!(v["champion"].visitors, 0);
    assert!(v["champion"].is_control && results.control == "champion");

    let holdout = ex
        .get_experiment_results(pb::GetExperimentResultsRequest { experiment_id: "global_holdout".into() })
        .await
        .unwrap()
        .into_inner();
    let h: HashMap<&str, &pb::VariantResult> = holdout.variants.iter().map(|v| (v.variant.as_str(), v)).collect();
    assert_eq!(h["holdout"].exposed_users + h["treated"].exposed_users, 200);
    assert_eq!(h["holdout"].converted_users, h["holdout"].exposed_users, "every held-out user bought, attributed");
    assert!((h["holdout"].revenue_per_user - 10.0).abs() < 1e-9);
    assert_eq!(h["treated"].converted_users, 0);

    let e =
        ex.get_experiment_results(pb::GetExperimentResultsRequest { experiment_id: "nope".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = ex.get_assignment(pb::GetAssignmentRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    // The report command, in its three formats, against this server.
    let addr = format!("http://{}", srv.addr);
    let report = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_touchpoint"))
            .env("TOUCHPOINT_API_KEY", crate::harness::TEST_KEY)
            .args(["experiments", "report", "ranking", "--addr", &addr, "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = report("table");
    assert!(table.contains("experiment ranking (control champion)") && table.contains("sample ratio"), "{table}");
    let csv = report("csv");
    assert!(csv.starts_with("experiment,variant,is_control") && csv.lines().count() == 3, "{csv}");
    let json: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
    assert_eq!(json["experiment_id"], "ranking");
}

/// An experiment nobody was exposed to has no sample-ratio test: the fields are absent on the
/// wire and the report says "no data", not "no mismatch".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srm_without_exposures_is_no_data_over_grpc_and_in_the_report() {
    let redis = RedisServer::start();
    let body = format!(
        "[redis]\nurl = \"{}\"\n{}[[experiments]]\nid = \"quiet\"\nlayer = \"arbitration\"\n\
         [[experiments.variants]]\nname = \"a\"\n[[experiments.variants]]\nname = \"b\"\n",
        redis.url(),
        &BODY[BODY.find("[[offers]]").unwrap()..BODY.find("[[experiments]]").unwrap()]
    );
    let cfg = Config::from_toml(&body, "t", std::iter::empty()).unwrap();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, cfg).await;
    let mut ex = pb::experiments_client::ExperimentsClient::new(srv.channel.clone());
    let r = ex
        .get_experiment_results(pb::GetExperimentResultsRequest { experiment_id: "quiet".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.variants.len(), 2);
    assert!(r.variants.iter().all(|v| v.exposed_users == 0), "{r:?}");
    assert_eq!((r.srm_chi_square, r.srm_p_value, r.srm_alarm), (None, None, false));

    let addr = format!("http://{}", srv.addr);
    let report = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_touchpoint"))
            .env("TOUCHPOINT_API_KEY", crate::harness::TEST_KEY)
            .args(["experiments", "report", "quiet", "--addr", &addr, "--format", format])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = report("table");
    assert!(table.contains("sample ratio: no data") && !table.contains("no mismatch"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
    assert!(json["srm_p_value"].is_null() && json["srm_chi_square"].is_null(), "{json}");
}

#[tokio::test]
async fn config_rejects_overlapping_slices_in_one_layer() {
    let bad = BODY.replace("offset = 0.5", "offset = 0.4");
    let e = Config::from_toml(&bad, "t.toml", std::iter::empty()).unwrap_err();
    assert!(e.entry.starts_with("experiments[1]") && e.message.contains("overlaps experiment \"ranking\""), "{e}");
}

/// A degraded answer (Redis down) still keeps held-out users clean: the holdout is a hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_answers_respect_the_global_holdout() {
    let mut redis = RedisServer::start();
    let body = format!(
        "[redis]\nurl = \"{}\"\n[holdout]\nshare = 0.5\n[[fallbacks]]\nchannel = \"web\"\noffers = [\"first\"]\n{}",
        redis.url(),
        &BODY[BODY.find("[[offers]]").unwrap()..BODY.find("[[experiments]]").unwrap()]
    );
    let cfg = Config::from_toml(&body, "t", std::iter::empty()).unwrap();
    let policy = cfg.policy.clone();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, cfg).await;
    redis.stop();
    let mut d = srv.decisions();
    let (mut held, mut served) = (0, 0);
    for i in 0..40 {
        let user = format!("d{i}");
        let r = d
            .decide(pb::DecideRequest { user_id: user.clone(), channel: "web".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(r.degraded);
        if policy.holdout.as_ref().unwrap().assign(&user).variant.as_deref() == Some("holdout") {
            assert!(r.offers.is_empty(), "{r:?}");
            held += 1;
        } else {
            assert_eq!(r.offers[0].offer_id, "first");
            served += 1;
        }
    }
    assert!(held > 5 && served > 5, "{held} held out, {served} served");
}

/// `GetAssignment` with a channel answers as a decision on that channel would: an experiment
/// limited to other channels says so; an unknown channel is refused naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_assignment_checks_the_channel() {
    let redis = crate::harness::shared_redis();
    let body = r#"
[[offers]]
id = "news"
stages = ["awareness"]
channels = ["email"]
content_ref = "cms://news"

[[experiments]]
id = "subject_lines"
channels = ["email"]
[[experiments.variants]]
name = "a"
[[experiments.variants]]
name = "b"
"#;
    let cfg =
        Config::from_toml(&format!("[redis]\nurl = \"{}\"\n{body}", redis.url()), "t", std::iter::empty()).unwrap();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, cfg).await;
    let mut ex = pb::experiments_client::ExperimentsClient::new(srv.channel.clone());
    let ask = |channel: &str| pb::GetAssignmentRequest {
        user_id: "chan-user".into(),
        experiment_id: "subject_lines".into(),
        channel: channel.into(),
    };
    let on_email = ex.get_assignment(ask("email")).await.unwrap().into_inner();
    assert!(!on_email.assignments[0].variant.is_empty(), "{on_email:?}");
    let on_web = ex.get_assignment(ask("web")).await.unwrap().into_inner();
    assert!(on_web.assignments[0].variant.is_empty(), "{on_web:?}");
    assert!(on_web.assignments[0].reason.contains("channel web"), "{on_web:?}");
    let any = ex.get_assignment(ask("")).await.unwrap().into_inner();
    assert_eq!(any.assignments[0].variant, on_email.assignments[0].variant, "no channel: any channel qualifies");
    let bad = ex.get_assignment(ask("fax")).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("channel"), "{}", bad.message());
}
