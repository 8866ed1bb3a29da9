//! The OpenAPI description (crates/vellum/openapi.json): served, complete, and true to the code.
//! Its paths must equal the routes the router lists as it is built (`vellum::http::routes`),
//! every one of which it serves; real responses must match the schemas it documents.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vellum_formats::jose::{Algorithm, SigningKey};

use crate::support::attester::WalletProvider;
use crate::support::provider;
use crate::support::wallet::{PRE_AUTHORIZED_GRANT, Wallet};
use crate::support::{
    API_KEY, TestApp, assert_api_error, spawn_app, spawn_app_with, status_and_json,
};
use crate::support::{create_profile, free_port, offer_id, profile_body};

const DESCRIPTION: &str = "/api/v1/openapi.json";
const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

type Route = (String, String);

/// The routes that also serve Server-Sent Events and take a stream token.
const STREAMS: &[&str] = &["/api/v1/sessions/{sessionId}/events", "/api/v1/events"];

/// The routes the router lists, as it is built for this app.
fn routes(app: &TestApp) -> BTreeSet<Route> {
    let listed = vellum::http::routes(&app.ctx);
    let routes: BTreeSet<Route> = listed
        .iter()
        .map(|route| (route.method.to_string(), route.path.clone()))
        .collect();
    assert_eq!(routes.len(), listed.len(), "a route is listed twice");
    routes
}

/// The description as served, without credentials.
async fn served_description(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.endpoint(DESCRIPTION))
        .send()
        .await
        .expect("GET the description");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = header(&response, CONTENT_TYPE.as_str());
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).expect("the description is JSON")
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn operations(document: &Value) -> BTreeMap<Route, &Value> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("path item");
            item.iter()
                .filter(|(name, _)| HTTP_METHODS.contains(&name.as_str()))
                .map(move |(method, operation)| ((method.to_uppercase(), path.clone()), operation))
        })
        .collect()
}

fn difference(left: &BTreeSet<Route>, right: &BTreeSet<Route>) -> Vec<String> {
    left.difference(right)
        .map(|(method, path)| format!("{method} {path}"))
        .collect()
}

fn concrete(template: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("closing brace") + start;
        path.push_str(&rest[..start]);
        path.push_str("dummy");
        rest = &rest[end + 1..];
    }
    path.push_str(rest);
    path
}

fn is_management(path: &str) -> bool {
    path.starts_with("/api/v1/")
}

/// Every `$ref` (all of them local) names something in the document.
fn unresolved_refs(document: &Value, value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
                let resolved = reference
                    .strip_prefix('#')
                    .and_then(|pointer| document.pointer(pointer));
                if resolved.is_none() {
                    found.push(reference.to_owned());
                }
            }
            object
                .values()
                .for_each(|member| unresolved_refs(document, member, found));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| unresolved_refs(document, item, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_served_description_is_openapi_3_1_and_lists_exactly_the_routes() {
    let app = spawn_app().await;
    let document = served_description(&app).await;
    let version = document["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1."), "openapi is {version}");
    assert!(document["info"]["title"].is_string());
    assert!(document["info"]["version"].is_string());

    let described: BTreeSet<Route> = operations(&document).into_keys().collect();
    let listed = routes(&app);
    assert!(
        described == listed,
        "described but not routed: {:?}; routed but not described: {:?}",
        difference(&described, &listed),
        difference(&listed, &described)
    );

    let mut unresolved = Vec::new();
    unresolved_refs(&document, &document, &mut unresolved);
    assert!(unresolved.is_empty(), "unresolved $refs: {unresolved:?}");
    let mut ids = BTreeSet::new();
    for ((method, path), operation) in operations(&document) {
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(
            ids.insert(id.to_owned()),
            "{method} {path}: operationId {id:?}"
        );
        let responses = operation["responses"].as_object();
        assert!(
            responses.is_some_and(|r| !r.is_empty()),
            "{method} {path} documents no responses"
        );
    }
}

#[tokio::test]
async fn the_description_requires_the_api_key_exactly_where_the_code_does() {
    let app = spawn_app().await;
    let document = served_description(&app).await;
    let schemes = &document["components"]["securitySchemes"];
    for scheme in ["apiKey", "accessToken"] {
        assert_eq!(schemes[scheme]["type"], "http", "{scheme}");
        assert_eq!(schemes[scheme]["scheme"], "bearer", "{scheme}");
    }
    assert_eq!(
        schemes["streamToken"],
        json!({"type": "apiKey", "in": "query", "name": "token",
               "description": schemes["streamToken"]["description"]})
    );
    assert!(
        document.get("security").is_none(),
        "no global security: the public endpoints would inherit it"
    );
    for ((method, path), operation) in operations(&document) {
        let security = operation.get("security").cloned().unwrap_or(json!([]));
        let expected = if STREAMS.contains(&path.as_str()) && method == "GET" {
            json!([{"apiKey": []}, {"streamToken": []}, {"consoleSession": []}])
        } else if is_management(&path) && path != DESCRIPTION {
            json!([{"apiKey": []}, {"consoleSession": []}])
        } else if path == "/metrics" {
            json!([{"apiKey": []}, {"metricsToken": []}, {"consoleSession": []}])
        } else if ["/credential", "/deferred-credential", "/notification"].contains(&path.as_str())
        {
            json!([{"accessToken": []}, {"dpopAccessToken": []}])
        } else {
            json!([])
        };
        assert_eq!(security, expected, "{method} {path}");
        if expected != json!([]) {
            assert!(
                operation["responses"].get("401").is_some(),
                "{method} {path} does not document 401"
            );
        }
    }
}

#[tokio::test]
async fn every_route_in_routes_is_served_by_the_router() {
    let app = spawn_app().await;
    let fallback = |status: StatusCode, body: &Value| {
        (status == StatusCode::NOT_FOUND && body["detail"] == "no such endpoint")
            || (status == StatusCode::METHOD_NOT_ALLOWED
                && body["detail"] == "method not allowed on this endpoint")
    };
    // The fallbacks look as this test assumes.
    let response = app.client.get(app.endpoint("/no/such/endpoint")).send();
    let (status, body) = status_and_json(response.await.expect("request")).await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert!(fallback(status, &body), "{body}");
    let response = app.client.delete(app.endpoint("/health")).send();
    let (status, body) = status_and_json(response.await.expect("request")).await;
    assert_api_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert!(fallback(status, &body), "{body}");

    for (method, template) in routes(&app) {
        let path = concrete(&template);
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let request = if is_management(&path) {
            app.api(method.clone(), &path)
        } else {
            app.client.request(method.clone(), app.endpoint(&path))
        };
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(
            !fallback(status, &body),
            "{method} {template} is not served ({status}): {text}"
        );
    }
}

#[tokio::test]
async fn every_management_route_except_the_description_refuses_a_missing_or_wrong_api_key() {
    let app = spawn_app().await;
    let mut checked = 0;
    let mut paths: Vec<String> = routes(&app)
        .iter()
        .map(|(method, template)| format!("{method} {template}"))
        .collect();
    // Unknown paths under /api/v1, and /api/v1 itself, need the key too: nothing is learned
    // without it.
    for unknown in ["/api/v1/no-such-endpoint", "/api/v1/", "/api/v1"] {
        paths.push(format!("GET {unknown}"));
        paths.push(format!("POST {unknown}"));
    }
    for route in paths {
        let (method, template) = route.split_once(' ').expect("method and path");
        if !is_management(template) || template == DESCRIPTION {
            continue;
        }
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let url = app.endpoint(&concrete(template));
        for key in [None, Some("wrong-key-0123456789-0123456789-0123456789")] {
            let mut request = app.client.request(method.clone(), &url);
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            let response = request
                .json(&json!({"profileId": "demo-identity"}))
                .send()
                .await
                .expect("request");
            assert_eq!(header(&response, WWW_AUTHENTICATE.as_str()), "Bearer");
            let (status, body) = status_and_json(response).await;
            assert_api_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(
                body.as_object().map(|object| object.len()),
                Some(2),
                "{body}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 13, "checked {checked} routes");
}

#[tokio::test]
async fn the_served_description_names_this_issuer_as_its_server_under_its_path() {
    let port = free_port();
    let app = spawn_app_with(json!({
        "public_url": format!("http://127.0.0.1:{port}/tenant"),
        "http": {"port": port},
    }))
    .await;
    let document = served_description(&app).await;
    assert_eq!(document["servers"][0]["url"], app.url.as_str());
    assert_eq!(document["servers"].as_array().map(Vec::len), Some(1));
    for path in ["/api/v1/", "/api/v1", "/api/v1/no-such-endpoint"] {
        let response = app.client.get(app.endpoint(path)).send().await;
        let (status, body) = status_and_json(response.expect("request")).await;
        assert_api_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        let response = app.api(Method::GET, path).send().await.expect("request");
        let (status, body) = status_and_json(response).await;
        assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    // Outside the issuer's path there is no management API to protect.
    let origin = format!("http://127.0.0.1:{port}/api/v1/");
    let response = app.client.get(origin).send().await.expect("request");
    let (status, body) = status_and_json(response).await;
    assert_api_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

// ---------------------------------------------------------------------------------------------
// Real responses against the documented schemas.

/// The JSON Schema (2020-12) subset the description uses. `pattern` and `format` are not
/// checked (no regex engine here); everything else the description says is.
struct Schemas<'a> {
    document: &'a Value,
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        other => panic!("unknown type {other}"),
    }
}

impl<'a> Schemas<'a> {
    fn resolve(&self, reference: &str) -> &'a Value {
        reference
            .strip_prefix('#')
            .and_then(|pointer| self.document.pointer(pointer))
            .unwrap_or_else(|| panic!("unresolved $ref {reference}"))
    }

    fn problems(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        self.check(schema, value, "$", &mut problems);
        problems
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return problems.push(format!("{at}: not allowed")),
            Value::Object(schema) => schema,
            other => panic!("not a schema: {other}"),
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            self.check(self.resolve(reference), value, at, problems);
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
                other => other.as_str().into_iter().collect(),
            };
            if !types.iter().any(|name| type_matches(name, value)) {
                return problems.push(format!("{at}: {value} is not of type {types:?}"));
            }
        }
        if let Some(expected) = schema.get("const")
            && expected != value
        {
            problems.push(format!("{at}: {value} is not {expected}"));
        }
        if let Some(Value::Array(options)) = schema.get("enum")
            && !options.contains(value)
        {
            problems.push(format!("{at}: {value} is not one of {options:?}"));
        }
        let limit = |name: &str| schema.get(name).and_then(Value::as_u64);
        match value {
            Value::Object(object) => {
                for name in schema
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !object.contains_key(name) {
                        problems.push(format!("{at}: {name} is missing"));
                    }
                }
                let properties = schema.get("properties").and_then(Value::as_object);
                for (name, member) in object {
                    let member_at = format!("{at}.{name}");
                    match (
                        properties.and_then(|p| p.get(name)),
                        schema.get("additionalProperties"),
                    ) {
                        (Some(member_schema), _) | (None, Some(member_schema)) => {
                            self.check(member_schema, member, &member_at, problems);
                        }
                        (None, None) => {}
                    }
                }
            }
            Value::Array(items) => {
                let count = items.len() as u64;
                if limit("minItems").is_some_and(|min| count < min)
                    || limit("maxItems").is_some_and(|max| count > max)
                {
                    problems.push(format!("{at}: {count} items"));
                }
                if let Some(item_schema) = schema.get("items") {
                    for (index, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{at}[{index}]"), problems);
                    }
                }
            }
            Value::String(text) => {
                let length = text.chars().count() as u64;
                if limit("minLength").is_some_and(|min| length < min)
                    || limit("maxLength").is_some_and(|max| length > max)
                {
                    problems.push(format!("{at}: length {length}"));
                }
            }
            Value::Number(number) => {
                let number = number.as_f64().unwrap_or(f64::NAN);
                let bound = |name: &str| schema.get(name).and_then(Value::as_f64);
                if bound("minimum").is_some_and(|min| number < min)
                    || bound("maximum").is_some_and(|max| number > max)
                {
                    problems.push(format!("{at}: {number} out of range"));
                }
            }
            _ => {}
        }
        for sub in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.check(sub, value, at, problems);
        }
        let passing = |name: &str| {
            schema.get(name).and_then(Value::as_array).map(|subs| {
                subs.iter()
                    .filter(|sub| {
                        let mut inner = Vec::new();
                        self.check(sub, value, at, &mut inner);
                        inner.is_empty()
                    })
                    .count()
            })
        };
        if passing("anyOf") == Some(0) {
            problems.push(format!("{at}: matches none of anyOf"));
        }
        if passing("oneOf").is_some_and(|count| count != 1) {
            problems.push(format!("{at}: does not match exactly one of oneOf"));
        }
        if let Some(not) = schema.get("not")
            && self.problems(not, value).is_empty()
        {
            problems.push(format!("{at}: matches a schema it must not"));
        }
    }
}

/// Checks responses against the description and records which operations were exercised.
struct Documented {
    document: Value,
    exercised: BTreeSet<Route>,
}

impl Documented {
    fn operation(&self, method: &str, template: &str) -> &Value {
        let operation = &self.document["paths"][template][method.to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} is not described"
        );
        operation
    }

    fn schemas(&self) -> Schemas<'_> {
        Schemas {
            document: &self.document,
        }
    }

    fn follow<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => self.schemas().resolve(reference),
            None => value,
        }
    }

    /// The documented JSON request example; it must satisfy the documented request schema.
    fn request_example(&self, method: &str, template: &str) -> Value {
        let media = &self.operation(method, template)["requestBody"]["content"]["application/json"];
        let example = media["example"].clone();
        assert!(example.is_object(), "{method} {template} has no example");
        let problems = self.schemas().problems(&media["schema"], &example);
        assert!(
            problems.is_empty(),
            "{method} {template} example: {problems:?}"
        );
        example
    }

    /// Asserts that `body` is a valid request body of the operation.
    fn check_request(&self, method: &str, template: &str, body: &Value) {
        let content = &self.operation(method, template)["requestBody"]["content"];
        let schema = &content["application/json"]["schema"];
        let problems = self.schemas().problems(schema, body);
        assert!(
            problems.is_empty(),
            "{method} {template} request {body}: {problems:?}"
        );
    }

    /// For an event stream, which never ends: the status and content type are documented.
    fn check_stream(&mut self, method: &str, template: &str, response: Response) -> StatusCode {
        let status = response.status();
        let responses = &self.operation(method, template)["responses"];
        let documented = responses
            .get(status.as_str())
            .unwrap_or_else(|| panic!("{method} {template}: {status} is not documented"));
        let content_type = header(&response, CONTENT_TYPE.as_str());
        let media = content_type.split(';').next().unwrap_or_default().trim();
        assert_eq!(media, "text/event-stream", "{method} {template} {status}");
        assert!(
            self.follow(documented)["content"].get(media).is_some(),
            "{method} {template} {status}: {media:?} is not documented"
        );
        if status.is_success() {
            self.exercised
                .insert((method.to_owned(), template.to_owned()));
        }
        status
    }

    /// Asserts that the response is documented for the operation: its status, content type,
    /// headers and body. Returns the status and the JSON body.
    async fn check(
        &mut self,
        method: &str,
        template: &str,
        response: Response,
    ) -> (StatusCode, Value) {
        let status = response.status();
        let responses = &self.operation(method, template)["responses"];
        let range = format!("{}XX", status.as_u16() / 100);
        let documented = responses
            .get(status.as_str())
            .or_else(|| responses.get(&range))
            .unwrap_or_else(|| panic!("{method} {template}: {status} is not documented"));
        let documented = self.follow(documented).clone();
        for (name, spec) in documented["headers"].as_object().into_iter().flatten() {
            let spec = self.follow(spec);
            let actual = header(&response, name);
            assert!(
                !actual.is_empty(),
                "{method} {template} {status}: no {name}"
            );
            if let Some(expected) = spec["schema"].get("const") {
                assert_eq!(actual, *expected, "{method} {template} {status}: {name}");
            }
        }
        let content_type = header(&response, CONTENT_TYPE.as_str());
        let text = response.text().await.expect("body");
        let body = match documented["content"].as_object() {
            None => {
                assert!(text.is_empty(), "{method} {template} {status}: body {text}");
                Value::Null
            }
            Some(content) => {
                let media = content_type.split(';').next().unwrap_or_default().trim();
                let schema = &content.get(media).unwrap_or_else(|| {
                    panic!("{method} {template} {status}: {media:?} is not documented")
                })["schema"];
                // A signed document (JWT, CWT) is a string or bytes, not JSON.
                if !media.ends_with("json") {
                    assert_eq!(schema["type"], "string", "{method} {template} {status}");
                    assert!(!text.is_empty(), "{method} {template} {status}: no body");
                    if status.is_success() {
                        self.exercised
                            .insert((method.to_owned(), template.to_owned()));
                    }
                    return (status, Value::String(text));
                }
                let body: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{method} {template} {status}: {text}"));
                let problems = self.schemas().problems(schema, &body);
                assert!(
                    problems.is_empty(),
                    "{method} {template} {status} does not match its schema: {problems:?}\n{body}"
                );
                body
            }
        };
        // A redirect is the successful answer of the browser-facing endpoints.
        if status.is_success() || status.is_redirection() {
            self.exercised
                .insert((method.to_owned(), template.to_owned()));
        }
        (status, body)
    }
}

/// `example` with one optional member set to null, for every optional member that `schema`
/// names, in `example` and in every object of it that the schema describes: (member path,
/// body).
fn with_a_null_member(
    schemas: &Schemas<'_>,
    schema: &Value,
    example: &Value,
    at: &str,
) -> Vec<(String, Value)> {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => schemas.resolve(reference),
        None => schema,
    };
    let (Some(properties), Some(members)) = (
        schema.get("properties").and_then(Value::as_object),
        example.as_object(),
    ) else {
        return Vec::new();
    };
    let required = schema["required"].as_array().cloned().unwrap_or_default();
    let mut bodies = Vec::new();
    for (name, property) in properties {
        let path = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        if !required.contains(&Value::from(name.as_str())) {
            let mut body = example.clone();
            body[name] = Value::Null;
            bodies.push((path.clone(), body));
        }
        if let Some(member) = members.get(name) {
            for (inner_path, inner) in with_a_null_member(schemas, property, member, &path) {
                let mut body = example.clone();
                body[name] = inner;
                bodies.push((inner_path, body));
            }
        }
    }
    bodies
}

#[tokio::test]
async fn no_optional_member_of_a_management_request_may_be_given_as_null() {
    let app = spawn_app().await;
    let document = served_description(&app).await;
    let schemas = Schemas {
        document: &document,
    };
    let example = |template: &str| {
        document["paths"][template]["post"]["requestBody"]["content"]["application/json"]["example"]
            .clone()
    };
    let profile = example("/api/v1/profiles");
    let profile_path = format!("/api/v1/profiles/{}", profile["id"].as_str().expect("id"));
    let import = |algorithm| {
        let jwk = SigningKey::generate(algorithm).private_jwk().to_value();
        json!({"id": "imported", "jwk": jwk})
    };
    let mut pinned = example("/api/v1/offers");
    pinned["runtimeOverrides"]["expectedCredentialProofKeyJwk"] =
        SigningKey::generate(Algorithm::EdDSA)
            .public_jwk()
            .to_value();
    let post =
        |template: &str, body: Value| ("POST", template.to_owned(), template.to_owned(), body);
    let certificates = "/api/v1/keys/{keyId}/certificates";
    let requests = [
        post("/api/v1/keys", example("/api/v1/keys")),
        post("/api/v1/keys/import", import(Algorithm::ES256)),
        // An OKP key has no y: given as null, it is refused all the same.
        post("/api/v1/keys/import", import(Algorithm::EdDSA)),
        (
            "POST",
            certificates.to_owned(),
            "/api/v1/keys/demo-es256/certificates".to_owned(),
            example(certificates),
        ),
        post("/api/v1/profiles", profile.clone()),
        (
            "PUT",
            "/api/v1/profiles/{profileId}".to_owned(),
            profile_path,
            profile,
        ),
        post("/api/v1/offers", example("/api/v1/offers")),
        post("/api/v1/offers", pinned),
        post("/api/v1/events/tokens", example("/api/v1/events/tokens")),
    ];
    let mut checked = 0;
    for (method, template, path, body) in requests {
        let operation = &document["paths"][&template][method.to_lowercase()];
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        for (member, body) in with_a_null_member(&schemas, schema, &body, "") {
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let response = app.api(method.clone(), &path).json(&body).send().await;
            let (status, reply) = status_and_json(response.expect("request")).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{method} {template} with {member} = null: {reply}"
            );
            let name = member.rsplit('.').next().expect("a name");
            assert!(
                reply["detail"]
                    .as_str()
                    .is_some_and(|detail| detail.contains(name)),
                "{method} {template} with {member} = null does not name it: {reply}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "checked {checked} members");
}

#[tokio::test]
async fn every_management_request_body_must_be_a_json_object() {
    let app = spawn_app().await;
    let document = served_description(&app).await;
    let mut checked = 0;
    for ((method, template), operation) in operations(&document) {
        let json_body = operation["requestBody"]["content"]
            .get("application/json")
            .is_some();
        if !is_management(&template) || !json_body {
            continue;
        }
        // serde alone would read `[]` as `{}`, and `["demo-identity"]` as an offer request.
        for body in [
            json!([]),
            json!(["demo-identity"]),
            json!("x"),
            json!(7),
            Value::Null,
        ] {
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            let response = app
                .api(method.clone(), &concrete(&template))
                .json(&body)
                .send();
            let (status, reply) = status_and_json(response.await.expect("request")).await;
            assert_api_error(status, &reply, StatusCode::BAD_REQUEST, "invalid_request");
            checked += 1;
        }
    }
    assert!(checked >= 7 * 5, "checked {checked}");
}

#[tokio::test]
async fn real_responses_match_the_documented_schemas_and_examples() {
    let wallet_provider = WalletProvider::new();
    let config = json!({
        "client_attestation": wallet_provider.settings(json!({})),
        "credential_configurations": {"degree": {
            "format": "jwt_vc_json",
            "credential_definition": {"type": ["VerifiableCredential", "Degree"]},
            "credential_signing_alg_values_supported": ["ES256"],
            "cryptographic_binding_methods_supported": ["did:jwk"],
            "proof_signing_alg_values_supported": ["ES256"],
        }},
    });
    let (app, _provider) = provider::app_with_provider_over(config, json!({}), None).await;
    let mut api = Documented {
        document: served_description(&app).await,
        exercised: BTreeSet::new(),
    };
    let get = |path: &str| app.client.get(app.endpoint(path)).send();

    // Discovery and operations.
    for path in [
        "/.well-known/openid-credential-issuer",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwt-vc-issuer",
        "/.well-known/did.json",
        "/did.json",
        "/jwks",
        "/health",
        DESCRIPTION,
    ] {
        let (status, _) = api.check("GET", path, get(path).await.expect("GET")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let response = app
        .client
        .get(app.endpoint("/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await;
    let (status, _) = api
        .check("GET", "/metrics", response.expect("metrics"))
        .await;
    assert_eq!(status, StatusCode::OK, "/metrics");

    // Keys.
    let example = api.request_example("POST", "/api/v1/keys");
    let post = |path: &str, body: &Value| app.api(Method::POST, path).json(body).send();
    let response = post("/api/v1/keys", &example).await.expect("request");
    let (status, key) = api.check("POST", "/api/v1/keys", response).await;
    assert_eq!(status, StatusCode::CREATED);
    let response = post("/api/v1/keys", &example).await.expect("request");
    let (status, body) = api.check("POST", "/api/v1/keys", response).await;
    assert_api_error(status, &body, StatusCode::CONFLICT, "key_exists");
    let response = post("/api/v1/keys", &json!({"keyType": "RSA"})).await;
    let (status, body) = api
        .check("POST", "/api/v1/keys", response.expect("request"))
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_key_type");
    let unsent = app
        .api(Method::POST, "/api/v1/keys")
        .body("{}")
        .send()
        .await
        .expect("request");
    let (status, body) = api.check("POST", "/api/v1/keys", unsent).await;
    assert_api_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let jwk = SigningKey::generate(Algorithm::EdDSA)
        .private_jwk()
        .to_value();
    let import = json!({"id": "imported-ed25519", "jwk": jwk});
    api.check_request("POST", "/api/v1/keys/import", &import);
    let response = post("/api/v1/keys/import", &import).await.expect("request");
    let (status, imported) = api.check("POST", "/api/v1/keys/import", response).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(imported["publicJwk"].get("d").is_none());
    let mut public = jwk.clone();
    public.as_object_mut().expect("jwk").remove("d");
    let response = post("/api/v1/keys/import", &json!({"jwk": public})).await;
    let (status, body) = api
        .check("POST", "/api/v1/keys/import", response.expect("request"))
        .await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_jwk");
    let (status, keys) = api
        .check(
            "GET",
            "/api/v1/keys",
            app.api(Method::GET, "/api/v1/keys")
                .send()
                .await
                .expect("GET"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        keys.as_array().is_some_and(|keys| keys.len() >= 3),
        "{keys}"
    );
    for id in [key["id"].as_str().expect("id"), "no-such-key"] {
        let path = format!("/api/v1/keys/{id}");
        let response = app.api(Method::GET, &path).send().await.expect("GET");
        api.check("GET", "/api/v1/keys/{keyId}", response).await;
    }

    // Certificates: the documented IACA example, a document signer under it, and an error.
    let template = "/api/v1/keys/{keyId}/certificates";
    let ca = key["id"].as_str().expect("id");
    let example = api.request_example("POST", template);
    let response = post(&format!("/api/v1/keys/{ca}/certificates"), &example)
        .await
        .expect("request");
    let (status, root) = api.check("POST", template, response).await;
    assert_eq!(status, StatusCode::CREATED);
    let leaf = json!({"profile": "MDOC_DOCUMENT_SIGNER", "commonName": "DS",
                      "issuerKeyId": ca, "issuerCertificate": root["certificate"]});
    for (body, expected) in [
        (leaf, StatusCode::CREATED),
        (
            json!({"profile": "MDOC_DOCUMENT_SIGNER", "commonName": "DS"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let response = post("/api/v1/keys/demo-es256/certificates", &body)
            .await
            .expect("request");
        let (status, _) = api.check("POST", template, response).await;
        assert_eq!(status, expected);
    }

    // Profiles: create, version, read, and the errors on the way.
    let profile_path = "/api/v1/profiles/{profileId}";
    let mut profile = api.request_example("POST", "/api/v1/profiles");
    let id = profile["id"].as_str().expect("example id").to_owned();
    let path = format!("/api/v1/profiles/{id}");
    let response = post("/api/v1/profiles", &profile).await.expect("request");
    let (status, created) = api.check("POST", "/api/v1/profiles", response).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);
    let response = post("/api/v1/profiles", &profile).await.expect("request");
    let (status, body) = api.check("POST", "/api/v1/profiles", response).await;
    assert_api_error(status, &body, StatusCode::CONFLICT, "profile_exists");
    let mut bad = profile.clone();
    bad["mapping"] = json!({"jti": "<nonsense>"});
    bad["id"] = json!("another");
    let response = post("/api/v1/profiles", &bad).await.expect("request");
    let (status, body) = api.check("POST", "/api/v1/profiles", response).await;
    assert_api_error(status, &body, StatusCode::BAD_REQUEST, "invalid_profile");
    profile["name"] = json!("Employee badge, second edition");
    profile["issuerKeyId"] = key["id"].clone();
    api.check_request("PUT", profile_path, &profile);
    let response = app.api(Method::PUT, &path).json(&profile).send().await;
    let (status, updated) = api
        .check("PUT", profile_path, response.expect("request"))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    for query in ["", "?version=1", "?version=7", "?version=one"] {
        let response = app
            .api(Method::GET, &format!("{path}{query}"))
            .send()
            .await
            .expect("GET");
        api.check("GET", profile_path, response).await;
    }
    let response = app.api(Method::GET, "/api/v1/profiles").send().await;
    let (status, _) = api
        .check("GET", "/api/v1/profiles", response.expect("GET"))
        .await;
    assert_eq!(status, StatusCode::OK);

    // An offer with a tx_code, from the documented example, then the whole wallet flow.
    let offer_request = api.request_example("POST", "/api/v1/offers");
    let response = post("/api/v1/offers", &offer_request)
        .await
        .expect("request");
    let (status, offer) = api.check("POST", "/api/v1/offers", response).await;
    assert_eq!(status, StatusCode::CREATED, "{offer}");
    let offer_uri = offer["credentialOfferUri"].as_str().expect("offer URI");
    let offer_path = format!("/api/v1/offers/{}", offer_id(&offer));
    for (template, path) in [
        ("/api/v1/offers/{offerId}", offer_path.clone()),
        ("/api/v1/offers/{offerId}/qr", format!("{offer_path}/qr")),
        ("/api/v1/overview", "/api/v1/overview".to_owned()),
    ] {
        let response = app.api(Method::GET, &path).send().await.expect("GET");
        let (status, _) = api.check("GET", template, response).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let response = app
        .api(Method::GET, "/api/v1/overview?windowSeconds=0")
        .send()
        .await
        .expect("GET");
    let (status, _) = api.check("GET", "/api/v1/overview", response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let handle = "/credential-offer/{handle}";
    let response = app.client.get(offer_uri).send().await.expect("GET offer");
    let (status, resolved) = api.check("GET", handle, response).await;
    assert_eq!(status, StatusCode::OK);
    let code = Wallet::code(&resolved);
    let wallet = Wallet::new();
    let right = offer["txCodeValue"].as_str().expect("txCodeValue");
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mut token = String::new();
    for (tx_code, expected) in [
        (wrong, StatusCode::BAD_REQUEST),
        (right, StatusCode::OK),
        (right, StatusCode::BAD_REQUEST),
    ] {
        let form = [
            ("grant_type", PRE_AUTHORIZED_GRANT),
            ("pre-authorized_code", code.as_str()),
            ("tx_code", tx_code),
        ];
        let response = wallet.token_request(&app, &form).await;
        let (status, body) = api.check("POST", "/token", response).await;
        assert_eq!(status, expected, "{body}");
        if let Some(access_token) = body["access_token"].as_str() {
            token = access_token.to_owned();
        }
    }
    let response = wallet
        .token_request(&app, &[("pre-authorized_code", code.as_str())])
        .await;
    let (status, _) = api.check("POST", "/token", response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = app.client.get(offer_uri).send().await.expect("GET offer");
    let (status, _) = api.check("GET", handle, response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = app.api(Method::GET, &offer_path).send().await.expect("GET");
    let (status, _) = api.check("GET", "/api/v1/offers/{offerId}", response).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let response = app.client.post(app.endpoint("/nonce")).send().await;
    let (status, nonce) = api.check("POST", "/nonce", response.expect("nonce")).await;
    assert_eq!(status, StatusCode::OK);
    let nonce = nonce["c_nonce"].as_str().expect("c_nonce");
    let configuration = created["credentialConfigurationId"]
        .as_str()
        .expect("configuration");
    let request = Wallet::request_body(configuration, &wallet.proof(&app, nonce));
    api.check_request("POST", "/credential", &request);
    let anonymous = app
        .client
        .post(app.endpoint("/credential"))
        .json(&request)
        .send()
        .await
        .expect("request");
    let (status, _) = api.check("POST", "/credential", anonymous).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let no_proof = json!({"credential_configuration_id": configuration});
    let response = wallet.credential_request(&app, &token, &no_proof).await;
    let (status, _) = api.check("POST", "/credential", response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = wallet.credential_request(&app, &token, &request).await;
    let (status, issued) = api.check("POST", "/credential", response).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let response = wallet.credential_request(&app, &token, &request).await;
    let (status, _) = api.check("POST", "/credential", response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The wallet's notification about what it received.
    let notify = |body: Value| {
        let request = app
            .client
            .post(app.endpoint("/notification"))
            .bearer_auth(&token)
            .json(&body);
        async move { request.send().await.expect("notification") }
    };
    let report = json!({"notification_id": issued["notification_id"], "event": "credential_accepted",
                        "event_description": "Stored."});
    api.check_request("POST", "/notification", &report);
    let (status, _) = api
        .check("POST", "/notification", notify(report).await)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let unknown = json!({"notification_id": "unknown", "event": "credential_deleted"});
    let (status, _) = api
        .check("POST", "/notification", notify(unknown).await)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A by-value offer, then sessions, paging and events.
    let by_value = json!({"profileId": id, "valueMode": "BY_VALUE", "txCodeValue": "AB12-xy"});
    api.check_request("POST", "/api/v1/offers", &by_value);
    let response = post("/api/v1/offers", &by_value).await.expect("request");
    let (status, body) = api.check("POST", "/api/v1/offers", response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for bad in [
        json!({"profileId": id, "authMethod": "AUTHORIZED"}),
        json!({"profileId": id, "txCode": {"length": 3}}),
        json!({"profileId": "no-such-profile"}),
    ] {
        let response = post("/api/v1/offers", &bad).await.expect("request");
        let (status, body) = api.check("POST", "/api/v1/offers", response).await;
        assert!(status.is_client_error(), "{body}");
    }
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let mut path = "/api/v1/sessions?limit=1".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let response = app.api(Method::GET, &path).send().await.expect("GET");
        let (status, page) = api.check("GET", "/api/v1/sessions", response).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen += page["items"].as_array().map_or(0, Vec::len);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 2, "two offers were made");
    let response = app
        .api(Method::GET, "/api/v1/sessions?status=DONE")
        .send()
        .await;
    let (status, _) = api
        .check("GET", "/api/v1/sessions", response.expect("GET"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let session_path = "/api/v1/sessions/{sessionId}";
    let offer_id = offer["offerId"].as_str().expect("offerId");
    for id in [offer_id, "5f0c1f0e-0000-4000-8000-000000000000"] {
        let path = format!("/api/v1/sessions/{id}");
        let response = app.api(Method::GET, &path).send().await.expect("GET");
        api.check("GET", session_path, response).await;
        let response = app
            .api(Method::GET, &format!("{path}/events?limit=1000"))
            .send()
            .await
            .expect("GET");
        api.check("GET", "/api/v1/sessions/{sessionId}/events", response)
            .await;
    }
    // Redelivery: every failed delivery, one event, and an unknown event.
    let (_, events) = app
        .api_get(&format!("/api/v1/sessions/{offer_id}/events"))
        .await;
    let event_id = events["items"][0]["eventId"].as_str().expect("eventId");
    for (path, template, expected) in [
        (
            format!("/api/v1/sessions/{offer_id}/events/redeliver"),
            "/api/v1/sessions/{sessionId}/events/redeliver",
            StatusCode::ACCEPTED,
        ),
        (
            format!("/api/v1/sessions/{offer_id}/events/{event_id}/redeliver"),
            "/api/v1/sessions/{sessionId}/events/{eventId}/redeliver",
            StatusCode::ACCEPTED,
        ),
        (
            format!("/api/v1/sessions/{offer_id}/events/nope/redeliver"),
            "/api/v1/sessions/{sessionId}/events/{eventId}/redeliver",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = app.api(Method::POST, &path).send().await.expect("POST");
        let (status, _) = api.check("POST", template, response).await;
        assert_eq!(status, expected);
    }
    let path_events = format!("/api/v1/sessions/{offer_id}/events?limit=0");
    let response = app
        .api(Method::GET, &path_events)
        .send()
        .await
        .expect("GET");
    let (status, _) = api
        .check("GET", "/api/v1/sessions/{sessionId}/events", response)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Event streams: the whole log as JSON, stream tokens, and both streams with a token and
    // with the API key.
    let response = app
        .api(Method::GET, "/api/v1/events?after=0&limit=2")
        .send();
    let (status, page) = api
        .check("GET", "/api/v1/events", response.await.expect("GET"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let tokens = "/api/v1/events/tokens";
    api.request_example("POST", tokens);
    let mut stream_tokens = Vec::new();
    for body in [
        json!({"sessionId": offer_id}),
        json!({"expiresInSeconds": 60}),
    ] {
        api.check_request("POST", tokens, &body);
        let response = post(tokens, &body).await.expect("request");
        let (status, token) = api.check("POST", tokens, response).await;
        assert_eq!(status, StatusCode::CREATED, "{token}");
        stream_tokens.push(token["token"].as_str().expect("token").to_owned());
    }
    for body in [
        json!({"expiresInSeconds": 7200}),
        json!({"sessionId": "5f0c1f0e-0000-4000-8000-000000000000"}),
    ] {
        let response = post(tokens, &body).await.expect("request");
        let (status, _) = api.check("POST", tokens, response).await;
        assert!(status.is_client_error());
    }
    let session_events = format!("/api/v1/sessions/{offer_id}/events");
    for (template, path, token) in [
        (STREAMS[0], session_events.as_str(), &stream_tokens[0]),
        (STREAMS[1], "/api/v1/events", &stream_tokens[1]),
    ] {
        let stream = |request: reqwest::RequestBuilder| {
            request
                .header(reqwest::header::ACCEPT, "text/event-stream")
                .send()
        };
        let with_token = app
            .client
            .get(app.endpoint(path))
            .query(&[("token", token)]);
        let response = stream(with_token).await.expect("GET");
        assert_eq!(api.check_stream("GET", template, response), StatusCode::OK);
        let response = stream(app.api(Method::GET, path)).await.expect("GET");
        assert_eq!(api.check_stream("GET", template, response), StatusCode::OK);
        let wrong = format!("{path}?token=forged");
        let response = stream(app.client.get(app.endpoint(&wrong))).await;
        let (status, body) = api.check("GET", template, response.expect("GET")).await;
        assert_api_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }

    // Deactivation.
    for expected in [StatusCode::NO_CONTENT, StatusCode::NO_CONTENT] {
        let response = app.api(Method::DELETE, &path).send().await.expect("DELETE");
        let (status, _) = api.check("DELETE", profile_path, response).await;
        assert_eq!(status, expected);
    }
    let response = app.api(Method::PUT, &path).json(&profile).send().await;
    let (status, body) = api
        .check("PUT", profile_path, response.expect("request"))
        .await;
    assert_api_error(status, &body, StatusCode::CONFLICT, "profile_inactive");
    let response = post("/api/v1/offers", &json!({"profileId": id})).await;
    let (status, body) = api
        .check("POST", "/api/v1/offers", response.expect("request"))
        .await;
    assert_api_error(status, &body, StatusCode::CONFLICT, "profile_inactive");
    let response = app.client.get(app.endpoint("/api/v1/keys")).send().await;
    let (status, _) = api
        .check("GET", "/api/v1/keys", response.expect("GET"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The authorization code flow, the holder logging in at a real provider.
    let profile = create_profile(
        &app,
        profile_body(json!({
            "identityProvider": provider::PROVIDER,
            "idTokenClaimsMapping": {"/given_name": "/given_name"},
        })),
    )
    .await;
    let created = app
        .create_offer(json!({"profileId": profile["profileId"], "authMethod": "AUTHORIZED"}))
        .await;
    let offer = Wallet::new()
        .resolve(&app, created["credentialOffer"].as_str().expect("offer"))
        .await;
    let verifier = "verifier-of-the-openapi-test-0123456789-abcdef";
    let challenge = vellum_formats::jose::b64(Sha256::digest(verifier.as_bytes()));
    let form = [
        ("response_type", "code"),
        ("client_id", "wallet"),
        ("redirect_uri", "https://wallet.example/cb"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        (
            "issuer_state",
            offer["grants"]["authorization_code"]["issuer_state"]
                .as_str()
                .expect("issuer_state"),
        ),
    ];
    let par = || app.client.post(app.endpoint("/par")).form(&form);
    let (status, refused) = api
        .check("POST", "/par", par().send().await.expect("PAR"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "invalid_client_attestation");
    let response = app.client.post(app.endpoint("/challenge")).send().await;
    let (status, _) = api
        .check("POST", "/challenge", response.expect("challenge"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let instance = wallet_provider.instance(&app, "wallet");
    let response = instance.attach(&app, par()).send().await;
    let (status, pushed) = api.check("POST", "/par", response.expect("PAR")).await;
    assert_eq!(status, StatusCode::CREATED, "{pushed}");
    let response = app
        .client
        .get(app.endpoint("/authorize"))
        .query(&[
            ("client_id", "wallet"),
            (
                "request_uri",
                pushed["request_uri"].as_str().expect("request_uri"),
            ),
        ])
        .send()
        .await
        .expect("authorize");
    let to_provider = header(&response, "location");
    let (status, _) = api.check("GET", "/authorize", response).await;
    assert_eq!(status, StatusCode::FOUND);
    let callback =
        provider::log_in(&to_provider, "alice", &app.endpoint("/authorize/callback")).await;
    let response = app.client.get(callback).send().await.expect("callback");
    let to_wallet = header(&response, "location");
    let (status, _) = api.check("GET", "/authorize/callback", response).await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(
        to_wallet.starts_with("https://wallet.example/cb?code="),
        "{to_wallet}"
    );

    // Status lists: a Token Status List (JWT and CWT, and 304), a Bitstring list per purpose.
    let sd_jwt = create_profile(
        &app,
        profile_body(json!({"credentialStatus": "STATUS_LIST", "x5Chain": "development"})),
    )
    .await;
    let created = app
        .create_offer(json!({"profileId": sd_jwt["profileId"]}))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    let payload = vellum_formats::jose::UnverifiedJws::parse(
        credential.split('~').next().expect("issuer-signed JWT"),
    )
    .expect("JWS")
    .payload;
    let uri = payload["status"]["status_list"]["uri"]
        .as_str()
        .expect("status list uri")
        .to_owned();
    let path = uri.strip_prefix(&app.url).expect("under the issuer URL");
    let template = "/status-lists/{listId}";
    let mut etag = String::new();
    for accept in ["application/statuslist+jwt", "application/statuslist+cwt"] {
        let response = app.client.get(&uri).header("Accept", accept).send().await;
        let response = response.expect("status list");
        etag = header(&response, "etag");
        let (status, _) = api.check("GET", template, response).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let response = app
        .client
        .get(&uri)
        .header("Accept", "application/statuslist+cwt")
        .header("If-None-Match", &etag)
        .send()
        .await;
    let (status, _) = api
        .check("GET", template, response.expect("conditional"))
        .await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let session = created["offerId"].as_str().expect("offerId").to_owned();
    let response = app
        .client
        .get(app.endpoint(&format!("/api/v1/sessions/{session}/credentials")))
        .bearer_auth(API_KEY)
        .send()
        .await;
    let (status, listed) = api
        .check(
            "GET",
            "/api/v1/sessions/{sessionId}/credentials",
            response.expect("credentials"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let credential_id = listed["items"][0]["id"].as_str().expect("id").to_owned();
    let response = app
        .client
        .post(app.endpoint(&format!("/api/v1/credentials/{credential_id}/status")))
        .bearer_auth(API_KEY)
        .json(&json!({"status": "SUSPENDED", "reason": "checked by the description test"}))
        .send()
        .await;
    let (status, view) = api
        .check(
            "POST",
            "/api/v1/credentials/{credentialId}/status",
            response.expect("change"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let response = app
        .client
        .post(app.endpoint(&format!("/api/v1/sessions/{session}/credentials/status")))
        .bearer_auth(API_KEY)
        .json(&json!({"status": "VALID"}))
        .send()
        .await;
    let (status, changed) = api
        .check(
            "POST",
            "/api/v1/sessions/{sessionId}/credentials/status",
            response.expect("change all"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");

    // Deferred issuance: 202 with a transaction, the backend completes it, the wallet fetches.
    let (later, token) = crate::support::session_with_token(
        &app,
        json!({"profileId": crate::support::DEMO_PROFILE, "runtimeOverrides": {"deferred": true}}),
    )
    .await;
    let holder = Wallet::new();
    let nonce = holder.nonce(&app).await;
    let request = Wallet::request_body(configuration, &holder.proof(&app, &nonce));
    let response = holder.credential_request(&app, &token, &request).await;
    let (status, deferred) = api.check("POST", "/credential", response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deferred}");
    let fetch = json!({"transaction_id": deferred["transaction_id"]});
    api.check_request("POST", "/deferred-credential", &fetch);
    let fetch_now = || {
        let request = app
            .client
            .post(app.endpoint("/deferred-credential"))
            .bearer_auth(&token)
            .json(&fetch);
        async move { request.send().await.expect("deferred credential") }
    };
    let (status, pending) = api
        .check("POST", "/deferred-credential", fetch_now().await)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let deferred_path = format!("/api/v1/sessions/{later}/deferred");
    let response = app
        .api(Method::GET, &deferred_path)
        .send()
        .await
        .expect("deferred view");
    let (status, view) = api
        .check("GET", "/api/v1/sessions/{sessionId}/deferred", response)
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let completion = json!({"status": "READY", "credentialData": {"given_name": "Later"}});
    api.check_request("POST", "/api/v1/sessions/{sessionId}/deferred", &completion);
    let response = post(&deferred_path, &completion).await.expect("complete");
    let (status, view) = api
        .check("POST", "/api/v1/sessions/{sessionId}/deferred", response)
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let response = post(&deferred_path, &completion).await.expect("again");
    let (status, _) = api
        .check("POST", "/api/v1/sessions/{sessionId}/deferred", response)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, fetched) = api
        .check("POST", "/deferred-credential", fetch_now().await)
        .await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    let (status, _) = api
        .check("POST", "/deferred-credential", fetch_now().await)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let response = get("/status-lists/no-such-list")
        .await
        .expect("missing list");
    let (status, _) = api.check("GET", template, response).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let degree = create_profile(
        &app,
        json!({"name": "Degree", "credentialConfigurationId": "degree", "issuerKeyId": "demo-es256",
               "issuerDid": "did:jwk", "credentialStatus": "STATUS_LIST",
               "credentialData": {"credentialSubject": {"degree": "BSc"}}}),
    )
    .await;
    let created = app
        .create_offer(json!({"profileId": degree["profileId"]}))
        .await;
    let credential = Wallet::new().complete(&app, &created).await;
    let payload = vellum_formats::jose::UnverifiedJws::parse(&credential)
        .expect("JWS")
        .payload;
    for entry in payload["vc"]["credentialStatus"]
        .as_array()
        .expect("entries")
    {
        let uri = entry["statusListCredential"].as_str().expect("uri");
        let response = app.client.get(uri).send().await.expect("bitstring list");
        let (status, _) = api
            .check("GET", "/status-lists/{listId}/{purpose}", response)
            .await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }

    let missed = difference(&routes(&app), &api.exercised);
    assert!(
        missed.is_empty(),
        "no successful response checked for {missed:?}"
    );
}
