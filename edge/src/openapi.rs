//! The OpenAPI 3 document of the REST routes, generated from the same
//! descriptors the routes come from: paths, parameters, bodies, schemas
//! and the comments of the `.proto` files as descriptions.

use std::collections::BTreeMap;

use prost_reflect::{FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{Value, json};

use crate::{
    auth::Access,
    transcode::routes::{Answer, BodyRule, Route, RouteTable},
};

/// The document, as JSON.
pub fn document(table: &RouteTable) -> Value {
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut schemas = Schemas::default();
    let mut operation_ids: BTreeMap<String, usize> = BTreeMap::new();
    for route in table.routes() {
        let base_id = format!("{}_{}", route.rpc.parent_service().name(), route.rpc.name());
        let seen = operation_ids.entry(base_id.clone()).or_default();
        *seen += 1;
        let operation_id = if *seen == 1 {
            base_id
        } else {
            format!("{base_id}{seen}")
        };
        let operation = operation(route, operation_id, &mut schemas);
        paths
            .entry(route.template.openapi_path())
            .or_default()
            .insert(route.method.as_str().to_ascii_lowercase(), operation);
    }
    schemas.add_error();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "AdMesh REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "REST over the AdMesh gRPC services, transcoded from their google.api.http annotations. Bodies follow the proto3 JSON mapping: lowerCamelCase fields, 64-bit integers (money in micros) as strings, enums by name.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.defined,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    })
}

fn operation(route: &Route, operation_id: String, schemas: &mut Schemas) -> Value {
    let rpc = &route.rpc;
    let comment = comment_of(&rpc.parent_file(), rpc.path());
    let mut parameters = Vec::new();
    let bound: Vec<String> = route
        .template
        .variables()
        .map(|path| path.join("."))
        .collect();
    for name in &bound {
        let path: Vec<String> = name.split('.').map(str::to_owned).collect();
        let schema = crate::transcode::routes::field_at(&rpc.input(), &path)
            .map_or_else(|| json!({"type": "string"}), |field| schemas.field(&field));
        parameters.push(json!({
            "name": name, "in": "path", "required": true, "schema": schema,
        }));
    }
    let query_fields: Vec<FieldDescriptor> = match &route.body {
        BodyRule::Whole => Vec::new(),
        BodyRule::None => rpc.input().fields().collect(),
        BodyRule::Field(body) => rpc
            .input()
            .fields()
            .filter(|f| f.name() != body.name())
            .collect(),
    };
    for field in query_fields {
        if bound.iter().any(|name| name == field.name()) || !queryable(&field) {
            continue;
        }
        let mut parameter = json!({
            "name": field.json_name(), "in": "query", "required": false,
            "schema": schemas.field(&field),
        });
        if field.is_list() {
            parameter["explode"] = json!(true);
        }
        if let Some(text) = comment_of(&field.parent_file(), field.path()) {
            parameter["description"] = json!(text);
        }
        parameters.push(parameter);
    }
    let mut operation = json!({
        "operationId": operation_id,
        "tags": [rpc.parent_service().name()],
        "summary": comment.as_deref().and_then(|text| text.lines().next()).unwrap_or(rpc.name()),
        "parameters": parameters,
        "responses": responses(route, schemas),
    });
    if let Some(text) = comment {
        operation["description"] = json!(text);
    }
    let body_schema = match &route.body {
        BodyRule::None => None,
        BodyRule::Whole => Some(schemas.message(&rpc.input())),
        BodyRule::Field(field) => Some(schemas.field(field)),
    };
    if let Some(schema) = body_schema {
        operation["requestBody"] = json!({
            "required": false,
            "content": {"application/json": {"schema": schema}},
        });
    }
    operation["security"] = match route.access {
        Access::Public => json!([]),
        _ => json!([{"bearer": []}, {"apiKey": []}]),
    };
    operation
}

fn responses(route: &Route, schemas: &mut Schemas) -> Value {
    let error = json!({
        "description": "An error: the gRPC status as grpc-gateway maps it to HTTP.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    });
    let mut responses = serde_json::Map::new();
    if route.answer == Answer::Redirect {
        responses.insert(
            "302".into(),
            json!({"description": "Redirect to the ad's landing page (Location)."}),
        );
    } else if route.answer == Answer::NoContent {
        responses.insert("204".into(), json!({"description": "Click recorded."}));
    } else {
        let output = match &route.response_body {
            Some(field) => schemas.field(field),
            None => schemas.message(&route.rpc.output()),
        };
        responses.insert(
            route.success.as_u16().to_string(),
            json!({
                "description": "Success.",
                "content": {"application/json": {"schema": output}},
            }),
        );
    }
    responses.insert("default".into(), error);
    Value::Object(responses)
}

/// Fields a query string can set: scalars, enums, repeated scalars, and
/// well-known types written as strings.
fn queryable(field: &FieldDescriptor) -> bool {
    if field.is_map() {
        return false;
    }
    match field.kind() {
        Kind::Message(message) => matches!(
            message.full_name(),
            "google.protobuf.Timestamp" | "google.protobuf.Duration" | "google.protobuf.FieldMask"
        ),
        _ => true,
    }
}

/// The leading comment of the element at `path` in `file`, if any.
fn comment_of(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info
        .location
        .iter()
        .find(|location| location.path == path)?;
    let text = location.leading_comments.as_deref()?.trim();
    (!text.is_empty()).then(|| text.lines().map(str::trim).collect::<Vec<_>>().join("\n"))
}

#[derive(Default)]
struct Schemas {
    defined: BTreeMap<String, Value>,
}

impl Schemas {
    fn add_error(&mut self) {
        self.defined.insert(
            "Error".into(),
            json!({
                "type": "object",
                "required": ["error", "message", "requestId"],
                "properties": {
                    "error": {"type": "string", "description": "The gRPC code name, e.g. INVALID_ARGUMENT."},
                    "message": {"type": "string"},
                    "requestId": {"type": "string"},
                },
            }),
        );
    }

    fn field(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map()
            && let Kind::Message(entry) = field.kind()
        {
            let value = self.kind(&entry.map_entry_value_field().kind());
            return json!({"type": "object", "additionalProperties": value});
        }
        let single = self.kind(&field.kind());
        let mut schema = if field.is_list() {
            json!({"type": "array", "items": single})
        } else {
            single
        };
        if let Some(text) = comment_of(&field.parent_file(), field.path())
            && schema.get("$ref").is_none()
        {
            schema["description"] = json!(text);
        }
        schema
    }

    fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::String => json!({"type": "string"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "int64", "minimum": 0})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64"})
            }
            Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "format": "uint64"}),
            Kind::Float => json!({"type": "number", "format": "float"}),
            Kind::Double => json!({"type": "number", "format": "double"}),
            Kind::Bytes => json!({"type": "string", "format": "byte"}),
            Kind::Enum(descriptor) => json!({
                "type": "string",
                "enum": descriptor.values().map(|value| value.name().to_string()).collect::<Vec<_>>(),
            }),
            Kind::Message(message) => self.message(message),
        }
    }

    fn message(&mut self, message: &MessageDescriptor) -> Value {
        match message.full_name() {
            "google.protobuf.Timestamp" => return json!({"type": "string", "format": "date-time"}),
            "google.protobuf.Duration" => {
                return json!({"type": "string", "description": "Seconds with an s suffix, e.g. \"1.5s\"."});
            }
            "google.protobuf.FieldMask" => {
                return json!({"type": "string", "description": "Comma-separated lowerCamelCase field paths."});
            }
            "google.protobuf.Struct" => {
                return json!({"type": "object", "additionalProperties": true});
            }
            "google.protobuf.Value" => return json!({}),
            "google.protobuf.ListValue" => return json!({"type": "array", "items": {}}),
            "google.protobuf.Empty" => return json!({"type": "object"}),
            _ => {}
        }
        let name = message.full_name().to_string();
        if !self.defined.contains_key(&name) {
            // Placeholder first: messages may refer to themselves.
            self.defined.insert(name.clone(), json!({}));
            let mut properties = serde_json::Map::new();
            for field in message.fields() {
                properties.insert(field.json_name().to_string(), self.field(&field));
            }
            let mut schema = json!({"type": "object", "properties": properties});
            if let Some(text) = comment_of(&message.parent_file(), message.path()) {
                schema["description"] = json!(text);
            }
            self.defined.insert(name.clone(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::descriptor_pool;

    #[test]
    fn every_route_is_documented_with_its_parameters_and_schemas() {
        let table = RouteTable::from_pool(&descriptor_pool().expect("pool")).expect("routes");
        let doc = document(&table);
        let serve = &doc["paths"]["/serve"]["get"];
        let names: Vec<&str> = serve["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(
            names.contains(&"userId") && names.contains(&"deviceType"),
            "{names:?}"
        );
        assert_eq!(serve["security"], json!([]));
        let submit = &doc["paths"]["/api/v1/ads"]["post"];
        assert_eq!(
            submit["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/admesh.queue.v1.SubmitAdRequest"
        );
        assert!(submit["responses"]["201"].is_object());
        let get_ad = &doc["paths"]["/api/v1/ads/{ad_id}"]["get"];
        assert_eq!(get_ad["parameters"][0]["in"], "path");
        let job = &doc["components"]["schemas"]["admesh.queue.v1.AdJob"]["properties"];
        assert_eq!(
            job["version"]["type"], "string",
            "int64 is a string in JSON"
        );
        assert_eq!(job["status"]["enum"][1], "JOB_STATUS_QUEUED");
        assert!(
            doc["paths"]["/v1/click"]["get"]["responses"]["302"].is_object(),
            "click tracking redirects"
        );
        let routes = table.routes().len();
        let operations: usize = doc["paths"]
            .as_object()
            .expect("paths")
            .values()
            .map(|item| item.as_object().map_or(0, |ops| ops.len()))
            .sum();
        assert_eq!(operations, routes);
    }
}
