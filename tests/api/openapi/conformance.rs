//! Checking a live response against its documented response: status,
//! headers, media type, required fields and error codes.

use serde_json::Value;

use crate::helpers::header;

/// `openapi.yaml`, parsed.
pub fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml");
    serde_yaml_ng::from_str(&text).expect("valid YAML")
}

/// Follows a local `$ref` (`#/components/...`), repeatedly.
pub fn resolve<'a>(spec: &'a Value, mut node: &'a Value) -> &'a Value {
    while let Some(pointer) = node.get("$ref").and_then(Value::as_str) {
        node = spec
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {pointer}"));
    }
    node
}

pub struct Case {
    pub method: &'static str,
    pub path: &'static str,
    pub status: u16,
    pub response: reqwest::Response,
}

/// Checks a live response against the operation's documented response.
pub async fn check(spec: &Value, case: Case) {
    let Case {
        method,
        path,
        status,
        response,
    } = case;
    let what = format!("{method} {path} → {status}");
    assert_eq!(response.status().as_u16(), status, "{what}");
    let operation = &spec["paths"][path][method.to_lowercase()];
    let documented = operation["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{what} is not documented"));
    let documented = resolve(spec, documented);
    let content_type = header(&response, "content-type").to_owned();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    for (name, header) in documented["headers"].as_object().into_iter().flatten() {
        // A header documented `required: false` comes with some answers only.
        if resolve(spec, header)["required"] == Value::Bool(false) {
            continue;
        }
        assert!(
            response.headers().contains_key(name.as_str()),
            "{what}: header {name} missing"
        );
    }
    let Some(content) = documented["content"].as_object() else {
        // A response documented without a body (a redirect) has none.
        let body = response.bytes().await.expect("body");
        assert!(body.is_empty(), "{what}: an undocumented body");
        return;
    };
    // Documented media types may carry parameters (`; version=1.0.0`).
    let schema = content
        .iter()
        .find(|(documented, _)| documented.split(';').next().unwrap_or_default().trim() == media)
        .unwrap_or_else(|| panic!("{what}: content type {media} is not documented"))
        .1
        .get("schema")
        .map(|s| resolve(spec, s));
    if media != "application/json" {
        return;
    }
    let body: Value = response.json().await.expect("JSON body");
    let Some(schema) = schema else { return };
    if let Err(why) = fits(spec, schema, &body) {
        panic!("{what}: {why}");
    }
}

/// Whether `body` has the required fields and the error code of `schema`
/// (through `allOf`, and one alternative of `oneOf`).
fn fits(spec: &Value, schema: &Value, body: &Value) -> Result<(), String> {
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        let misfits: Vec<String> = alternatives
            .iter()
            .filter_map(|alternative| fits(spec, resolve(spec, alternative), body).err())
            .collect();
        return if misfits.len() + 1 == alternatives.len() {
            Ok(())
        } else {
            Err(format!("{body} fits not exactly one of: {misfits:?}"))
        };
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        return all
            .iter()
            .try_for_each(|part| fits(spec, resolve(spec, part), body));
    }
    for field in schema["required"].as_array().into_iter().flatten() {
        let field = field.as_str().expect("field name");
        if body.get(field).is_none() {
            return Err(format!("field {field} missing in {body}"));
        }
    }
    let error = schema.pointer("/properties/error");
    let codes = match (
        error.and_then(|e| e.get("enum")),
        error.and_then(|e| e.get("const")),
    ) {
        (Some(codes), _) => codes.as_array().expect("enum").clone(),
        (None, Some(code)) => vec![code.clone()],
        (None, None) => return Ok(()),
    };
    if codes.contains(&body["error"]) {
        Ok(())
    } else {
        Err(format!("code {} not documented", body["error"]))
    }
}
