//! The submitted object as the patch writer compares against it: the tree `serde_json`'s value
//! serialiser makes, without its hashed maps.
//!
//! A `serde_json::Value` object is an `IndexMap` keyed by owned strings (the `preserve_order`
//! feature the CLI's output needs): building one for the submitted object hashed and copied every
//! key, and each member the expansion compares hashed it again, a tenth of a `/mutate`
//! (callgrind). Here a struct's field names are the `&'static str`s serde hands over, and a
//! member is looked up from where the last one was found: both sides serialise the same types,
//! so the next member is almost always the next one.

use std::borrow::Cow;

use serde::Serialize;
use serde::ser;
use serde_json::{Map, Number, Value};

// What the tree makes of the rare forms (floats, 128-bit integers, bytes, enum variants): as
// `serde_json` would, through its own serialiser.
use serde_json::value::Serializer as ToValue;

type Error = serde_json::Error;

/// A JSON value; an object's members in the order they were serialised.
#[derive(Debug)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(Cow<'static, str>, Node)>),
}

impl Node {
    /// `value` as a tree, exactly as `serde_json::to_value` would make it.
    pub(super) fn of<T: Serialize + ?Sized>(value: &T) -> Result<Node, Error> {
        value.serialize(Build)
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is the scalar `value` (false for arrays and objects).
    pub(super) fn is_scalar(&self, value: &Value) -> bool {
        match (self, value) {
            (Node::Null, Value::Null) => true,
            (Node::Bool(a), Value::Bool(b)) => a == b,
            (Node::Number(a), Value::Number(b)) => a == b,
            (Node::String(a), Value::String(b)) => a == b,
            _ => false,
        }
    }

    /// This tree as a `Value`, for what is compared by `json_patch::diff` (rare).
    pub(super) fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.clone()),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(members) => {
                Value::Object(members.iter().map(|(k, v)| (k.to_string(), v.to_value())).collect())
            }
        }
    }

    fn from_value(value: Value) -> Node {
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(b),
            Value::Number(n) => Node::Number(n),
            Value::String(s) => Node::String(s),
            Value::Array(items) => Node::Array(items.into_iter().map(Node::from_value).collect()),
            Value::Object(members) => Node::Object(object_of(members)),
        }
    }
}

fn object_of(members: Map<String, Value>) -> Vec<(Cow<'static, str>, Node)> {
    members.into_iter().map(|(k, v)| (Cow::Owned(k), Node::from_value(v))).collect()
}

/// The index of the member named `key`, looked for at `from` first.
pub(super) fn find(members: &[(Cow<'static, str>, Node)], from: usize, key: &str) -> Option<usize> {
    match members.get(from) {
        Some((name, _)) if name == key => Some(from),
        _ => members.iter().position(|(name, _)| name == key),
    }
}

/// A map key as JSON writes it: a string, or a number or boolean in its text (as `serde_json`
/// does). Anything else can't be a member's name.
pub(super) fn member_name<T: Serialize + ?Sized>(key: &T) -> Result<String, Error> {
    match key.serialize(ToValue)? {
        Value::String(name) => Ok(name),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(boolean) => Ok(boolean.to_string()),
        _ => Err(ser::Error::custom("a map key must be a string, a number or a boolean")),
    }
}

/// The serialiser that builds a [`Node`].
struct Build;

/// An array or object being built.
struct Compound {
    items: Vec<Node>,
    members: Vec<(Cow<'static, str>, Node)>,
    key: Option<String>,
}

impl Compound {
    fn new(len: Option<usize>, object: bool) -> Compound {
        let len = len.unwrap_or(0);
        let (items, members) = if object {
            (Vec::new(), Vec::with_capacity(len))
        } else {
            (Vec::with_capacity(len), Vec::new())
        };
        Compound { items, members, key: None }
    }
}

/// Integers and booleans, which `Value::from` turns into what `serde_json` serialises.
macro_rules! scalar {
    ($($method:ident: $type:ty),*) => {
        $(fn $method(self, v: $type) -> Result<Node, Error> {
            Ok(Node::from_value(Value::from(v)))
        })*
    };
}

/// What `serde_json`'s value serialiser decides (floats, 128-bit integers, bytes).
macro_rules! as_serde_json {
    ($($method:ident: $type:ty),*) => {
        $(fn $method(self, v: $type) -> Result<Node, Error> {
            ser::Serializer::$method(ToValue, v).map(Node::from_value)
        })*
    };
}

impl ser::Serializer for Build {
    type Ok = Node;
    type Error = Error;
    type SerializeSeq = Compound;
    type SerializeTuple = Compound;
    type SerializeTupleStruct = Compound;
    type SerializeTupleVariant = Variant<<ToValue as ser::Serializer>::SerializeTupleVariant>;
    type SerializeMap = Compound;
    type SerializeStruct = Compound;
    type SerializeStructVariant = Variant<<ToValue as ser::Serializer>::SerializeStructVariant>;

    scalar!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64);
    as_serde_json!(serialize_i128: i128, serialize_u128: u128, serialize_f32: f32, serialize_f64: f64,
        serialize_bytes: &[u8]);

    fn serialize_char(self, v: char) -> Result<Node, Error> {
        Ok(Node::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Node, Error> {
        Ok(Node::String(v.to_owned()))
    }
    fn serialize_none(self) -> Result<Node, Error> {
        Ok(Node::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Node, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Node, Error> {
        Ok(Node::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Node, Error> {
        Ok(Node::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Node, Error> {
        Ok(Node::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Node, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Node, Error> {
        ser::Serializer::serialize_newtype_variant(ToValue, name, index, variant, value).map(Node::from_value)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound, Error> {
        Ok(Compound::new(len, false))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound, Error> {
        Ok(Compound::new(Some(len), false))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound, Error> {
        Ok(Compound::new(Some(len), false))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        ser::Serializer::serialize_tuple_variant(ToValue, name, index, variant, len).map(Variant)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound, Error> {
        Ok(Compound::new(len, true))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound, Error> {
        Ok(Compound::new(Some(len), true))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        ser::Serializer::serialize_struct_variant(ToValue, name, index, variant, len).map(Variant)
    }
}

/// Arrays and tuples take elements one by one, in order.
macro_rules! sequence {
    ($($serialize:ident::$element:ident),*) => {$(
        impl ser::$serialize for Compound {
            type Ok = Node;
            type Error = Error;
            fn $element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.items.push(value.serialize(Build)?);
                Ok(())
            }
            fn end(self) -> Result<Node, Error> {
                Ok(Node::Array(self.items))
            }
        }
    )*};
}

sequence!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl ser::SerializeMap for Compound {
    type Ok = Node;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(member_name(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self.key.take().expect("serde gives a map's key before its value");
        // Not checked for a repeated key: the maps serialised here (k8s-openapi's BTreeMaps,
        // `Value`'s objects) have each key once, and checking would be quadratic.
        self.members.push((Cow::Owned(key), value.serialize(Build)?));
        Ok(())
    }
    fn end(self) -> Result<Node, Error> {
        Ok(Node::Object(self.members))
    }
}

impl ser::SerializeStruct for Compound {
    type Ok = Node;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.members.push((Cow::Borrowed(key), value.serialize(Build)?));
        Ok(())
    }
    fn end(self) -> Result<Node, Error> {
        Ok(Node::Object(self.members))
    }
}

/// An enum variant with fields, built by `serde_json`'s serialiser (rare in these objects).
struct Variant<S>(S);

impl<S: ser::SerializeTupleVariant<Ok = Value, Error = Error>> ser::SerializeTupleVariant for Variant<S> {
    type Ok = Node;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.0.serialize_field(value)
    }
    fn end(self) -> Result<Node, Error> {
        self.0.end().map(Node::from_value)
    }
}

impl<S: ser::SerializeStructVariant<Ok = Value, Error = Error>> ser::SerializeStructVariant for Variant<S> {
    type Ok = Node;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.0.serialize_field(key, value)
    }
    fn end(self) -> Result<Node, Error> {
        self.0.end().map(Node::from_value)
    }
}
