//! JSON ⇄ protobuf by the proto3 JSON mapping, plus grpc-gateway's rules
//! for path variables and query parameters. Every error names the field or
//! parameter at fault.

use std::borrow::Cow;

use prost::{
    Message,
    encoding::{WireType, encode_key, encode_varint},
};
use prost_reflect::{
    DeserializeOptions, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor,
};

use super::render;
use super::routes::{BodyRule, Route};
use super::template::{Binding, decode};

/// A request the edge refuses before calling any service.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// Builds the RPC's request, protobuf-encoded, from the path bindings, the
/// query string and the body, as the route's `google.api.http` rule says.
///
/// Path and query values are written straight into the bytes, after the
/// body's: protobuf's merge rules then give grpc-gateway's precedence (a
/// scalar written later replaces an earlier one, a repeated field gains an
/// element, a nested message written again is merged into the first).
pub fn build_request(
    route: &Route,
    bindings: Vec<Binding>,
    query: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, BadRequest> {
    let input = route.rpc.input();
    let mut out = Vec::with_capacity(128);
    match &route.body {
        BodyRule::Whole => message_from_json(&input, body)?.encode_raw(&mut out),
        BodyRule::Field(field) => {
            if !is_blank(body) {
                let Kind::Message(inner) = field.kind() else {
                    return Err(BadRequest(format!("field {} takes no body", field.name())));
                };
                let value = message_from_json(&inner, body)?;
                write_len(&mut out, field.number(), &value.encode_to_vec());
            }
        }
        BodyRule::None => {
            if !is_blank(body) {
                return Err(BadRequest(format!(
                    "{} takes no request body; send the fields as query parameters",
                    route.key
                )));
            }
        }
    }
    for (path, value) in bindings {
        let name = path.join(".");
        let written = resolve_fields(&input, path.iter().map(String::as_str))
            .ok_or_else(|| format!("no field {name}"))
            .and_then(|fields| write_path(&mut out, &fields, &value, true));
        written.map_err(|why| BadRequest(format!("path parameter {name}: {why}")))?;
    }
    if let Some(query) = query.filter(|query| !query.is_empty()) {
        apply_query(route, &input, &mut out, query)?;
    }
    Ok(out)
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
pub fn response_json(route: &Route, reply: &[u8]) -> Result<Vec<u8>, String> {
    let output = route.rpc.output();
    match &route.response_body {
        None => render::to_json(&output, reply),
        Some(field) => {
            let Kind::Message(inner) = field.kind() else {
                return Err(format!("response_body {} is not a message", field.name()));
            };
            render::to_json(&inner, &render::message_field(reply, field)?)
        }
    }
}

/// The field named `name` by its proto name or its JSON name.
pub fn field_named(descriptor: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    descriptor
        .get_field_by_name(name)
        .or_else(|| descriptor.get_field_by_json_name(name))
}

fn apply_query(
    route: &Route,
    input: &MessageDescriptor,
    out: &mut Vec<u8>,
    query: &str,
) -> Result<(), BadRequest> {
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
            Some((field, key)) => (field, Some(key)),
            None => (name.as_ref(), None),
        };
        let fields = match route.top_level_fields.get(path_text) {
            Some(field) => Cow::Borrowed(std::slice::from_ref(field)),
            None => Cow::Owned(
                resolve_fields(input, path_text.split('.'))
                    .ok_or_else(|| BadRequest(format!("unknown query parameter {name}")))?,
            ),
        };
        if let BodyRule::Field(body_field) = &route.body
            && fields.first() == Some(body_field)
        {
            return Err(BadRequest(format!(
                "query parameter {name} belongs in the JSON body"
            )));
        }
        let result = match map_key {
            Some(key) => write_map_entry(out, &fields, key, &value),
            None => write_path(out, &fields, &value, false),
        };
        result.map_err(|why| BadRequest(format!("query parameter {name}: {why}")))?;
    }
    Ok(())
}

/// The fields `names` (proto or JSON names) lead through, from
/// `descriptor`; every one but the last a singular message.
fn resolve_fields<'n>(
    descriptor: &MessageDescriptor,
    names: impl Iterator<Item = &'n str>,
) -> Option<Vec<FieldDescriptor>> {
    let mut fields: Vec<FieldDescriptor> = Vec::with_capacity(1);
    for name in names {
        let parent = match fields.last() {
            None => descriptor.clone(),
            Some(field) => match field.kind() {
                Kind::Message(inner) if !field.is_list() && !field.is_map() => inner,
                _ => return None,
            },
        };
        fields.push(field_named(&parent, name)?);
    }
    (!fields.is_empty()).then_some(fields)
}

/// A query name or value decoded (`+` is a space); borrowed when there is
/// nothing to decode, as in most parameters.
fn decode_query(text: &str) -> Option<Cow<'_, str>> {
    if !text.bytes().any(|byte| byte == b'%' || byte == b'+') {
        return Some(Cow::Borrowed(text));
    }
    decode(&text.replace('+', " ")).map(Cow::Owned)
}

/// Writes `text` into the field `fields` lead to (appends, for a repeated
/// field), wrapped in its parent messages.
fn write_path(
    out: &mut Vec<u8>,
    fields: &[FieldDescriptor],
    text: &str,
    from_path: bool,
) -> Result<(), String> {
    let (field, parents) = fields.split_last().ok_or("empty field path")?;
    if field.is_map() {
        return Err("a map field is set with name[key]=value".into());
    }
    if field.is_list() && from_path {
        return Err("a repeated field cannot be a path variable".into());
    }
    within_parents(out, parents, |out| {
        write_value(out, field.number(), &field.kind(), text)
    })
}

fn write_map_entry(
    out: &mut Vec<u8>,
    fields: &[FieldDescriptor],
    key: &str,
    text: &str,
) -> Result<(), String> {
    let [field] = fields else {
        return Err("nested map fields are not settable from the query".into());
    };
    let Kind::Message(entry) = field.kind() else {
        return Err("not a map field".into());
    };
    if !field.is_map() || !matches!(entry.map_entry_key_field().kind(), Kind::String) {
        return Err("not a map field with string keys".into());
    }
    let mut pair = Vec::with_capacity(key.len() + text.len() + 8);
    write_len(&mut pair, 1, key.as_bytes());
    write_value(&mut pair, 2, &entry.map_entry_value_field().kind(), text)?;
    write_len(out, field.number(), &pair);
    Ok(())
}

/// Runs `write` for the innermost of `parents` and wraps what it wrote in
/// each parent message, innermost first.
fn within_parents(
    out: &mut Vec<u8>,
    parents: &[FieldDescriptor],
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    if parents.is_empty() {
        return write(out);
    }
    let mut inner = Vec::new();
    write(&mut inner)?;
    for parent in parents.iter().rev() {
        let mut wrapped = Vec::with_capacity(inner.len() + 8);
        write_len(&mut wrapped, parent.number(), &inner);
        inner = wrapped;
    }
    out.extend_from_slice(&inner);
    Ok(())
}

fn write_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A path or query value written as field `number` of `kind`, by prost's
/// encoder for that kind.
fn write_value(out: &mut Vec<u8>, number: u32, kind: &Kind, text: &str) -> Result<(), String> {
    use prost::encoding as pe;
    let wrong = |what: &str| format!("{text:?} is not {what}");
    let int32 = || text.parse::<i32>().map_err(|_| wrong("a 32-bit integer"));
    let int64 = || text.parse::<i64>().map_err(|_| wrong("a 64-bit integer"));
    let uint32 = || {
        text.parse::<u32>()
            .map_err(|_| wrong("an unsigned 32-bit integer"))
    };
    let uint64 = || {
        text.parse::<u64>()
            .map_err(|_| wrong("an unsigned 64-bit integer"))
    };
    match kind {
        Kind::String => write_len(out, number, text.as_bytes()),
        Kind::Bool => match text {
            "true" | "1" => pe::bool::encode(number, &true, out),
            "false" | "0" => pe::bool::encode(number, &false, out),
            _ => return Err(wrong("true or false")),
        },
        Kind::Int32 => pe::int32::encode(number, &int32()?, out),
        Kind::Sint32 => pe::sint32::encode(number, &int32()?, out),
        Kind::Sfixed32 => pe::sfixed32::encode(number, &int32()?, out),
        Kind::Int64 => pe::int64::encode(number, &int64()?, out),
        Kind::Sint64 => pe::sint64::encode(number, &int64()?, out),
        Kind::Sfixed64 => pe::sfixed64::encode(number, &int64()?, out),
        Kind::Uint32 => pe::uint32::encode(number, &uint32()?, out),
        Kind::Fixed32 => pe::fixed32::encode(number, &uint32()?, out),
        Kind::Uint64 => pe::uint64::encode(number, &uint64()?, out),
        Kind::Fixed64 => pe::fixed64::encode(number, &uint64()?, out),
        Kind::Float => {
            let value: f32 = text.parse().map_err(|_| wrong("a number"))?;
            pe::float::encode(number, &value, out);
        }
        Kind::Double => {
            let value: f64 = text.parse().map_err(|_| wrong("a number"))?;
            pe::double::encode(number, &value, out);
        }
        Kind::Bytes => {
            use base64::Engine;
            let engine = base64::engine::general_purpose::STANDARD;
            let url = base64::engine::general_purpose::URL_SAFE;
            let bytes = engine
                .decode(text)
                .or_else(|_| url.decode(text))
                .map_err(|_| wrong("base64"))?;
            write_len(out, number, &bytes);
        }
        Kind::Enum(descriptor) => {
            let value = enum_number(descriptor, text).ok_or_else(|| {
                let names: Vec<String> =
                    descriptor.values().map(|v| v.name().to_string()).collect();
                format!("{text:?} is not one of {}", names.join(", "))
            })?;
            pe::int32::encode(number, &value, out);
        }
        // Well-known types (Timestamp, Duration, wrappers) take their JSON
        // string form: `2026-01-01T00:00:00Z`, `1.5s`.
        Kind::Message(descriptor) => {
            let json = serde_json::Value::String(text.to_string());
            let message = DynamicMessage::deserialize(descriptor.clone(), json).or_else(|_| {
                let literal: serde_json::Value =
                    serde_json::from_str(text).map_err(|_| wrong("a valid value"))?;
                DynamicMessage::deserialize(descriptor.clone(), literal)
                    .map_err(|_| wrong("a valid value"))
            })?;
            write_len(out, number, &message.encode_to_vec());
        }
    }
    Ok(())
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

    /// The request `route` was given, decoded by `DynamicMessage` as the
    /// service would read it, as JSON.
    fn json_of(route: &Route, request: &[u8]) -> serde_json::Value {
        let message = DynamicMessage::decode(route.rpc.input(), request).expect("decodes");
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
            json_of(&serve, &message),
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
            json_of(&submit, &message)["targetAudience"],
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
        let json = json_of(&update, &message);
        assert_eq!(json["campaign"]["id"], "c-9");
        assert_eq!(json["campaign"]["name"], "Spring");
        assert_eq!(json["updateMask"], "name");
    }

    #[test]
    fn values_are_written_as_protobuf_writes_each_kind() {
        use prost::encoding as pe;
        let written = |kind: Kind, text: &str| {
            let mut out = Vec::new();
            write_value(&mut out, 3, &kind, text).expect("written");
            out
        };
        // The text as the edge writes it against the value as prost does.
        macro_rules! writes_as_prost {
            ($kind:ident, $text:expr, $encoder:ident, $value:expr) => {{
                let mut expected = Vec::new();
                pe::$encoder::encode(3, &$value, &mut expected);
                assert_eq!(
                    written(Kind::$kind, $text),
                    expected,
                    "{} {}",
                    stringify!($kind),
                    $text
                );
            }};
        }
        writes_as_prost!(Int32, "-7", int32, -7);
        writes_as_prost!(Sint32, "-7", sint32, -7);
        writes_as_prost!(Sfixed32, "-7", sfixed32, -7);
        writes_as_prost!(Int64, "-9000000000", int64, -9_000_000_000);
        writes_as_prost!(Sint64, "-9000000000", sint64, -9_000_000_000);
        writes_as_prost!(Sfixed64, "-9", sfixed64, -9);
        writes_as_prost!(Uint32, "4000000000", uint32, 4_000_000_000);
        writes_as_prost!(Fixed32, "7", fixed32, 7);
        writes_as_prost!(Uint64, "18446744073709551615", uint64, u64::MAX);
        writes_as_prost!(Fixed64, "7", fixed64, 7);
        writes_as_prost!(Float, "1.5", float, 1.5);
        writes_as_prost!(Double, "-2.25", double, -2.25);
        writes_as_prost!(Bool, "true", bool, true);
        writes_as_prost!(Bytes, "AP8=", bytes, vec![0u8, 255]);
        let mut out = Vec::new();
        assert_eq!(
            write_value(&mut out, 3, &Kind::Int32, "3000000000"),
            Err("\"3000000000\" is not a 32-bit integer".to_string())
        );
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
