//! The HTTP/JSON door: every RPC of the Touchpoint services as `POST /v1/<method_in_snake_case>`
//! with a JSON body in the canonical protobuf JSON mapping, and `GET /openapi.json`.
//!
//! Nothing here is written per method. The routes, the request and response types and the
//! OpenAPI document all come from the proto descriptor set compiled into the binary: a JSON
//! body is read into a `prost_reflect::DynamicMessage` of the method's input type, encoded as
//! protobuf and sent as a gRPC call to the same tonic services, in process, behind the same
//! metrics, auth and shedding layers as the gRPC port (the door's class limits are its own
//! semaphores of the same sizes). The answer is decoded with the output type and written as
//! JSON; a server-streaming method (`DecideBatch`) answers a JSON array of its items. So the
//! validation, the errors and the auth are the gRPC ones; the gRPC status maps to an HTTP
//! status (`http_status`) and the error body is `{"code", "status", "message"}`.
//!
//! Why this rather than `pbjson` types or gRPC-Web: pbjson would give serde impls for the
//! generated types but still need one route per method by hand; gRPC-Web (`tonic-web`) keeps
//! protobuf framing that `curl` and spreadsheets cannot write. Transcoding from descriptors is
//! how Envoy's and grpc-gateway's JSON doors work, with no second copy of the API.
use super::pb;
use crate::engine::Engine;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    SerializeOptions,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use tonic::Code;
use tonic::body::Body;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

/// The services reachable through the door (health and reflection stay gRPC-only).
const PACKAGE: &str = "touchpoint.v1";

type GrpcService = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// The door's state: the methods by route, the layered services, the OpenAPI document.
struct Door {
    methods: BTreeMap<String, MethodDescriptor>,
    grpc: GrpcService,
    openapi: Value,
    engine: Arc<Engine>,
}

/// The largest JSON body the door reads (tonic's default limit for a decoded gRPC message).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The descriptor pool of the Touchpoint protos.
pub fn descriptors() -> DescriptorPool {
    DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("the compiled descriptor set decodes")
}

/// `GetOfferPerformance` -> `get_offer_performance`.
pub fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Every Touchpoint method by its route (`/v1/decide`, ...).
pub fn routes(pool: &DescriptorPool) -> BTreeMap<String, MethodDescriptor> {
    pool.services()
        .filter(|s| s.package_name() == PACKAGE)
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .map(|m| (format!("/v1/{}", snake(m.name())), m))
        .collect()
}

/// The door's routes: `POST /v1/{method}` and `GET /openapi.json`.
pub fn router(engine: Arc<Engine>) -> axum::Router {
    let pool = descriptors();
    let methods = routes(&pool);
    let openapi = openapi(&methods);
    let grpc = super::layered_services(engine.clone());
    let door = Arc::new(Door { methods, grpc, openapi, engine });
    axum::Router::new()
        .route("/v1/{method}", axum::routing::post(call))
        .route("/openapi.json", axum::routing::get(openapi_doc))
        .with_state(door)
}

/// The OpenAPI document, readable like gRPC reflection: by anyone with `auth.allow_reflection`,
/// else with any valid key.
async fn openapi_doc(State(door): State<Arc<Door>>, headers: HeaderMap) -> Response {
    let policy = door.engine.snapshot().config.auth.clone();
    match super::auth::authorize(&policy, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &headers, &[]) {
        Ok(_) => axum::Json(door.openapi.clone()).into_response(),
        Err(s) => error(s.code(), s.message()),
    }
}

/// The HTTP status for a gRPC status (the mapping of google.rpc.Code and grpc-gateway).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).expect("a valid status"),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error(code: Code, message: impl Into<String>) -> Response {
    let body = json!({ "code": code as i32, "status": super::code_label(code), "message": message.into() });
    (http_status(code), axum::Json(body)).into_response()
}

/// Headers passed on to the gRPC call: the credentials and the deadline.
const FORWARDED: [&str; 3] = ["authorization", "x-api-key", "grpc-timeout"];

async fn call(
    State(door): State<Arc<Door>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(m) = door.methods.get(&format!("/v1/{method}")) else {
        return error(Code::NotFound, format!("no method /v1/{method} (see /openapi.json)"));
    };
    let path = format!("/{}/{}", m.parent_service().full_name(), m.name());
    // Authorised before the body is read or parsed (the layers check again on the call).
    let policy = door.engine.snapshot().config.auth.clone();
    if let Err(s) = super::auth::authorize(&policy, &path, &headers, &[]) {
        return error(s.code(), s.message());
    }
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let mut r = error(Code::ResourceExhausted, format!("request body: over {MAX_BODY} bytes"));
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return r;
        }
    };
    let text = if body.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &body[..] };
    let mut de = serde_json::Deserializer::from_slice(text);
    let input = match DynamicMessage::deserialize_with_options(m.input(), &mut de, &DeserializeOptions::new())
        .and_then(|msg| de.end().map(|()| msg))
    {
        Ok(msg) => msg,
        Err(e) => return error(Code::InvalidArgument, format!("request body: {e}")),
    };
    let payload = input.encode_to_vec();
    let mut frame = Vec::with_capacity(payload.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://touchpoint{path}"))
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for name in FORWARDED {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v);
        }
    }
    let req = match req.body(Body::new(http_body_util::Full::new(Bytes::from(frame)))) {
        Ok(r) => r,
        Err(e) => return error(Code::InvalidArgument, format!("request headers: {e}")),
    };
    // The caller's deadline (`grpc-timeout`, as on gRPC) bounds the whole call: in process
    // there is no transport to enforce it. Decide also reads it for its own budget.
    let deadline = super::layer::grpc_timeout(&headers);
    let call = async {
        let Ok(resp) = door.grpc.clone().oneshot(req).await;
        answer(m, resp).await
    };
    match deadline {
        Some(d) => tokio::time::timeout(d, call)
            .await
            .unwrap_or_else(|_| error(Code::DeadlineExceeded, "the deadline (grpc-timeout) passed")),
        None => call.await,
    }
}

/// The gRPC answer as JSON: its messages, or its status as an error.
async fn answer(m: &MethodDescriptor, resp: http::Response<Body>) -> Response {
    let (parts, body) = resp.into_parts();
    let collected = match body.collect().await {
        Ok(c) => c,
        Err(e) => return error(Code::Internal, format!("reading the answer: {e}")),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    // The status of the trailers, or of a trailers-only answer's headers; tonic decodes the
    // percent-encoded message.
    let status = tonic::Status::from_header_map(&trailers)
        .or_else(|| tonic::Status::from_header_map(&parts.headers))
        .unwrap_or_else(|| tonic::Status::unknown("the answer carried no grpc-status"));
    if status.code() != Code::Ok {
        return error(status.code(), status.message());
    }
    let mut items = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(payload) = rest.get(5..5 + len) else { break };
        match DynamicMessage::decode(m.output(), payload) {
            Ok(msg) => items.push(to_json(&msg)),
            Err(e) => return error(Code::Internal, format!("decoding the answer: {e}")),
        }
        rest = &rest[5 + len..];
    }
    let body = if m.is_server_streaming() { Value::Array(items) } else { items.pop().unwrap_or(json!({})) };
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert("x-grpc-method", HeaderValue::from_str(m.full_name()).unwrap_or(HeaderValue::from_static("")));
    r
}

/// A message in canonical protobuf JSON, default values included (clients see every field).
pub fn to_json(msg: &DynamicMessage) -> Value {
    let options = SerializeOptions::new().skip_default_fields(false);
    msg.serialize_with_options(serde_json::value::Serializer, &options).unwrap_or(Value::Null)
}

/// A generated message as canonical protobuf JSON (the CLI's `--format json`).
pub fn message_json<M: Message>(pool: &DescriptorPool, full_name: &str, msg: &M) -> Value {
    pool.get_message_by_name(full_name)
        .and_then(|d| DynamicMessage::decode(d, msg.encode_to_vec().as_slice()).ok())
        .map_or(Value::Null, |m| to_json(&m))
}

/// The OpenAPI 3.0 document of the door, generated from the descriptors.
fn openapi(methods: &BTreeMap<String, MethodDescriptor>) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = BTreeMap::new();
    for (route, m) in methods {
        collect(&m.input(), &mut schemas);
        collect(&m.output(), &mut schemas);
        let output = json!({ "$ref": format!("#/components/schemas/{}", m.output().full_name()) });
        let output = if m.is_server_streaming() { json!({ "type": "array", "items": output }) } else { output };
        let comments = m.parent_service().full_name().to_string();
        paths.insert(
            route.clone(),
            json!({ "post": {
                "operationId": m.name(),
                "tags": [m.parent_service().name()],
                "summary": format!("{comments}/{} over HTTP/JSON", m.name()),
                "requestBody": { "required": true, "content": { "application/json": { "schema":
                    { "$ref": format!("#/components/schemas/{}", m.input().full_name()) } } } },
                "responses": {
                    "200": { "description": "the answer", "content": { "application/json": { "schema": output } } },
                    "default": { "description": "an error: the gRPC status and its message", "content":
                        { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
                }
            }}),
        );
    }
    let mut components: serde_json::Map<String, Value> = schemas.into_iter().collect();
    components.insert(
        "Error".into(),
        json!({ "type": "object", "properties": {
            "code": { "type": "integer", "description": "gRPC status code" },
            "status": { "type": "string", "description": "gRPC status name, e.g. INVALID_ARGUMENT" },
            "message": { "type": "string", "description": "what is wrong, naming the field" } } }),
    );
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Touchpoint HTTP/JSON API", "version": crate::VERSION,
            "description": "Every gRPC method of touchpoint.v1 as POST /v1/<method_in_snake_case> with canonical protobuf JSON bodies; the same validation, errors and API keys (Authorization: Bearer <key>)." },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        },
        "security": [ { "bearer": [] } ]
    })
}

/// Adds the schema of `m` and of every message it uses.
fn collect(m: &MessageDescriptor, out: &mut BTreeMap<String, Value>) {
    if out.contains_key(m.full_name()) || well_known(m.full_name()).is_some() {
        return;
    }
    out.insert(m.full_name().to_string(), Value::Null);
    let mut props = serde_json::Map::new();
    for f in m.fields() {
        props.insert(f.json_name().to_string(), field_schema(&f, out));
    }
    out.insert(m.full_name().to_string(), json!({ "type": "object", "properties": props }));
}

fn well_known(name: &str) -> Option<Value> {
    match name {
        "google.protobuf.Timestamp" => Some(json!({ "type": "string", "format": "date-time" })),
        "google.protobuf.Duration" => Some(json!({ "type": "string" })),
        "google.protobuf.Value" | "google.protobuf.Struct" => Some(json!({})),
        _ => None,
    }
}

fn kind_schema(kind: &Kind, out: &mut BTreeMap<String, Value>) -> Value {
    match kind {
        Kind::Double | Kind::Float => json!({ "type": "number" }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({ "type": "integer", "format": "int32" }),
        Kind::Uint32 | Kind::Fixed32 => json!({ "type": "integer", "format": "int64", "minimum": 0 }),
        // Canonical JSON writes 64-bit integers as strings (and reads either).
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            json!({ "type": "string", "format": "int64" })
        }
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::String => json!({ "type": "string" }),
        Kind::Bytes => json!({ "type": "string", "format": "byte" }),
        Kind::Enum(e) => {
            json!({ "type": "string", "enum": e.values().map(|v| v.name().to_string()).collect::<Vec<_>>() })
        }
        Kind::Message(m) => match well_known(m.full_name()) {
            Some(v) => v,
            None => {
                collect(m, out);
                json!({ "$ref": format!("#/components/schemas/{}", m.full_name()) })
            }
        },
    }
}

fn field_schema(f: &FieldDescriptor, out: &mut BTreeMap<String, Value>) -> Value {
    if f.is_map() {
        let Kind::Message(entry) = f.kind() else { return json!({}) };
        let value = entry.map_entry_value_field();
        return json!({ "type": "object", "additionalProperties": kind_schema(&value.kind(), out) });
    }
    let one = kind_schema(&f.kind(), out);
    if f.is_list() { json!({ "type": "array", "items": one }) } else { one }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_has_a_route_and_a_documented_schema() {
        let pool = descriptors();
        let methods = routes(&pool);
        assert!(methods.contains_key("/v1/decide"));
        assert!(methods.contains_key("/v1/get_offer_performance"));
        assert_eq!(methods.len(), super::super::limits::RPCS.len(), "one route per RPC");
        let doc = openapi(&methods);
        for route in methods.keys() {
            let schema = &doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            let name = schema.as_str().unwrap().trim_start_matches("#/components/schemas/");
            assert!(doc["components"]["schemas"][name].is_object(), "{route}: {name}");
        }
        let decide = &doc["components"]["schemas"]["touchpoint.v1.DecideRequest"]["properties"];
        assert_eq!(decide["userId"]["type"], "string");
        assert_eq!(
            doc["paths"]["/v1/decide_batch"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]["type"],
            "array"
        );
    }

    #[test]
    fn statuses_map_like_grpc_gateway() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::ResourceExhausted), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(snake("GetOfferPerformance"), "get_offer_performance");
    }
}
