//! A response's protobuf bytes rendered straight as proto3 JSON, field by
//! field from its descriptor, without building a `DynamicMessage` first:
//! on `GET /serve` decoding into one and serializing it cost more CPU than
//! the rest of the edge's own work together.
//!
//! The output is what `DynamicMessage` renders with
//! [`admesh_proto::json::options`]: JSON names in field-number order,
//! fields without presence always present (defaults included), 64-bit
//! integers as strings, enums by name. Well-known types (Timestamp,
//! Duration, Struct, …) are still rendered by `DynamicMessage`, which knows
//! their JSON forms. The tests hold the two renderings side by side for
//! every message of the API.

use std::{borrow::Cow, collections::HashMap};

use base64::{display::Base64Display, prelude::BASE64_STANDARD};
use prost::encoding::decode_varint;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, OneofDescriptor};
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};

/// `bytes`, a message of type `descriptor`, as JSON.
pub fn to_json(descriptor: &MessageDescriptor, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(bytes.len() * 2 + 64);
    let direct =
        WireMessage { descriptor, bytes }.serialize(&mut serde_json::Serializer::new(&mut out));
    if direct.is_ok() {
        return Ok(out);
    }
    // The bytes do not read as the descriptor says: DynamicMessage decodes
    // them again for its precise error (or renders what this did not).
    let message = DynamicMessage::decode(descriptor.clone(), bytes)
        .map_err(|error| format!("decoding the response: {error}"))?;
    out.clear();
    message
        .serialize_with_options(
            &mut serde_json::Serializer::new(&mut out),
            &admesh_proto::json::options(),
        )
        .map_err(|error| error.to_string())?;
    Ok(out)
}

/// The bytes of message field `field` in `bytes` (empty when it is absent):
/// for `response_body`, which answers with one field of the response.
pub fn message_field(bytes: &[u8], field: &FieldDescriptor) -> Result<Vec<u8>, String> {
    let fields = Fields::parse(bytes).map_err(|why| format!("decoding the response: {why}"))?;
    Ok(merged(fields.of(field.number()))
        .map_err(|why| format!("decoding the response: {why}"))?
        .into_owned())
}

/// One field's value as it came on the wire.
#[derive(Clone, Copy, Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
}

#[derive(Clone, Copy, Debug)]
struct Entry<'a> {
    number: u32,
    /// Where it came on the wire: the last member of a oneof wins.
    position: usize,
    value: Wire<'a>,
}

/// A message's fields, sorted by number; a number's values in wire order.
struct Fields<'a>(Vec<Entry<'a>>);

impl<'a> Fields<'a> {
    fn parse(mut bytes: &'a [u8]) -> Result<Self, &'static str> {
        let mut entries = Vec::with_capacity(16);
        while !bytes.is_empty() {
            let key = decode_varint(&mut bytes).map_err(|_| "a malformed field key")?;
            // As protobuf reads keys: 32 bits at most, field numbers from 1.
            let number = u32::try_from(key)
                .ok()
                .map(|key| key >> 3)
                .filter(|&number| number != 0)
                .ok_or("a field key out of range")?;
            let value = match key & 7 {
                0 => Wire::Varint(decode_varint(&mut bytes).map_err(|_| "a malformed varint")?),
                1 => Wire::Fixed64(take_fixed64(&mut bytes).ok_or("a cut 64-bit value")?),
                2 => {
                    let len = decode_varint(&mut bytes).map_err(|_| "a malformed length")?;
                    let len = usize::try_from(len)
                        .ok()
                        .filter(|&len| len <= bytes.len())
                        .ok_or("a length past the end")?;
                    let (value, rest) = bytes.split_at(len);
                    bytes = rest;
                    Wire::Len(value)
                }
                5 => Wire::Fixed32(take_fixed32(&mut bytes).ok_or("a cut 32-bit value")?),
                _ => return Err("a group or an unknown wire type"),
            };
            let position = entries.len();
            entries.push(Entry {
                number,
                position,
                value,
            });
        }
        // Stable: a number's values keep their wire order.
        entries.sort_by_key(|entry| entry.number);
        Ok(Self(entries))
    }

    fn of(&self, number: u32) -> &[Entry<'a>] {
        let start = self.0.partition_point(|entry| entry.number < number);
        let len = self.0[start..].partition_point(|entry| entry.number == number);
        &self.0[start..start + len]
    }

    /// Whether the member of `oneof` last seen at `position` is the last of
    /// its members on the wire (setting one member clears the others).
    fn wins_oneof(&self, oneof: &OneofDescriptor, position: usize) -> bool {
        oneof.fields().all(|member| {
            self.of(member.number())
                .last()
                .is_none_or(|entry| entry.position <= position)
        })
    }
}

/// A singular message field's bytes: several occurrences merge, which for
/// protobuf is their concatenation.
fn merged<'a>(entries: &[Entry<'a>]) -> Result<Cow<'a, [u8]>, &'static str> {
    let mut parts = entries.iter().map(|entry| match entry.value {
        Wire::Len(bytes) => Ok(bytes),
        _ => Err("a message field that is not length-delimited"),
    });
    match (parts.next(), entries.len()) {
        (None, _) => Ok(Cow::Borrowed(&[])),
        (Some(only), 1) => Ok(Cow::Borrowed(only?)),
        (Some(first), _) => {
            // Each part must read on its own: a field may not straddle two.
            let first = first?;
            Fields::parse(first)?;
            let mut all = first.to_vec();
            for part in parts {
                let part = part?;
                Fields::parse(part)?;
                all.extend_from_slice(part);
            }
            Ok(Cow::Owned(all))
        }
    }
}

fn is_well_known(descriptor: &MessageDescriptor) -> bool {
    descriptor.full_name().starts_with("google.protobuf.")
}

struct WireMessage<'d, 'a> {
    descriptor: &'d MessageDescriptor,
    bytes: &'a [u8],
}

impl Serialize for WireMessage<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if is_well_known(self.descriptor) {
            let message = DynamicMessage::decode(self.descriptor.clone(), self.bytes)
                .map_err(S::Error::custom)?;
            return message.serialize_with_options(serializer, &admesh_proto::json::options());
        }
        let fields = Fields::parse(self.bytes).map_err(S::Error::custom)?;
        let mut map = serializer.serialize_map(None)?;
        for field in self.descriptor.fields() {
            let entries = fields.of(field.number());
            let name = field.json_name();
            if field.is_map() {
                map.serialize_entry(
                    name,
                    &MapValue {
                        field: &field,
                        entries,
                    },
                )?;
            } else if field.is_list() {
                map.serialize_entry(
                    name,
                    &ListValue {
                        kind: field.kind(),
                        entries,
                    },
                )?;
            } else {
                let value = SingleValue {
                    kind: field.kind(),
                    entries,
                };
                match entries.last() {
                    // Absent: shown with its default unless presence is tracked.
                    None if field.supports_presence() => {}
                    None => map.serialize_entry(name, &value)?,
                    // Overwritten by a later member of its oneof: not shown,
                    // but it must still read as its type.
                    Some(last)
                        if field
                            .containing_oneof()
                            .is_some_and(|oneof| !fields.wins_oneof(&oneof, last.position)) =>
                    {
                        check::<_, S::Error>(&value)?;
                    }
                    Some(_) => map.serialize_entry(name, &value)?,
                }
            }
        }
        map.end()
    }
}

/// Renders `value` into nothing: for values that are not shown (a oneof's
/// overwritten member, a map key's earlier value) but must be well-formed,
/// as protobuf decoders refuse the whole message otherwise.
fn check<T: Serialize, E: serde::ser::Error>(value: &T) -> Result<(), E> {
    value
        .serialize(&mut serde_json::Serializer::new(std::io::sink()))
        .map_err(E::custom)
}

/// A singular field: its last value, a merged message, or (no entries) the
/// kind's default.
struct SingleValue<'e, 'a> {
    kind: Kind,
    entries: &'e [Entry<'a>],
}

impl Serialize for SingleValue<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Kind::Message(descriptor) = &self.kind {
            let bytes = merged(self.entries).map_err(S::Error::custom)?;
            return WireMessage {
                descriptor,
                bytes: &bytes,
            }
            .serialize(serializer);
        }
        // The last value counts, but every one must read as the field's type.
        let mut scalar = Scalar::default_of(&self.kind);
        for entry in self.entries {
            scalar = Scalar::from_wire(&self.kind, entry.value).map_err(S::Error::custom)?;
        }
        scalar.serialize(&self.kind, serializer)
    }
}

struct ListValue<'e, 'a> {
    kind: Kind,
    entries: &'e [Entry<'a>],
}

impl Serialize for ListValue<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut list = serializer.serialize_seq(None)?;
        for entry in self.entries {
            match (&self.kind, entry.value) {
                (Kind::Message(descriptor), Wire::Len(bytes)) => {
                    list.serialize_element(&WireMessage { descriptor, bytes })?;
                }
                // Packed: a run of scalars in one length-delimited value.
                (kind, Wire::Len(mut packed)) if !matches!(kind, Kind::String | Kind::Bytes) => {
                    while !packed.is_empty() {
                        let value = next_packed(kind, &mut packed).map_err(S::Error::custom)?;
                        let scalar = Scalar::from_wire(kind, value).map_err(S::Error::custom)?;
                        list.serialize_element(&Element(scalar, kind))?;
                    }
                }
                (kind, value) => {
                    let scalar = Scalar::from_wire(kind, value).map_err(S::Error::custom)?;
                    list.serialize_element(&Element(scalar, kind))?;
                }
            }
        }
        list.end()
    }
}

/// A little-endian fixed-width value off the front of `bytes`.
fn take_fixed64(bytes: &mut &[u8]) -> Option<u64> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    *bytes = rest;
    Some(u64::from_le_bytes(*head))
}

fn take_fixed32(bytes: &mut &[u8]) -> Option<u32> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    *bytes = rest;
    Some(u32::from_le_bytes(*head))
}

/// The next scalar of a packed run, by the wire type its kind uses.
fn next_packed<'a>(kind: &Kind, packed: &mut &'a [u8]) -> Result<Wire<'a>, &'static str> {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => take_fixed64(packed)
            .map(Wire::Fixed64)
            .ok_or("a cut packed value"),
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => take_fixed32(packed)
            .map(Wire::Fixed32)
            .ok_or("a cut packed value"),
        Kind::Message(_) | Kind::String | Kind::Bytes => Err("a packed run of a non-scalar"),
        _ => decode_varint(packed)
            .map(Wire::Varint)
            .map_err(|_| "a malformed packed varint"),
    }
}

struct MapValue<'f, 'e, 'a> {
    field: &'f FieldDescriptor,
    entries: &'e [Entry<'a>],
}

impl Serialize for MapValue<'_, '_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Kind::Message(entry_type) = self.field.kind() else {
            return Err(S::Error::custom("a map field without an entry type"));
        };
        let key_kind = entry_type.map_entry_key_field().kind();
        let value_kind = entry_type.map_entry_value_field().kind();
        let mut pairs = Vec::with_capacity(self.entries.len());
        for entry in self.entries {
            let Wire::Len(bytes) = entry.value else {
                return Err(S::Error::custom("a map entry that is not length-delimited"));
            };
            let fields = Fields::parse(bytes).map_err(S::Error::custom)?;
            let key = match fields.of(1).last() {
                Some(key) => Scalar::from_wire(&key_kind, key.value).map_err(S::Error::custom)?,
                None => Scalar::default_of(&key_kind),
            };
            pairs.push((key.map_key().map_err(S::Error::custom)?, fields));
        }
        // A key sent twice keeps its last value.
        let last_of: HashMap<&str, usize> = pairs
            .iter()
            .enumerate()
            .map(|(index, (key, _))| (key.as_ref(), index))
            .collect();
        let mut map = serializer.serialize_map(Some(last_of.len()))?;
        for (index, (key, fields)) in pairs.iter().enumerate() {
            let value = SingleValue {
                kind: value_kind.clone(),
                entries: fields.of(2),
            };
            if last_of.get(key.as_ref()) == Some(&index) {
                map.serialize_entry(key.as_ref(), &value)?;
            } else {
                check::<_, S::Error>(&value)?;
            }
        }
        map.end()
    }
}

/// A scalar field value, read from the wire as protobuf reads it.
#[derive(Clone, Copy, Debug)]
enum Scalar<'a> {
    Bool(bool),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Enum(i32),
}

impl<'a> Scalar<'a> {
    fn from_wire(kind: &Kind, wire: Wire<'a>) -> Result<Self, &'static str> {
        // Truncating casts are protobuf's own rules (an int32 is the low
        // 32 bits of its varint).
        Ok(match (kind, wire) {
            (Kind::Double, Wire::Fixed64(bits)) => Self::F64(f64::from_bits(bits)),
            (Kind::Float, Wire::Fixed32(bits)) => Self::F32(f32::from_bits(bits)),
            (Kind::Int32, Wire::Varint(value)) => Self::I32(value as i32),
            (Kind::Int64, Wire::Varint(value)) => Self::I64(value as i64),
            (Kind::Uint32, Wire::Varint(value)) => Self::U32(value as u32),
            (Kind::Uint64, Wire::Varint(value)) => Self::U64(value),
            (Kind::Sint32, Wire::Varint(value)) => {
                let value = value as u32;
                Self::I32((value >> 1) as i32 ^ -((value & 1) as i32))
            }
            (Kind::Sint64, Wire::Varint(value)) => {
                Self::I64((value >> 1) as i64 ^ -((value & 1) as i64))
            }
            (Kind::Fixed32, Wire::Fixed32(value)) => Self::U32(value),
            (Kind::Sfixed32, Wire::Fixed32(value)) => Self::I32(value as i32),
            (Kind::Fixed64, Wire::Fixed64(value)) => Self::U64(value),
            (Kind::Sfixed64, Wire::Fixed64(value)) => Self::I64(value as i64),
            (Kind::Bool, Wire::Varint(value)) => Self::Bool(value != 0),
            (Kind::String, Wire::Len(bytes)) => {
                Self::Str(std::str::from_utf8(bytes).map_err(|_| "a string that is not UTF-8")?)
            }
            (Kind::Bytes, Wire::Len(bytes)) => Self::Bytes(bytes),
            (Kind::Enum(_), Wire::Varint(value)) => Self::Enum(value as i32),
            _ => return Err("a wire type that does not match the field"),
        })
    }

    fn default_of(kind: &Kind) -> Self {
        match kind {
            Kind::Double => Self::F64(0.0),
            Kind::Float => Self::F32(0.0),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Self::I32(0),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Self::I64(0),
            Kind::Uint32 | Kind::Fixed32 => Self::U32(0),
            Kind::Uint64 | Kind::Fixed64 => Self::U64(0),
            Kind::Bool => Self::Bool(false),
            // Never asked for a message: those render as `WireMessage`.
            Kind::String | Kind::Message(_) => Self::Str(""),
            Kind::Bytes => Self::Bytes(&[]),
            Kind::Enum(descriptor) => Self::Enum(descriptor.default_value().number()),
        }
    }

    /// A map key as JSON writes it: always a string.
    fn map_key(self) -> Result<Cow<'a, str>, &'static str> {
        Ok(match self {
            Self::Str(text) => Cow::Borrowed(text),
            Self::Bool(value) => Cow::Borrowed(if value { "true" } else { "false" }),
            Self::I32(value) => Cow::Owned(value.to_string()),
            Self::U32(value) => Cow::Owned(value.to_string()),
            Self::I64(value) => Cow::Owned(value.to_string()),
            Self::U64(value) => Cow::Owned(value.to_string()),
            _ => return Err("a map key of a kind protobuf does not allow"),
        })
    }

    fn serialize<S: Serializer>(self, kind: &Kind, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Bool(value) => serializer.serialize_bool(value),
            Self::I32(value) => serializer.serialize_i32(value),
            Self::U32(value) => serializer.serialize_u32(value),
            Self::I64(value) => serializer.collect_str(&value),
            Self::U64(value) => serializer.collect_str(&value),
            Self::F32(value) if value.is_finite() => serializer.serialize_f32(value),
            Self::F64(value) if value.is_finite() => serializer.serialize_f64(value),
            Self::F32(value) => serializer.serialize_str(non_finite(f64::from(value))),
            Self::F64(value) => serializer.serialize_str(non_finite(value)),
            Self::Str(text) => serializer.serialize_str(text),
            Self::Bytes(bytes) => {
                serializer.collect_str(&Base64Display::new(bytes, &BASE64_STANDARD))
            }
            Self::Enum(number) => match kind {
                Kind::Enum(descriptor) if descriptor.full_name() == "google.protobuf.NullValue" => {
                    serializer.serialize_none()
                }
                Kind::Enum(descriptor) => match descriptor.get_value(number) {
                    Some(value) => serializer.serialize_str(value.name()),
                    None => serializer.serialize_i32(number),
                },
                _ => serializer.serialize_i32(number),
            },
        }
    }
}

fn non_finite(value: f64) -> &'static str {
    if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// A list element: a scalar with the kind that names its enum values.
struct Element<'k, 'a>(Scalar<'a>, &'k Kind);

impl Serialize for Element<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(self.1, serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use prost_reflect::{MapKey, Value};

    fn pool() -> &'static prost_reflect::DescriptorPool {
        admesh_proto::json::pool()
    }

    fn message_type(name: &str) -> MessageDescriptor {
        pool()
            .get_message_by_name(name)
            .unwrap_or_else(|| panic!("no message {name}"))
    }

    /// What `DynamicMessage` renders for `bytes`: the rendering to match.
    /// What `DynamicMessage` renders for `bytes`, as text read back (so
    /// both sides' floats go through the same parser): the rendering to
    /// match. `None` when it does not decode, or does not render (a
    /// Duration out of range).
    fn rendered_by_dynamic_message(
        descriptor: &MessageDescriptor,
        bytes: &[u8],
    ) -> Option<serde_json::Value> {
        let message = DynamicMessage::decode(descriptor.clone(), bytes).ok()?;
        let mut out = Vec::new();
        message
            .serialize_with_options(
                &mut serde_json::Serializer::new(&mut out),
                &admesh_proto::json::options(),
            )
            .ok()?;
        serde_json::from_slice(&out).ok()
    }

    fn by_dynamic_message(descriptor: &MessageDescriptor, bytes: &[u8]) -> serde_json::Value {
        rendered_by_dynamic_message(descriptor, bytes).expect("decodes and renders")
    }

    fn direct(descriptor: &MessageDescriptor, bytes: &[u8]) -> serde_json::Value {
        let mut out = Vec::new();
        WireMessage { descriptor, bytes }
            .serialize(&mut serde_json::Serializer::new(&mut out))
            .unwrap_or_else(|error| panic!("{}: {error}", descriptor.full_name()));
        serde_json::from_slice(&out).expect("valid JSON")
    }

    /// Well-known types set from their JSON forms; `None` for those left
    /// unset (Any needs its packed type registered).
    fn well_known(descriptor: &MessageDescriptor) -> Option<DynamicMessage> {
        let json = match descriptor.full_name() {
            "google.protobuf.Timestamp" => serde_json::json!("2026-01-02T03:04:05.5Z"),
            "google.protobuf.Duration" => serde_json::json!("1.5s"),
            "google.protobuf.Struct" => serde_json::json!({"a": 1, "b": [true, "x", null]}),
            "google.protobuf.Value" => serde_json::json!("x"),
            "google.protobuf.ListValue" => serde_json::json!([1, "a"]),
            "google.protobuf.FieldMask" => serde_json::json!("a,b.c"),
            "google.protobuf.Empty" => serde_json::json!({}),
            "google.protobuf.Int64Value" => serde_json::json!("-5"),
            "google.protobuf.StringValue" => serde_json::json!("s"),
            "google.protobuf.BoolValue" => serde_json::json!(true),
            "google.protobuf.DoubleValue" => serde_json::json!(1.5),
            "google.protobuf.UInt32Value" => serde_json::json!(4),
            _ => return None,
        };
        DynamicMessage::deserialize(descriptor.clone(), json).ok()
    }

    /// A value of `kind` unlike its default (`variant` tells list elements
    /// and map entries apart); messages to `depth` levels.
    fn sample(kind: &Kind, depth: usize, variant: u8) -> Option<Value> {
        let small = i64::from(variant);
        Some(match kind {
            Kind::Double => Value::F64(-2.5 + f64::from(variant)),
            Kind::Float => Value::F32(1.25),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(-7 - i32::from(variant)),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(-(1 << 40) - small),
            Kind::Uint32 | Kind::Fixed32 => Value::U32(7 + u32::from(variant)),
            Kind::Uint64 | Kind::Fixed64 => Value::U64(u64::MAX - u64::from(variant)),
            Kind::Bool => Value::Bool(variant.is_multiple_of(2)),
            Kind::String => Value::String(format!("é \"quoted\"\n{variant}")),
            Kind::Bytes => Value::Bytes(vec![0, 255, variant].into()),
            Kind::Enum(descriptor) => Value::EnumNumber(descriptor.values().last()?.number()),
            Kind::Message(descriptor) if is_well_known(descriptor) => {
                Value::Message(well_known(descriptor)?)
            }
            Kind::Message(descriptor) => Value::Message(full(descriptor, depth.checked_sub(1)?)),
        })
    }

    fn sample_key(kind: &Kind, variant: u8) -> MapKey {
        match kind {
            Kind::String => MapKey::String(format!("key {variant}")),
            Kind::Bool => MapKey::Bool(variant.is_multiple_of(2)),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(-1 - i32::from(variant)),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(-1 - i64::from(variant)),
            Kind::Uint32 | Kind::Fixed32 => MapKey::U32(u32::from(variant)),
            _ => MapKey::U64(u64::from(variant)),
        }
    }

    /// Every field set (the last member of each oneof wins).
    fn full(descriptor: &MessageDescriptor, depth: usize) -> DynamicMessage {
        let mut message = DynamicMessage::new(descriptor.clone());
        for field in descriptor.fields() {
            let kind = field.kind();
            let value = if field.is_map() {
                let Kind::Message(entry) = &kind else {
                    unreachable!("a map field's kind is its entry message")
                };
                let (key, value) = (
                    entry.map_entry_key_field().kind(),
                    entry.map_entry_value_field().kind(),
                );
                Value::Map(
                    (0..2)
                        .filter_map(|v| Some((sample_key(&key, v), sample(&value, depth, v)?)))
                        .collect(),
                )
            } else if field.is_list() {
                Value::List((0..2).filter_map(|v| sample(&kind, depth, v)).collect())
            } else {
                match sample(&kind, depth, 0) {
                    Some(value) => value,
                    None => continue,
                }
            };
            message.set_field(&field, value);
        }
        message
    }

    #[test]
    fn every_message_of_the_api_renders_as_dynamic_message_renders_it() {
        let mut checked = 0;
        for descriptor in pool().all_messages() {
            if descriptor.is_map_entry() || is_well_known(&descriptor) {
                continue;
            }
            for message in [
                DynamicMessage::new(descriptor.clone()),
                full(&descriptor, 3),
            ] {
                let bytes = message.encode_to_vec();
                assert_eq!(
                    direct(&descriptor, &bytes),
                    by_dynamic_message(&descriptor, &bytes),
                    "{}",
                    descriptor.full_name()
                );
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} messages checked");
    }

    fn field_bytes(descriptor: &MessageDescriptor, json: serde_json::Value) -> Vec<u8> {
        DynamicMessage::deserialize(descriptor.clone(), json)
            .expect("valid")
            .encode_to_vec()
    }

    #[test]
    fn fields_out_of_order_and_a_message_sent_twice_merge_as_protobuf_says() {
        let campaign = message_type("admesh.bid.v1.Campaign");
        // Later fields first, the targeting message in two parts, a scalar
        // sent twice (the last wins), the ads list split around them.
        let mut bytes = field_bytes(
            &campaign,
            serde_json::json!({"name": "first", "targeting": {"countries": ["US"]}, "ads": [{"id": "a1"}]}),
        );
        bytes.splice(
            0..0,
            field_bytes(
                &campaign,
                serde_json::json!({"updatedAt": "2026-01-01T00:00:00Z"}),
            ),
        );
        bytes.extend(field_bytes(
            &campaign,
            serde_json::json!({"name": "second", "targeting": {"ageRange": {"min": 21}}, "ads": [{"id": "a2"}], "lifetimeBudget": "0"}),
        ));
        let rendered = direct(&campaign, &bytes);
        assert_eq!(rendered, by_dynamic_message(&campaign, &bytes));
        assert_eq!(rendered["name"], "second");
        assert_eq!(
            rendered["targeting"]["countries"],
            serde_json::json!(["US"])
        );
        assert_eq!(rendered["targeting"]["ageRange"]["min"], 21);
        assert_eq!(rendered["ads"][1]["id"], "a2");
        // Explicit presence: sent as zero, so rendered; never sent, absent.
        assert_eq!(rendered["lifetimeBudget"], "0");
        assert!(rendered.get("frequencyCap").is_none());
        assert!(rendered.get("startTime").is_none());
    }

    #[test]
    fn the_last_member_of_a_oneof_on_the_wire_wins() {
        let event = message_type("admesh.queue.v1.ProcessEvent");
        let lease = field_bytes(&event, serde_json::json!({"lease": {"leaseId": "l-1"}}));
        let settings = field_bytes(&event, serde_json::json!({"settings": {}}));
        for bytes in [
            [lease.clone(), settings.clone()].concat(),
            [settings, lease].concat(),
        ] {
            let rendered = direct(&event, &bytes);
            assert_eq!(rendered, by_dynamic_message(&event, &bytes));
            assert_eq!(rendered.as_object().map(|fields| fields.len()), Some(1));
        }
    }

    #[test]
    fn packed_and_unpacked_lists_unknown_fields_and_enum_numbers_render() {
        let stats = message_type("admesh.queue.v1.QueueStats");
        let distribution = stats.get_field_by_name("distribution").expect("field");
        let mut bytes = field_bytes(
            &stats,
            serde_json::json!({"total": "3", "distribution": {"1": "2", "5": "1"}}),
        );
        // The key 1 again: its last value wins. Then an unknown field 999.
        let mut entry = Vec::new();
        prost::encoding::int32::encode(1, &1, &mut entry);
        prost::encoding::uint64::encode(2, &7, &mut entry);
        prost::encoding::bytes::encode(distribution.number(), &entry, &mut bytes);
        prost::encoding::string::encode(999, &"from a newer server".to_string(), &mut bytes);
        let rendered = direct(&stats, &bytes);
        assert_eq!(rendered, by_dynamic_message(&stats, &bytes));
        assert_eq!(
            rendered["distribution"],
            serde_json::json!({"1": "7", "5": "1"})
        );
        assert!(rendered.get("999").is_none());

        let targeting = message_type("admesh.bid.v1.Targeting");
        let devices = targeting.get_field_by_name("device_types").expect("field");
        let mut bytes = Vec::new();
        // Packed [1, 99] then one more unpacked: 99 is no DeviceType value.
        prost::encoding::int32::encode_packed(devices.number(), &[1, 99], &mut bytes);
        prost::encoding::int32::encode(devices.number(), &2, &mut bytes);
        let rendered = direct(&targeting, &bytes);
        assert_eq!(rendered, by_dynamic_message(&targeting, &bytes));
        assert_eq!(
            rendered["deviceTypes"],
            serde_json::json!(["DEVICE_TYPE_MOBILE", 99, "DEVICE_TYPE_DESKTOP"])
        );
    }

    #[test]
    fn bytes_that_do_not_read_as_the_message_are_refused_with_the_decoders_reason() {
        let serve = message_type("admesh.adserver.v1.ServeResponse");
        let mut not_utf8 = Vec::new();
        prost::encoding::bytes::encode(3, &vec![0xff, 0xfe], &mut not_utf8);
        let cut = &field_bytes(&serve, serde_json::json!({"title": "a long title"}))[..5];
        let mut wrong_type = Vec::new();
        prost::encoding::string::encode(1, &"filled?".to_string(), &mut wrong_type);
        for bytes in [not_utf8.as_slice(), cut, wrong_type.as_slice()] {
            let error = to_json(&serve, bytes).expect_err("refused");
            assert!(error.starts_with("decoding the response: "), "{error}");
        }
    }

    #[test]
    fn a_response_body_field_renders_alone() {
        let campaign = message_type("admesh.bid.v1.Campaign");
        let targeting = campaign.get_field_by_name("targeting").expect("field");
        let bytes = field_bytes(
            &campaign,
            serde_json::json!({"name": "n", "targeting": {"ageRange": {"min": 30}}}),
        );
        let Kind::Message(inner) = targeting.kind() else {
            panic!("targeting is a message")
        };
        let json =
            to_json(&inner, &message_field(&bytes, &targeting).expect("field")).expect("json");
        let rendered: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(rendered["ageRange"]["min"], 30);
        assert!(rendered.get("name").is_none());
    }

    /// A change to valid bytes: set a byte, cut the end, repeat a stretch.
    #[derive(Clone, Debug)]
    enum Mutation {
        Set(usize, u8),
        Cut(usize),
        Repeat(usize, usize),
    }

    fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
            any::<usize>().prop_map(Mutation::Cut),
            (any::<usize>(), 1..40usize).prop_map(|(at, len)| Mutation::Repeat(at, len)),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
        #[test]
        fn damaged_bytes_render_as_dynamic_message_renders_them_or_are_refused_as_it_refuses_them(
            pick in proptest::prelude::any::<usize>(),
            filled in proptest::prelude::any::<bool>(),
            mutations in proptest::collection::vec(mutation(), 1..4),
        ) {
            let messages: Vec<MessageDescriptor> = pool()
                .all_messages()
                .filter(|message| !message.is_map_entry() && !is_well_known(message))
                .collect();
            let descriptor = &messages[pick % messages.len()];
            let message = if filled { full(descriptor, 2) } else { DynamicMessage::new(descriptor.clone()) };
            let mut bytes = message.encode_to_vec();
            for change in mutations {
                let len = bytes.len().max(1);
                match change {
                    Mutation::Set(at, byte) => {
                        if let Some(slot) = bytes.get_mut(at % len) {
                            *slot = byte;
                        }
                    }
                    Mutation::Cut(at) => bytes.truncate(at % len),
                    Mutation::Repeat(at, stretch) => {
                        let start = at % len;
                        let end = (start + stretch).min(bytes.len());
                        let copy = bytes.get(start..end).unwrap_or_default().to_vec();
                        bytes.splice(start..start, copy);
                    }
                }
            }
            let expected = rendered_by_dynamic_message(descriptor, &bytes);
            let rendered = to_json(descriptor, &bytes)
                .ok()
                .map(|json| serde_json::from_slice::<serde_json::Value>(&json).expect("valid JSON"));
            proptest::prop_assert_eq!(rendered, expected, "{}", descriptor.full_name());
        }
    }
}
