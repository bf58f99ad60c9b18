//! JSON ⇄ protobuf by the proto3 JSON mapping, plus grpc-gateway's rules
//! for path variables and query parameters. Every error names the field or
//! parameter at fault.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey,
    MessageDescriptor, ReflectMessage, Value,
};

use super::routes::{BodyRule, Route, field_at};
use super::template::{Binding, decode};

/// A request the edge refuses before calling any service.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// Builds the RPC's request message from the path bindings, the query
/// string and the body, as the route's `google.api.http` rule says.
pub fn build_request(
    route: &Route,
    bindings: Vec<Binding>,
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, BadRequest> {
    let input = route.rpc.input();
    let mut message = match &route.body {
        BodyRule::Whole => message_from_json(&input, body)?,
        BodyRule::Field(field) => {
            let mut message = DynamicMessage::new(input.clone());
            if !is_blank(body) {
                let Kind::Message(inner) = field.kind() else {
                    return Err(BadRequest(format!("field {} takes no body", field.name())));
                };
                let value = message_from_json(&inner, body)?;
                message.set_field(field, Value::Message(value));
            }
            message
        }
        BodyRule::None => {
            if !is_blank(body) {
                return Err(BadRequest(format!(
                    "{} takes no request body; send the fields as query parameters",
                    route.key
                )));
            }
            DynamicMessage::new(input.clone())
        }
    };
    for (path, value) in bindings {
        let name = path.join(".");
        set_path(&mut message, &path, &value, true)
            .map_err(|why| BadRequest(format!("path parameter {name}: {why}")))?;
    }
    if let Some(query) = query.filter(|query| !query.is_empty()) {
        apply_query(route, &mut message, query)?;
    }
    Ok(message)
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// Parses a JSON object into `descriptor`: unknown fields are refused, and
/// enum values may be written loosely (`"mobile"` for `DEVICE_TYPE_MOBILE`).
pub fn message_from_json(
    descriptor: &MessageDescriptor,
    body: &[u8],
) -> Result<DynamicMessage, BadRequest> {
    if is_blank(body) {
        return Ok(DynamicMessage::new(descriptor.clone()));
    }
    let mut json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| BadRequest(format!("malformed JSON body: {error}")))?;
    if !json.is_object() {
        return Err(BadRequest("the JSON body must be an object".into()));
    }
    normalize_enums(descriptor, &mut json);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(&json, &mut track);
    DynamicMessage::deserialize_with_options(descriptor.clone(), deserializer, &options).map_err(
        |error| {
            let path = track.path().to_string();
            if path.is_empty() || path == "." {
                BadRequest(format!("invalid request body: {error}"))
            } else {
                BadRequest(format!("invalid value for {path}: {error}"))
            }
        },
    )
}

/// The response as proto3 JSON: lowerCamelCase names, 64-bit integers as
/// strings, enums by name, every field present.
pub fn response_json(route: &Route, message: &DynamicMessage) -> Result<Vec<u8>, String> {
    let options = admesh_proto::json::options();
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::new(&mut out);
    match &route.response_body {
        None => message.serialize_with_options(&mut serializer, &options),
        Some(field) => match message.get_field(field).as_ref() {
            Value::Message(inner) => inner.serialize_with_options(&mut serializer, &options),
            _ => return Err(format!("response_body {} is not a message", field.name())),
        },
    }
    .map_err(|error| error.to_string())?;
    Ok(out)
}

/// The field named `name` by its proto name or its JSON name.
pub fn field_named(descriptor: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    descriptor
        .get_field_by_name(name)
        .or_else(|| descriptor.get_field_by_json_name(name))
}

fn apply_query(route: &Route, message: &mut DynamicMessage, query: &str) -> Result<(), BadRequest> {
    let input = route.rpc.input();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_query(raw_name)
            .ok_or_else(|| BadRequest("a query parameter name is not valid UTF-8".into()))?;
        let value = decode_query(raw_value)
            .ok_or_else(|| BadRequest(format!("query parameter {name}: not valid UTF-8")))?;
        if matches!(route.body, BodyRule::Whole) {
            return Err(BadRequest(format!(
                "unknown query parameter {name}: {} takes its fields in the JSON body",
                route.key
            )));
        }
        // `attributes[plan]=gold` sets one entry of a map field.
        let (path_text, map_key) = match name.strip_suffix(']').and_then(|n| n.split_once('[')) {
            Some((field, key)) => (field.to_string(), Some(key.to_string())),
            None => (name.clone(), None),
        };
        let path = resolve_names(&input, &path_text)
            .ok_or_else(|| BadRequest(format!("unknown query parameter {name}")))?;
        if let BodyRule::Field(body_field) = &route.body
            && path.first() == Some(&body_field.name().to_string())
        {
            return Err(BadRequest(format!(
                "query parameter {name} belongs in the JSON body"
            )));
        }
        let result = match map_key {
            Some(key) => set_map_entry(message, &path, key, &value),
            None => set_path(message, &path, &value, false),
        };
        result.map_err(|why| BadRequest(format!("query parameter {name}: {why}")))?;
    }
    Ok(())
}

/// `userId` / `user_id` / `campaign.id` → proto field names.
fn resolve_names(descriptor: &MessageDescriptor, dotted: &str) -> Option<Vec<String>> {
    let mut current = descriptor.clone();
    let mut names = Vec::new();
    let parts: Vec<&str> = dotted.split('.').collect();
    for (index, part) in parts.iter().enumerate() {
        let field = field_named(&current, part)?;
        names.push(field.name().to_string());
        if index + 1 < parts.len() {
            match field.kind() {
                Kind::Message(inner) if !field.is_list() && !field.is_map() => current = inner,
                _ => return None,
            }
        }
    }
    Some(names)
}

fn decode_query(text: &str) -> Option<String> {
    decode(&text.replace('+', " "))
}

/// Sets (or, for a repeated field, appends to) the field at `path`.
fn set_path(
    message: &mut DynamicMessage,
    path: &[String],
    text: &str,
    from_path: bool,
) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty field path")?;
    let mut current = message;
    for parent in parents {
        let field = current
            .descriptor()
            .get_field_by_name(parent)
            .ok_or_else(|| format!("no field {parent}"))?;
        let Value::Message(inner) = current.get_field_mut(&field) else {
            return Err(format!("{parent} is not a message"));
        };
        current = inner;
    }
    let field = current
        .descriptor()
        .get_field_by_name(last)
        .ok_or_else(|| format!("no field {last}"))?;
    if field.is_map() {
        return Err("a map field is set with name[key]=value".into());
    }
    let value = scalar_value(&field.kind(), text)?;
    if field.is_list() {
        if from_path {
            return Err("a repeated field cannot be a path variable".into());
        }
        if let Value::List(items) = current.get_field_mut(&field) {
            items.push(value);
        }
    } else {
        current.set_field(&field, value);
    }
    Ok(())
}

fn set_map_entry(
    message: &mut DynamicMessage,
    path: &[String],
    key: String,
    text: &str,
) -> Result<(), String> {
    let field = field_at(&message.descriptor(), path).ok_or("no such field")?;
    let Kind::Message(entry) = field.kind() else {
        return Err("not a map field".into());
    };
    if !field.is_map() || !matches!(entry.map_entry_key_field().kind(), Kind::String) {
        return Err("not a map field with string keys".into());
    }
    if path.len() != 1 {
        return Err("nested map fields are not settable from the query".into());
    }
    let value = scalar_value(&entry.map_entry_value_field().kind(), text)?;
    if let Value::Map(map) = message.get_field_mut(&field) {
        map.insert(MapKey::String(key), value);
    }
    Ok(())
}

/// A path or query value as a field value of `kind`.
fn scalar_value(kind: &Kind, text: &str) -> Result<Value, String> {
    let number = |what: &str| format!("{text:?} is not {what}");
    Ok(match kind {
        Kind::String => Value::String(text.to_string()),
        Kind::Bool => match text {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(number("true or false")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(text.parse().map_err(|_| number("a 32-bit integer"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(text.parse().map_err(|_| number("a 64-bit integer"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(
            text.parse()
                .map_err(|_| number("an unsigned 32-bit integer"))?,
        ),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(
            text.parse()
                .map_err(|_| number("an unsigned 64-bit integer"))?,
        ),
        Kind::Float => Value::F32(text.parse().map_err(|_| number("a number"))?),
        Kind::Double => Value::F64(text.parse().map_err(|_| number("a number"))?),
        Kind::Bytes => {
            use base64::Engine;
            let engine = base64::engine::general_purpose::STANDARD;
            let url = base64::engine::general_purpose::URL_SAFE;
            Value::Bytes(
                engine
                    .decode(text)
                    .or_else(|_| url.decode(text))
                    .map_err(|_| number("base64"))?
                    .into(),
            )
        }
        Kind::Enum(descriptor) => {
            Value::EnumNumber(enum_number(descriptor, text).ok_or_else(|| {
                let names: Vec<String> =
                    descriptor.values().map(|v| v.name().to_string()).collect();
                format!("{text:?} is not one of {}", names.join(", "))
            })?)
        }
        // Well-known types (Timestamp, Duration, wrappers) take their JSON
        // string form: `2026-01-01T00:00:00Z`, `1.5s`.
        Kind::Message(descriptor) => {
            let json = serde_json::Value::String(text.to_string());
            let message = DynamicMessage::deserialize(descriptor.clone(), json).or_else(|_| {
                let literal: serde_json::Value =
                    serde_json::from_str(text).map_err(|_| number("a valid value"))?;
                DynamicMessage::deserialize(descriptor.clone(), literal)
                    .map_err(|_| number("a valid value"))
            })?;
            Value::Message(message)
        }
    })
}

/// An enum value by its name, its name without the enum's prefix in any
/// case (`mobile`, `Mobile` for `DEVICE_TYPE_MOBILE`), or its number.
pub fn enum_number(descriptor: &EnumDescriptor, text: &str) -> Option<i32> {
    if let Ok(number) = text.parse::<i32>() {
        return descriptor.get_value(number).map(|value| value.number());
    }
    if let Some(value) = descriptor.get_value_by_name(text) {
        return Some(value.number());
    }
    let wanted = text.trim().to_ascii_uppercase().replace(['-', ' '], "_");
    if let Some(value) = descriptor.get_value_by_name(&wanted) {
        return Some(value.number());
    }
    let prefix = enum_prefix(descriptor);
    descriptor
        .get_value_by_name(&format!("{prefix}{wanted}"))
        .map(|value| value.number())
}

/// `DEVICE_TYPE_` for `DeviceType`: the prefix every value name shares.
fn enum_prefix(descriptor: &EnumDescriptor) -> String {
    let mut names = descriptor.values().map(|value| value.name().to_string());
    let Some(first) = names.next() else {
        return String::new();
    };
    let mut prefix = first;
    for name in names {
        while !name.starts_with(&prefix) {
            prefix.pop();
        }
    }
    match prefix.rfind('_') {
        Some(at) => prefix[..=at].to_string(),
        None => String::new(),
    }
}

/// Rewrites loosely written enum strings in a JSON body to their names.
fn normalize_enums(descriptor: &MessageDescriptor, json: &mut serde_json::Value) {
    if descriptor.full_name().starts_with("google.protobuf.") {
        return;
    }
    let serde_json::Value::Object(object) = json else {
        return;
    };
    for (key, value) in object.iter_mut() {
        let Some(field) = field_named(descriptor, key) else {
            continue;
        };
        match field.kind() {
            Kind::Message(entry) if field.is_map() => {
                let value_kind = entry.map_entry_value_field().kind();
                if let serde_json::Value::Object(entries) = value {
                    for item in entries.values_mut() {
                        normalize_value(&value_kind, item);
                    }
                }
            }
            kind if field.is_list() => {
                if let serde_json::Value::Array(items) = value {
                    for item in items {
                        normalize_value(&kind, item);
                    }
                }
            }
            kind => normalize_value(&kind, value),
        }
    }
}

fn normalize_value(kind: &Kind, json: &mut serde_json::Value) {
    match kind {
        Kind::Enum(descriptor) => {
            if let serde_json::Value::String(text) = json
                && let Some(number) = enum_number(descriptor, text)
                && let Some(value) = descriptor.get_value(number)
            {
                *json = serde_json::Value::String(value.name().to_string());
            }
        }
        Kind::Message(descriptor) => normalize_enums(descriptor, json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::{descriptor_pool, routes::RouteTable};
    use prost_reflect::SerializeOptions;
    use std::sync::Arc;

    fn route(key: &str) -> Arc<Route> {
        let table = RouteTable::from_pool(&descriptor_pool().expect("pool")).expect("routes");
        table
            .find(key)
            .unwrap_or_else(|| panic!("no route {key}"))
            .clone()
    }

    fn json_of(message: &DynamicMessage) -> serde_json::Value {
        let options = SerializeOptions::new().stringify_64_bit_integers(true);
        message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .expect("json")
    }

    #[test]
    fn query_parameters_take_either_name_enums_loosely_and_maps() {
        let serve = route("GET /serve");
        let message = build_request(
            &serve,
            vec![],
            Some("userId=u-1&placement_id=p%201&countryCode=US&deviceType=mobile&interests=rpg&interests=tech&attributes[plan]=gold&floorCpm=2500000"),
            b"",
        )
        .expect("request");
        assert_eq!(
            json_of(&message),
            serde_json::json!({
                "userId": "u-1", "placementId": "p 1", "countryCode": "US",
                "deviceType": "DEVICE_TYPE_MOBILE", "interests": ["rpg", "tech"],
                "attributes": {"plan": "gold"}, "floorCpm": "2500000"
            })
        );
    }

    #[test]
    fn unknown_and_mistyped_query_parameters_are_named() {
        let serve = route("GET /serve");
        let error =
            build_request(&serve, vec![], Some("userId=u&bogus=1"), b"").expect_err("refused");
        assert_eq!(error.0, "unknown query parameter bogus");
        let error =
            build_request(&serve, vec![], Some("floorCpm=cheap"), b"").expect_err("refused");
        assert!(
            error.0.starts_with("query parameter floorCpm: "),
            "{}",
            error.0
        );
        let error =
            build_request(&serve, vec![], Some("deviceType=fridge"), b"").expect_err("refused");
        assert!(error.0.contains("DEVICE_TYPE_MOBILE"), "{}", error.0);
        let error = build_request(&serve, vec![], Some("userId=%ff"), b"").expect_err("refused");
        assert!(error.0.contains("UTF-8"), "{}", error.0);
    }

    #[test]
    fn bodies_are_checked_field_by_field() {
        let submit = route("POST /api/v1/ads");
        let message = build_request(
            &submit,
            vec![],
            None,
            br#"{"title":"Epic","gameFamily":"RPG-Fantasy","targetAudience":["18-34"],"priority":5}"#,
        )
        .expect("request");
        assert_eq!(
            json_of(&message)["targetAudience"],
            serde_json::json!(["18-34"])
        );

        let unknown = build_request(&submit, vec![], None, br#"{"title":"x","colour":"red"}"#);
        assert!(unknown.expect_err("refused").0.contains("colour"));
        let mistyped = build_request(&submit, vec![], None, br#"{"priority":"high"}"#);
        assert!(mistyped.expect_err("refused").0.contains("priority"));
        let malformed = build_request(&submit, vec![], None, br#"{"title":"#);
        assert!(
            malformed
                .expect_err("refused")
                .0
                .starts_with("malformed JSON body")
        );
        let not_object = build_request(&submit, vec![], None, b"[1,2]");
        assert_eq!(
            not_object.expect_err("refused").0,
            "the JSON body must be an object"
        );
        let query = build_request(&submit, vec![], Some("priority=5"), b"{}");
        assert!(
            query
                .expect_err("refused")
                .0
                .contains("unknown query parameter priority")
        );

        let batch = route("POST /api/v1/ads/batch");
        let nested = build_request(
            &batch,
            vec![],
            None,
            br#"{"ads":[{"title":"a"},{"priority":true}]}"#,
        );
        let error = nested.expect_err("refused").0;
        assert!(error.contains("ads[1].priority"), "{error}");
    }

    #[test]
    fn path_variables_set_nested_fields_over_the_body() {
        let update = route("PATCH /v1/campaigns/{campaign.id}");
        let message = build_request(
            &update,
            vec![(vec!["campaign".into(), "id".into()], "c-9".into())],
            Some("updateMask=name"),
            br#"{"id":"ignored","name":"Spring"}"#,
        )
        .expect("request");
        let json = json_of(&message);
        assert_eq!(json["campaign"]["id"], "c-9");
        assert_eq!(json["campaign"]["name"], "Spring");
        assert_eq!(json["updateMask"], "name");
    }

    #[test]
    fn routes_without_a_body_refuse_one() {
        let stats = route("GET /api/v1/ads/queue/stats");
        assert!(build_request(&stats, vec![], None, b"{\"x\":1}").is_err());
        assert!(build_request(&stats, vec![], None, b" \n").is_ok());
    }

    #[test]
    fn enum_prefixes_are_shared_value_prefixes() {
        let pool = descriptor_pool().expect("pool");
        let device = pool
            .get_enum_by_name("admesh.common.v1.DeviceType")
            .expect("enum");
        assert_eq!(enum_prefix(&device), "DEVICE_TYPE_");
        assert_eq!(enum_number(&device, "ctv"), Some(4));
        assert_eq!(enum_number(&device, "DEVICE_TYPE_TABLET"), Some(3));
        assert_eq!(enum_number(&device, "2"), Some(2));
        assert_eq!(enum_number(&device, "99"), None);
    }
}
