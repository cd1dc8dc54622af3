use super::*;
use crate::config::{ApiKey as Key, ClientIdentity};
use prost::Message;

fn policy() -> AuthPolicy {
    AuthPolicy {
        enabled: true,
        allow_health: true,
        allow_reflection: false,
        keys: vec![
            Key { id: "web".into(), sha256: key_hash("k-web"), roles: [Role::Decide].into_iter().collect() },
            Key { id: "ops".into(), sha256: key_hash("k-ops"), roles: Roles::all() },
        ],
        clients: vec![ClientIdentity { subject: "etl.internal".into(), roles: [Role::Ingest].into_iter().collect() }],
        ..Default::default()
    }
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    pairs.iter().map(|(k, v)| (k.parse::<http::HeaderName>().unwrap(), v.parse().unwrap())).collect()
}

fn code(r: Result<Caller, Status>) -> tonic::Code {
    r.map_or_else(|s| s.code(), |_| tonic::Code::Ok)
}

#[test]
fn every_rpc_of_the_protos_has_a_role_a_class_and_a_metrics_label() {
    let set = prost_types::FileDescriptorSet::decode(crate::grpc::pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut n = 0;
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                assert!(role_for(&path).is_some(), "{path} is in no row of METHODS");
                // The shedding class and the metrics label are tables of their own.
                assert!(crate::grpc::limits::Class::of(method.name()).is_some(), "{path} has no limits class");
                assert_eq!(crate::grpc::layer::rpc_name(&path), Some(method.name()), "{path} has no metrics label");
                n += 1;
            }
        }
    }
    assert!(n >= 12, "{n} methods");
    assert_eq!(role_for("/touchpoint.v1.Profiles/SetConsent"), Some(Role::Profiles));
    assert_eq!(role_for("/touchpoint.v1.Profiles/"), None);
    assert_eq!(role_for("/touchpoint.v1.Decisions/Unknown"), None);
}

#[test]
fn keys_roles_and_open_paths() {
    let p = policy();
    let decide = "/touchpoint.v1.Decisions/Decide";
    let reload = "/touchpoint.v1.Admin/Reload";
    /// Path, headers, client certificate names, expected code.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], tonic::Code);
    let cases: &[Case] = &[
        (decide, &[], &[], tonic::Code::Unauthenticated),
        (decide, &[("authorization", "Bearer nope")], &[], tonic::Code::Unauthenticated),
        (decide, &[("authorization", "Bearer k-web")], &[], tonic::Code::Ok),
        (decide, &[("authorization", "bearer  k-web ")], &[], tonic::Code::Ok),
        (decide, &[("authorization", "Basic k-web")], &[], tonic::Code::Unauthenticated),
        (decide, &[("x-api-key", "k-web")], &[], tonic::Code::Ok),
        (reload, &[("x-api-key", "k-web")], &[], tonic::Code::PermissionDenied),
        (reload, &[("x-api-key", "k-ops")], &[], tonic::Code::Ok),
        ("/touchpoint.v1.Nope/X", &[("x-api-key", "k-ops")], &[], tonic::Code::PermissionDenied),
        ("/touchpoint.v1.Nope/X", &[], &[], tonic::Code::Unauthenticated),
        ("/grpc.health.v1.Health/Check", &[], &[], tonic::Code::Ok),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &[], &[], tonic::Code::Unauthenticated),
        ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &[("x-api-key", "k-web")], &[], tonic::Code::Ok),
        ("/touchpoint.v1.Decisions/RecordEvents", &[], &["etl.internal"], tonic::Code::Ok),
        (decide, &[], &["etl.internal"], tonic::Code::PermissionDenied),
        (decide, &[], &["someone.else"], tonic::Code::Unauthenticated),
    ];
    for (i, (path, h, peer, want)) in cases.iter().enumerate() {
        let peer: Vec<String> = peer.iter().map(|s| s.to_string()).collect();
        assert_eq!(code(authorize(&p, path, &headers(h), &peer)), *want, "case {i}: {path} {h:?} {peer:?}");
    }
    let denied = authorize(&p, reload, &headers(&[("x-api-key", "k-web")]), &[]).unwrap_err();
    assert!(denied.message().contains("`admin`"), "{}", denied.message());
    let unknown = authorize(&p, decide, &headers(&[("x-api-key", "secret-xyz")]), &[]).unwrap_err();
    assert!(!unknown.message().contains("secret-xyz"), "the key is never echoed");
    assert_eq!(authorize(&p, decide, &headers(&[("x-api-key", "k-web")]), &[]).unwrap().id, "web");
}

#[test]
fn health_and_reflection_follow_the_config_and_disabled_lets_all_in() {
    let mut p = policy();
    p.allow_health = false;
    p.allow_reflection = true;
    let h = headers(&[]);
    assert_eq!(code(authorize(&p, "/grpc.health.v1.Health/Check", &h, &[])), tonic::Code::Unauthenticated);
    assert_eq!(
        code(authorize(&p, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &h, &[])),
        tonic::Code::Ok
    );
    p.enabled = false;
    assert_eq!(code(authorize(&p, "/touchpoint.v1.Admin/Reload", &h, &[])), tonic::Code::Ok);
}

#[test]
fn new_keys_are_long_and_distinct() {
    let (a, b) = (new_key(), new_key());
    assert_ne!(a, b);
    assert_eq!(a.len(), 4 + 64);
    assert!(ApiKey::new(Some(&a)).is_ok());
    assert!(ApiKey::new(Some("bad\nkey")).is_err());
}
