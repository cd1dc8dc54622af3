//! Off-policy evaluation's sanity check on a real randomised test (issue 10): Hillstrom's
//! e-mail test assigned each customer to Mens, Womens or no e-mail with probability 1/3, so it
//! is logged bandit data with known propensities. Estimated from the whole file, the value of
//! "always send Mens" (and "always Womens") must have the arm's observed rate in its CI.
use touchpoint_train::ope::{Logged, evaluate};

struct Row {
    arm: String,
    visit: f64,
    conversion: f64,
}

fn hillstrom() -> Vec<Row> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/hillstrom.csv.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut touchpoint::io::open_maybe_gz(&path).unwrap(), &mut text).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').map(str::trim).collect();
    // Counted from the end: `history_segment` is quoted and may hold a comma ("$750 - $1,000").
    let from_end = |name: &str| header.len() - header.iter().position(|h| *h == name).unwrap();
    let (segment, visit, conversion) = (from_end("segment"), from_end("visit"), from_end("conversion"));
    lines
        .map(|l| {
            let c: Vec<&str> = l.split(',').map(str::trim).collect();
            let at = |k: usize| c[c.len() - k];
            Row {
                arm: at(segment).to_string(),
                visit: at(visit).parse().unwrap(),
                conversion: at(conversion).parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn ips_and_snips_of_always_one_arm_cover_the_arms_observed_rate() {
    let rows = hillstrom();
    assert_eq!(rows.len(), 64_000);
    for arm in ["Mens E-Mail", "Womens E-Mail"] {
        for (metric, reward) in
            [("conversion", (|r: &Row| r.conversion) as fn(&Row) -> f64), ("visit", |r: &Row| r.visit)]
        {
            let logged: Vec<Logged> = rows
                .iter()
                .map(|r| Logged {
                    reward: reward(r),
                    propensity: 1.0 / 3.0,
                    target: if r.arm == arm { 1.0 } else { 0.0 },
                    dm: None,
                })
                .collect();
            let e = evaluate(&logged).unwrap();
            let in_arm: Vec<f64> = rows.iter().filter(|r| r.arm == arm).map(reward).collect();
            let observed = in_arm.iter().sum::<f64>() / in_arm.len() as f64;
            for (name, est) in [("IPS", e.ips), ("SNIPS", e.snips)] {
                assert!(
                    est.ci.0 <= observed && observed <= est.ci.1,
                    "{arm} {metric} {name}: observed {observed} outside [{}, {}]",
                    est.ci.0,
                    est.ci.1
                );
            }
            // About a third of the file carries the weight of the whole.
            assert!((e.effective_sample_size / 64_000.0 - 1.0 / 3.0).abs() < 0.01, "{}", e.effective_sample_size);
        }
    }
}

/// Issue 10, part 7: the learned uplift policy's study on the two halves. Whatever the policy's
/// merit, its estimates must be the arithmetic of the evaluation half: SNIPS of a deterministic
/// policy under uniform randomisation is the mean reward of the customers whose randomised arm
/// is the one the policy picks, and each single arm's IPS CI covers that arm's observed rate.
#[test]
fn the_uplift_study_estimates_are_those_of_the_evaluation_half() {
    use touchpoint_train::uplift::{self, ARMS};
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/hillstrom.csv.gz");
    let customers = uplift::read(&path).unwrap();
    assert_eq!(customers.len(), 64_000);
    let study = uplift::study(&customers, 1).unwrap();
    assert_eq!((study.train_rows, study.eval_rows), (32_000, 32_000));
    let (train, eval) = uplift::split(customers.len(), 1);
    let train: Vec<&uplift::Customer> = train.iter().map(|&i| &customers[i]).collect();
    let eval: Vec<&uplift::Customer> = eval.iter().map(|&i| &customers[i]).collect();
    let models = uplift::fit(&train).unwrap();
    for (k, (name, policy)) in uplift::policies(&models).iter().enumerate() {
        let result = &study.policies[k];
        assert_eq!(&result.policy, name);
        assert!((result.arm_shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let matched: Vec<&&uplift::Customer> = eval.iter().filter(|c| policy(c) == c.arm).collect();
        let rate = matched.iter().map(|c| c.conversion).sum::<f64>() / matched.len() as f64;
        let spend = matched.iter().map(|c| c.spend).sum::<f64>() / matched.len() as f64;
        assert!((result.conversion_snips.value - rate).abs() < 1e-12, "{name}: {rate}");
        assert!((result.spend_snips.value - spend).abs() < 1e-9, "{name}: {spend}");
    }
    for (arm, result) in study.policies[study.policies.len() - ARMS.len()..].iter().enumerate() {
        let own: Vec<f64> = eval.iter().filter(|c| c.arm == arm).map(|c| c.conversion).collect();
        let observed = own.iter().sum::<f64>() / own.len() as f64;
        let ci = result.conversion_ips.ci;
        assert!(ci.0 <= observed && observed <= ci.1, "{}: {observed} outside {ci:?}", result.policy);
    }
    // The learned policies target: they send more than one arm.
    assert!(study.policies[0].arm_shares.iter().filter(|s| **s > 0.05).count() >= 2);
}
