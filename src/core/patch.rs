//! The JSON Patch (RFC 6902) from a submitted object to its expansion, written while the
//! expansion is serialised.
//!
//! [`diff`] finds the operations `json_patch::diff` finds (the same ones, in the same order:
//! `tests/patch.rs` holds it to that), but walks the typed expansion with a serde `Serializer`
//! against the submitted object as a JSON tree ([`tree`], lighter than a `serde_json::Value`)
//! instead of turning the expansion into a `Value` first. What is equal is only compared; what is added is serialised once,
//! straight into the patch's text. Converting the expansion (mostly its scripts) to a `Value`,
//! diffing two trees and serialising the operations was four fifths of a CREATE's `/mutate`
//! (README "Performance").

mod tree;

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use serde::ser;
use serde_json::Value;

use tree::{Node, find, member_name};

// The buffering serialiser of what can't be compared as it streams (a value whose kind differs
// from the submitted one's, enum variants, tuples): rare in Kubernetes objects.
use serde_json::value::Serializer as ToValue;

type Error = serde_json::Error;

/// A JSON Patch as the JSON text of its array of operations.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonPatch(Vec<u8>);

impl JsonPatch {
    /// The patch with no operations.
    pub fn empty() -> Self {
        JsonPatch(b"[]".to_vec())
    }

    pub fn is_empty(&self) -> bool {
        self.0.len() <= 2
    }

    /// The JSON text, as the AdmissionReview's `patch` carries it (base64-encoded).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The operations, for a caller that applies them (the CLI) or inspects them.
    pub fn operations(&self) -> json_patch::Patch {
        serde_json::from_slice(&self.0).expect("written as a JSON Patch")
    }
}

impl fmt::Debug for JsonPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// The patch that turns `before` serialised as JSON into `after` serialised as JSON.
pub fn diff<B: Serialize + ?Sized, A: Serialize + ?Sized>(before: &B, after: &A) -> Result<JsonPatch, Error> {
    let before = Node::of(before)?;
    // A CREATE's patch is about 20 KB: growing to it from a small buffer copied it three times
    // over (callgrind).
    let mut writer = Writer { out: Vec::with_capacity(32 << 10), path: String::with_capacity(128) };
    writer.out.push(b'[');
    after.serialize(Differ { writer: &mut writer, before: &before })?;
    writer.out.push(b']');
    Ok(JsonPatch(writer.out))
}

/// The patch's text so far and the JSON Pointer of the value being compared.
struct Writer {
    out: Vec<u8>,
    path: String,
}

impl Writer {
    fn operation<V: Serialize + ?Sized>(&mut self, op: &str, value: Option<&V>) -> Result<(), Error> {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(b"{\"op\":\"");
        self.out.extend_from_slice(op.as_bytes());
        self.out.extend_from_slice(b"\",\"path\":");
        serde_json::to_writer(&mut self.out, self.path.as_str())?;
        if let Some(value) = value {
            self.out.extend_from_slice(b",\"value\":");
            serde_json::to_writer(&mut self.out, value)?;
        }
        self.out.push(b'}');
        Ok(())
    }

    fn remove(&mut self) -> Result<(), Error> {
        self.operation::<Value>("remove", None)
    }

    /// Appends a member's name as a pointer token (RFC 6901: `~` and `/` escaped) and returns
    /// the length to truncate back to.
    fn push_key(&mut self, key: &str) -> usize {
        let len = self.path.len();
        self.path.push('/');
        // Bytes, not chars: a char pattern decoded UTF-8 for every member compared.
        if key.bytes().any(|b| b == b'~' || b == b'/') {
            for c in key.chars() {
                match c {
                    '~' => self.path.push_str("~0"),
                    '/' => self.path.push_str("~1"),
                    c => self.path.push(c),
                }
            }
        } else {
            self.path.push_str(key);
        }
        len
    }

    fn push_index(&mut self, index: usize) -> usize {
        use std::fmt::Write as _;
        let len = self.path.len();
        write!(self.path, "/{index}").expect("writing to a String");
        len
    }
}

/// What was buffered, compared by `json_patch::diff` itself, its operations moved to the path
/// being compared.
fn diff_values(writer: &mut Writer, before: &Value, after: &Value) -> Result<(), Error> {
    for operation in json_patch::diff(before, after).0 {
        let len = writer.path.len();
        writer.path.push_str(operation.path().as_str());
        match &operation {
            json_patch::PatchOperation::Add(add) => writer.operation("add", Some(&add.value))?,
            json_patch::PatchOperation::Replace(replace) => {
                writer.operation("replace", Some(&replace.value))?
            }
            json_patch::PatchOperation::Remove(_) => writer.remove()?,
            other => unreachable!("json_patch::diff only adds, replaces and removes, not {other:?}"),
        }
        writer.path.truncate(len);
    }
    Ok(())
}

/// Serialises a value by comparing it with `before`, the value at the same path.
struct Differ<'a> {
    writer: &'a mut Writer,
    before: &'a Node,
}

impl Differ<'_> {
    fn scalar(self, after: Value) -> Result<(), Error> {
        if self.before.is_scalar(&after) { Ok(()) } else { self.writer.operation("replace", Some(&after)) }
    }

    fn buffered(self, after: Result<Value, Error>) -> Result<(), Error> {
        diff_values(self.writer, &self.before.to_value(), &after?)
    }
}

/// An array or object being compared member by member, or one being buffered.
enum Compound<'a> {
    Array {
        writer: &'a mut Writer,
        before: &'a [Node],
        index: usize,
    },
    Object {
        writer: &'a mut Writer,
        before: &'a [(Cow<'static, str>, Node)],
        /// Which members of `before` the new object has, and where the next is looked for.
        matched: Vec<bool>,
        next: usize,
        key: Option<String>,
    },
    Vec {
        writer: &'a mut Writer,
        before: &'a Node,
        buffer: <ToValue as ser::Serializer>::SerializeSeq,
    },
    Map {
        writer: &'a mut Writer,
        before: &'a Node,
        buffer: <ToValue as ser::Serializer>::SerializeMap,
    },
    TupleVariant {
        writer: &'a mut Writer,
        before: &'a Node,
        buffer: <ToValue as ser::Serializer>::SerializeTupleVariant,
    },
    StructVariant {
        writer: &'a mut Writer,
        before: &'a Node,
        buffer: <ToValue as ser::Serializer>::SerializeStructVariant,
    },
}

impl<'a> Compound<'a> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        match self {
            Compound::Array { writer, before, index } => {
                let len = writer.push_index(*index);
                match before.get(*index) {
                    Some(old) => value.serialize(Differ { writer, before: old })?,
                    None => writer.operation("add", Some(value))?,
                }
                writer.path.truncate(len);
                *index += 1;
                Ok(())
            }
            Compound::Vec { buffer, .. } => ser::SerializeSeq::serialize_element(buffer, value),
            Compound::TupleVariant { buffer, .. } => {
                ser::SerializeTupleVariant::serialize_field(buffer, value)
            }
            _ => unreachable!("elements are only given to arrays"),
        }
    }

    fn member<T: Serialize + ?Sized>(&mut self, key: Cow<'static, str>, value: &T) -> Result<(), Error> {
        let Compound::Object { writer, before, matched, next, .. } = self else {
            unreachable!("members are only given to objects")
        };
        let len = writer.push_key(&key);
        match find(before, *next, &key) {
            Some(index) => {
                value.serialize(Differ { writer, before: &before[index].1 })?;
                matched[index] = true;
                *next = index + 1;
            }
            None => writer.operation("add", Some(value))?,
        }
        writer.path.truncate(len);
        Ok(())
    }

    fn finish(self) -> Result<(), Error> {
        match self {
            Compound::Array { writer, before, index } => {
                // The elements past the new end, each at that index as the ones before it go.
                for _ in index..before.len() {
                    let len = writer.push_index(index);
                    writer.remove()?;
                    writer.path.truncate(len);
                }
                Ok(())
            }
            Compound::Object { writer, before, matched, .. } => {
                let gone = before.iter().zip(&matched).filter(|(_, matched)| !**matched);
                for ((key, _), _) in gone {
                    let len = writer.push_key(key);
                    writer.remove()?;
                    writer.path.truncate(len);
                }
                Ok(())
            }
            Compound::Vec { writer, before, buffer } => {
                diff_values(writer, &before.to_value(), &ser::SerializeSeq::end(buffer)?)
            }
            Compound::Map { writer, before, buffer } => {
                diff_values(writer, &before.to_value(), &ser::SerializeMap::end(buffer)?)
            }
            Compound::TupleVariant { writer, before, buffer } => {
                diff_values(writer, &before.to_value(), &ser::SerializeTupleVariant::end(buffer)?)
            }
            Compound::StructVariant { writer, before, buffer } => {
                diff_values(writer, &before.to_value(), &ser::SerializeStructVariant::end(buffer)?)
            }
        }
    }
}

/// Scalars compared with the submitted value as `serde_json` would turn them into one.
macro_rules! compared_scalar {
    ($($method:ident: $type:ty),*) => {
        $(fn $method(self, v: $type) -> Result<(), Error> {
            self.scalar(Value::from(v))
        })*
    };
}

/// Scalars whose JSON form `serde_json` decides (floats, 128-bit integers, bytes).
macro_rules! buffered_scalar {
    ($($method:ident: $type:ty),*) => {
        $(fn $method(self, v: $type) -> Result<(), Error> {
            self.buffered(ser::Serializer::$method(ToValue, v))
        })*
    };
}

impl<'a> ser::Serializer for Differ<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    compared_scalar!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);
    buffered_scalar!(serialize_i128: i128, serialize_u128: u128, serialize_f32: f32, serialize_f64: f64,
        serialize_bytes: &[u8]);

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        if self.before.as_str() == Some(v) { Ok(()) } else { self.writer.operation("replace", Some(v)) }
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.scalar(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.scalar(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.scalar(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.buffered(ser::Serializer::serialize_newtype_variant(ToValue, name, index, variant, value))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(match self.before {
            Node::Array(before) => Compound::Array { writer: self.writer, before, index: 0 },
            before => Compound::Vec {
                writer: self.writer,
                before,
                buffer: ser::Serializer::serialize_seq(ToValue, len)?,
            },
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        let buffer = ser::Serializer::serialize_tuple_variant(ToValue, name, index, variant, len)?;
        Ok(Compound::TupleVariant { writer: self.writer, before: self.before, buffer })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(match self.before {
            Node::Object(before) => Compound::Object {
                writer: self.writer,
                before,
                matched: vec![false; before.len()],
                next: 0,
                key: None,
            },
            before => Compound::Map {
                writer: self.writer,
                before,
                buffer: ser::Serializer::serialize_map(ToValue, len)?,
            },
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        let buffer = ser::Serializer::serialize_struct_variant(ToValue, name, index, variant, len)?;
        Ok(Compound::StructVariant { writer: self.writer, before: self.before, buffer })
    }
}

/// Arrays, tuples and tuple variants take elements one by one, in order.
macro_rules! sequence {
    ($($serialize:ident::$element:ident),*) => {$(
        impl ser::$serialize for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn $element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    )*};
}

sequence!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        match self {
            Compound::Object { key: slot, .. } => {
                *slot = Some(member_name(key)?);
                Ok(())
            }
            Compound::Map { buffer, .. } => ser::SerializeMap::serialize_key(buffer, key),
            _ => unreachable!("keys are only given to maps"),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        match self {
            Compound::Object { key, .. } => {
                let key = key.take().expect("serde gives a map's key before its value");
                self.member(Cow::Owned(key), value)
            }
            Compound::Map { buffer, .. } => ser::SerializeMap::serialize_value(buffer, value),
            _ => unreachable!("values are only given to maps"),
        }
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        match self {
            Compound::Object { .. } => self.member(Cow::Borrowed(key), value),
            Compound::Map { buffer, .. } => ser::SerializeStruct::serialize_field(buffer, key, value),
            _ => unreachable!("fields are only given to objects"),
        }
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        match self {
            Compound::StructVariant { buffer, .. } => {
                ser::SerializeStructVariant::serialize_field(buffer, key, value)
            }
            _ => unreachable!("variant fields are only given to struct variants"),
        }
    }
    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}
