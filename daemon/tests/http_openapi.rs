//! The HTTP API's OpenAPI document: the committed `openapi/mgsd.json` is
//! what the code generates, and every reference path it serves has the
//! reference's methods, parameters, request bodies, statuses and response
//! schemas (compared after resolving references and spelling nullability
//! one way: the reference is OpenAPI 3.0, ours 3.1).

mod common;

use common::http::reference;
use serde_json::{json, Map, Value};

fn ours() -> Value {
    serde_json::from_str(&mgsd::http::openapi::document()).unwrap()
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/mgsd.json");
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        committed == mgsd::http::openapi::document(),
        "openapi/mgsd.json differs from what the handlers generate; refresh it with \
         `cargo run --bin mgsd -- --openapi > openapi/mgsd.json` and review the diff"
    );
}

/// `schema` with references resolved in `doc`, descriptions dropped, and
/// nullability, single-member `allOf` and member order spelt one way.
fn norm(schema: &Value, doc: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    if let Some(r) = map.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        return norm(&doc["components"]["schemas"][name], doc);
    }
    let mut out = Map::new();
    let mut nullable = map.get("nullable") == Some(&Value::Bool(true));
    for (k, v) in map {
        match k.as_str() {
            "description" | "title" | "nullable" | "example" | "examples" => {}
            // Extensions (`x-rust-type`, ...) say nothing of the shape.
            k if k.starts_with("x-") => {}
            "type" => match v {
                Value::Array(types) => {
                    nullable |= types.contains(&json!("null"));
                    let rest: Vec<&Value> = types.iter().filter(|t| **t != json!("null")).collect();
                    if let [one] = rest[..] {
                        out.insert(k.clone(), one.clone());
                    }
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            },
            "required" => {
                let mut names: Vec<Value> = v.as_array().cloned().unwrap_or_default();
                names.sort_by_key(|n| n.to_string());
                out.insert(k.clone(), Value::Array(names));
            }
            "properties" => {
                let props: Map<String, Value> = v
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(name, s)| (name.clone(), norm(s, doc)))
                    .collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "oneOf" | "anyOf" | "allOf" => {
                let mut members: Vec<Value> = Vec::new();
                for m in v.as_array().unwrap() {
                    if m == &json!({"type": "null"}) {
                        nullable = true;
                    } else {
                        members.push(norm(m, doc));
                    }
                }
                if members.len() == 1 {
                    // `allOf: [X]`, `oneOf: [null, X]`: X itself.
                    if let Value::Object(inner) = members.pop().unwrap() {
                        out.extend(inner);
                    }
                } else {
                    members.sort_by_key(|m| m.to_string());
                    out.insert("oneOf".into(), Value::Array(members));
                }
            }
            _ => {
                out.insert(k.clone(), norm(v, doc));
            }
        }
    }
    let out = Value::Object(out);
    if nullable {
        json!({ "nullable": out })
    } else {
        out
    }
}

fn params(op: &Value, doc: &Value) -> Vec<Value> {
    let mut ps: Vec<Value> = op["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            json!({
                "name": p["name"],
                "in": p["in"],
                "required": p["required"],
                "schema": norm(&p["schema"], doc),
            })
        })
        .collect();
    ps.sort_by_key(|p| p.to_string());
    ps
}

fn body(content: &Value, doc: &Value) -> Value {
    let Some(content) = content.as_object() else {
        return Value::Null;
    };
    content
        .iter()
        .map(|(media, c)| (media.clone(), norm(&c["schema"], doc)))
        .collect::<Map<String, Value>>()
        .into()
}

fn responses(op: &Value, doc: &Value) -> Value {
    op["responses"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(status, r)| {
            let r = match r.get("$ref").and_then(Value::as_str) {
                Some(name) => &doc["components"]["responses"][name.rsplit('/').next().unwrap()],
                None => r,
            };
            (status.clone(), body(&r["content"], doc))
        })
        .collect::<Map<String, Value>>()
        .into()
}

#[test]
fn every_reference_path_we_serve_matches_the_reference() {
    let ours = ours();
    let theirs = reference();
    let mut problems = Vec::new();
    let mut compared = 0;
    for (path, ops) in ours["paths"].as_object().unwrap() {
        if path.starts_with("/mgsd/") {
            continue;
        }
        let Some(their_ops) = theirs["paths"].get(path) else {
            problems.push(format!("{path}: not a reference path"));
            continue;
        };
        let methods =
            |o: &Value| -> Vec<String> { o.as_object().unwrap().keys().cloned().collect() };
        if methods(ops) != methods(their_ops) {
            problems.push(format!(
                "{path}: methods {:?}, the reference's {:?}",
                methods(ops),
                methods(their_ops)
            ));
        }
        for (method, op) in ops.as_object().unwrap() {
            let their = &their_ops[method];
            let o = &their["operationId"];
            if op["operationId"] != *o {
                problems.push(format!(
                    "{method} {path}: operationId {} vs {o}",
                    op["operationId"]
                ));
            }
            let checks = [
                (
                    "parameters",
                    json!(params(op, &ours)),
                    json!(params(their, theirs)),
                ),
                (
                    "request body",
                    body(&op["requestBody"]["content"], &ours),
                    body(&their["requestBody"]["content"], theirs),
                ),
                ("responses", responses(op, &ours), responses(their, theirs)),
            ];
            for (what, mine, reference) in checks {
                if mine != reference {
                    problems.push(format!(
                        "{method} {path}: {what} differ:\n  ours:      {mine}\n  reference: {reference}"
                    ));
                }
            }
            compared += 1;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(compared >= 17, "compared only {compared} operations");
}
