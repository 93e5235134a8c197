//! Turns a parsed [`Spec`] into the Rust source of `src/protocol/generated.rs`.
//!
//! The output depends only on the spec (no timestamps, no hash-map order), so regenerating an
//! unchanged spec gives a byte-identical file and the drift test can compare them.

use std::fmt::Write;

use crate::{Class, Field, Method, Primitive, ReplyClass, Sender, Spec};

/// `queue-declare` -> `QueueDeclare`.
fn pascal(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `routing-key` -> `routing_key`; `type` is a Rust keyword, so it becomes `kind`.
fn snake(name: &str) -> String {
    match name {
        "type" => "kind".to_string(),
        other => other.replace('-', "_"),
    }
}

fn screaming(name: &str) -> String {
    name.replace('-', "_").to_ascii_uppercase()
}

/// `LongStr` -> `LONG_STR`.
fn screaming_from_pascal(name: &str) -> String {
    let mut out = String::new();
    for (index, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() && index > 0 {
            let previous = name.as_bytes()[index - 1];
            if previous.is_ascii_lowercase() {
                out.push('_');
            }
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

fn struct_name(class: &Class, method: &Method) -> String {
    pascal(&format!("{}-{}", class.name, method.name))
}

fn rust_type(ty: Primitive) -> &'static str {
    match ty {
        Primitive::Bit => "bool",
        Primitive::Octet => "u8",
        Primitive::Short => "u16",
        Primitive::Long => "u32",
        Primitive::LongLong | Primitive::Timestamp => "u64",
        Primitive::ShortStr => "ShortStr",
        Primitive::LongStr => "LongStr",
        Primitive::Table => "FieldTable",
    }
}

fn decoder(ty: Primitive) -> &'static str {
    match ty {
        Primitive::Bit | Primitive::Octet => "wire::octet(i)",
        Primitive::Short => "wire::short(i)",
        Primitive::Long => "wire::long(i)",
        Primitive::LongLong | Primitive::Timestamp => "wire::longlong(i)",
        Primitive::ShortStr => "wire::short_str(src, i)",
        Primitive::LongStr => "wire::long_str(src, i)",
        Primitive::Table => "field::table(src, i)",
    }
}

/// Reserved fields are read without building a value: only their extent matters.
fn skipper(ty: Primitive) -> &'static str {
    match ty {
        Primitive::ShortStr => "wire::skip_short_str(i)",
        Primitive::LongStr => "wire::skip_long_str(i)",
        Primitive::Table => "field::skip_table(i)",
        other => decoder(other),
    }
}

fn encoder(ty: Primitive, value: &str) -> String {
    match ty {
        Primitive::Bit | Primitive::Octet => format!("out.put_u8({value});"),
        Primitive::Short => format!("out.put_u16({value});"),
        Primitive::Long => format!("out.put_u32({value});"),
        Primitive::LongLong | Primitive::Timestamp => format!("out.put_u64({value});"),
        Primitive::ShortStr => format!("wire::put_short_str(out, &{value});"),
        Primitive::LongStr => format!("wire::put_long_str(out, &{value});"),
        Primitive::Table => format!("{value}.encode(out);"),
    }
}

fn zero_encoder(ty: Primitive) -> &'static str {
    match ty {
        Primitive::Bit | Primitive::Octet | Primitive::ShortStr => "out.put_u8(0);",
        Primitive::Short => "out.put_u16(0);",
        Primitive::Long | Primitive::LongStr | Primitive::Table => "out.put_u32(0);",
        Primitive::LongLong | Primitive::Timestamp => "out.put_u64(0);",
    }
}

fn strategy(ty: Primitive) -> &'static str {
    match ty {
        Primitive::Bit => "any::<bool>()",
        Primitive::Octet => "any::<u8>()",
        Primitive::Short => "any::<u16>()",
        Primitive::Long => "any::<u32>()",
        Primitive::LongLong | Primitive::Timestamp => "any::<u64>()",
        Primitive::ShortStr => "field::arbitrary::short_str()",
        Primitive::LongStr => "field::arbitrary::long_str()",
        Primitive::Table => "field::arbitrary::table()",
    }
}

fn needs_source(ty: Primitive) -> bool {
    matches!(
        ty,
        Primitive::ShortStr | Primitive::LongStr | Primitive::Table
    )
}

/// Fields in wire order, with consecutive bits gathered into octets.
enum Slot<'a> {
    Single(&'a Field),
    Bits(Vec<&'a Field>),
}

fn slots(fields: &[Field]) -> Vec<Slot<'_>> {
    let mut out: Vec<Slot<'_>> = Vec::new();
    for field in fields {
        if field.ty == Primitive::Bit {
            if let Some(Slot::Bits(bits)) = out.last_mut() {
                if bits.len() < 8 {
                    bits.push(field);
                    continue;
                }
            }
            out.push(Slot::Bits(vec![field]));
        } else {
            out.push(Slot::Single(field));
        }
    }
    out
}

pub fn generate_from_spec(spec: &Spec) -> String {
    let mut out = String::new();
    header(&mut out);
    constants(&mut out, spec);
    reply_codes(&mut out, spec);
    field_types(&mut out, spec);
    for class in &spec.classes {
        for method in &class.methods {
            method_struct(&mut out, class, method);
        }
    }
    method_enum(&mut out, spec);
    properties(&mut out, spec);
    arbitrary(&mut out, spec);
    out
}

fn header(out: &mut String) {
    out.push_str(
        "// @generated by `cargo run -p amqp-spec --bin amqp-codegen` from amqp-spec/amqp-0-9-1.spec.
// Do not edit: change the spec or the generator and regenerate.

//! AMQP 0-9-1 constants, reply codes, methods and basic properties, generated from the spec.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::MethodError;
use super::field::{self, FieldTable, LongStr, ShortStr};
use super::wire::{self, WireResult};

/// Which peer may send a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    Client,
    Server,
    Both,
}
",
    );
}

fn constants(out: &mut String, spec: &Spec) {
    out.push('\n');
    for constant in &spec.constants {
        let ty = rust_type(constant.ty);
        let _ = writeln!(
            out,
            "pub const {}: {ty} = {};",
            screaming(&constant.name),
            constant.value
        );
    }
    out.push('\n');
    for class in &spec.classes {
        let _ = writeln!(
            out,
            "pub const CLASS_{}: u16 = {};",
            screaming(&class.name),
            class.id
        );
    }
}

fn reply_codes(out: &mut String, spec: &Spec) {
    out.push_str(
        "
/// An AMQP reply code. Soft codes close a channel, hard codes close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(u16);

impl ReplyCode {
",
    );
    for reply in &spec.replies {
        let _ = writeln!(
            out,
            "    pub const {}: ReplyCode = ReplyCode({});",
            screaming(&reply.name),
            reply.code
        );
    }
    out.push_str(
        "
    /// The reply code with this number, if the spec defines one.
    pub const fn from_code(code: u16) -> Option<ReplyCode> {
        match code {
",
    );
    for reply in &spec.replies {
        let _ = writeln!(
            out,
            "            {} => Some(ReplyCode::{}),",
            reply.code,
            screaming(&reply.name)
        );
    }
    out.push_str(
        "            _ => None,
        }
    }

    pub const fn code(self) -> u16 {
        self.0
    }

    /// The name RabbitMQ puts at the start of reply texts, such as `FRAME_ERROR`.
    pub const fn name(self) -> &'static str {
        match self.0 {
",
    );
    for reply in &spec.replies {
        let _ = writeln!(
            out,
            "            {} => \"{}\",",
            reply.code,
            screaming(&reply.name)
        );
    }
    out.push_str(
        "            _ => \"UNKNOWN\",
        }
    }

    /// A hard error closes the connection.
    pub const fn is_hard(self) -> bool {
        matches!(self.0, ",
    );
    push_codes(out, spec, ReplyClass::Hard);
    out.push_str(
        ")
    }

    /// A soft error closes only the channel.
    pub const fn is_soft(self) -> bool {
        matches!(self.0, ",
    );
    push_codes(out, spec, ReplyClass::Soft);
    out.push_str(
        ")
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
",
    );
}

fn push_codes(out: &mut String, spec: &Spec, class: ReplyClass) {
    let codes: Vec<String> = spec
        .replies
        .iter()
        .filter(|r| r.class == class)
        .map(|r| r.code.to_string())
        .collect();
    out.push_str(&codes.join(" | "));
}

fn field_types(out: &mut String, spec: &Spec) {
    out.push_str("\n/// RabbitMQ's field-table type codes (see the errata in the spec).\npub mod field_type {\n");
    for field_type in &spec.field_types {
        let _ = writeln!(
            out,
            "    pub const {}: u8 = b'{}';",
            screaming_from_pascal(&field_type.variant),
            field_type.code as char
        );
    }
    out.push_str("}\n");
}

fn method_struct(out: &mut String, class: &Class, method: &Method) {
    let name = struct_name(class, method);
    let visible: Vec<&Field> = method.fields.iter().filter(|f| !f.reserved).collect();
    let _ = writeln!(
        out,
        "\n/// `{}.{}` ({}, {}).",
        class.name, method.name, class.id, method.id
    );
    out.push_str("#[derive(Debug, Clone, PartialEq, Default)]\n");
    if visible.is_empty() {
        let _ = writeln!(out, "pub struct {name};");
    } else {
        let _ = writeln!(out, "pub struct {name} {{");
        for field in &visible {
            let _ = writeln!(
                out,
                "    pub {}: {},",
                snake(&field.name),
                rust_type(field.ty)
            );
        }
        out.push_str("}\n");
    }

    let _ = writeln!(out, "\nimpl {name} {{");
    let _ = writeln!(out, "    pub const CLASS_ID: u16 = {};", class.id);
    let _ = writeln!(out, "    pub const METHOD_ID: u16 = {};", method.id);
    let _ = writeln!(
        out,
        "    pub const NAME: &'static str = \"{}.{}\";",
        class.name, method.name
    );
    decode_args(out, method, &visible);
    encode_args(out, method);
    out.push_str("}\n");
    let _ = writeln!(
        out,
        "\nimpl From<{name}> for Method {{\n    fn from(method: {name}) -> Method {{\n        Method::{name}(method)\n    }}\n}}"
    );
}

/// A method struct's `decode_args`: the fields in wire order, bits unpacked from their octets.
fn decode_args(out: &mut String, method: &Method, visible: &[&Field]) {
    let uses_source = visible.iter().any(|f| needs_source(f.ty));
    let source = if uses_source { "src" } else { "_src" };
    let _ = writeln!(
        out,
        "\n    fn decode_args<'a>({source}: &Bytes, i: &'a [u8]) -> WireResult<'a, Self> {{"
    );
    for (index, slot) in slots(&method.fields).iter().enumerate() {
        match slot {
            Slot::Single(field) if field.reserved => {
                let _ = writeln!(out, "        let (i, _) = {}?;", skipper(field.ty));
            }
            Slot::Single(field) => {
                let _ = writeln!(
                    out,
                    "        let (i, {}) = {}?;",
                    snake(&field.name),
                    decoder(field.ty)
                );
            }
            Slot::Bits(bits) => {
                let used = bits.iter().any(|f| !f.reserved);
                let octet = if used {
                    format!("bits{index}")
                } else {
                    "_".to_string()
                };
                let _ = writeln!(out, "        let (i, {octet}) = wire::octet(i)?;");
                for (bit, field) in bits.iter().enumerate().filter(|(_, f)| !f.reserved) {
                    let _ = writeln!(
                        out,
                        "        let {} = {octet} & 0x{:02x} != 0;",
                        snake(&field.name),
                        1u8 << bit
                    );
                }
            }
        }
    }
    if visible.is_empty() {
        out.push_str("        Ok((i, Self))\n");
    } else {
        let names: Vec<String> = visible.iter().map(|f| snake(&f.name)).collect();
        if names.len() <= 4 {
            let _ = writeln!(out, "        Ok((i, Self {{ {} }}))", names.join(", "));
        } else {
            out.push_str("        Ok((\n            i,\n            Self {\n");
            for field in &names {
                let _ = writeln!(out, "                {field},");
            }
            out.push_str("            },\n        ))\n");
        }
    }
    out.push_str("    }\n");
}

/// A method struct's `encode_args`: the fields in wire order, bits packed into their octets.
fn encode_args(out: &mut String, method: &Method) {
    let target = if method.fields.is_empty() {
        "_out"
    } else {
        "out"
    };
    let _ = writeln!(
        out,
        "\n    fn encode_args(&self, {target}: &mut BytesMut) {{"
    );
    for slot in slots(&method.fields) {
        match slot {
            Slot::Single(field) if field.reserved => {
                let _ = writeln!(out, "        {}", zero_encoder(field.ty));
            }
            Slot::Single(field) => {
                let value = format!("self.{}", snake(&field.name));
                let _ = writeln!(out, "        {}", encoder(field.ty, &value));
            }
            Slot::Bits(bits) => {
                let parts: Vec<String> = bits
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| !f.reserved)
                    .map(|(bit, f)| match bit {
                        0 => format!("u8::from(self.{})", snake(&f.name)),
                        _ => format!("(u8::from(self.{}) << {bit})", snake(&f.name)),
                    })
                    .collect();
                match parts.len() {
                    0 => out.push_str("        out.put_u8(0);\n"),
                    1 | 2 => {
                        let _ = writeln!(out, "        out.put_u8({});", parts.join(" | "));
                    }
                    _ => {
                        let _ = writeln!(
                            out,
                            "        out.put_u8(\n            {}\n        );",
                            parts.join("\n                | ")
                        );
                    }
                }
            }
        }
    }
    out.push_str("    }\n");
}

fn all_methods(spec: &Spec) -> Vec<(&Class, &Method, String)> {
    spec.classes
        .iter()
        .flat_map(|c| c.methods.iter().map(move |m| (c, m, struct_name(c, m))))
        .collect()
}

fn method_enum(out: &mut String, spec: &Spec) {
    let methods = all_methods(spec);
    out.push_str("\n/// Every method of AMQP 0-9-1 with RabbitMQ's extensions.\n");
    out.push_str("#[derive(Debug, Clone, PartialEq)]\npub enum Method {\n");
    for (_, _, name) in &methods {
        let _ = writeln!(out, "    {name}({name}),");
    }
    out.push_str("}\n\nimpl Method {\n");

    let accessor =
        |out: &mut String, sig: &str, value: &dyn Fn(&Class, &Method, &str) -> String| {
            let _ = writeln!(out, "    {sig} {{\n        match self {{");
            for (class, method, name) in &methods {
                let _ = writeln!(
                    out,
                    "            Method::{name}(_) => {},",
                    value(class, method, name)
                );
            }
            out.push_str("        }\n    }\n\n");
        };
    accessor(out, "pub fn class_id(&self) -> u16", &|_, _, name| {
        format!("{name}::CLASS_ID")
    });
    accessor(out, "pub fn method_id(&self) -> u16", &|_, _, name| {
        format!("{name}::METHOD_ID")
    });
    out.push_str("    /// The spec name, such as `connection.start`.\n");
    accessor(out, "pub fn name(&self) -> &'static str", &|_, _, name| {
        format!("{name}::NAME")
    });
    out.push_str("    /// Whether a content header and body frames follow this method.\n");
    accessor(out, "pub fn has_content(&self) -> bool", &|_, m, _| {
        m.content.to_string()
    });
    out.push_str("    /// Whether the sender waits for a reply method.\n");
    accessor(out, "pub fn is_synchronous(&self) -> bool", &|_, m, _| {
        m.synchronous.to_string()
    });
    accessor(out, "pub fn sender(&self) -> Sender", &|_, m, _| {
        match m.sender {
            Sender::Client => "Sender::Client",
            Sender::Server => "Sender::Server",
            Sender::Both => "Sender::Both",
        }
        .to_string()
    });

    out.push_str(
        "    /// Decodes a method frame payload, which starts at the class id. Every byte must be used.
    #[allow(clippy::too_many_lines)] // generated: one match arm per method
    pub fn decode(payload: Bytes) -> Result<Method, MethodError> {
        let (class_id, method_id, args) = wire::method_ids(&payload)?;
        let decoded = match (class_id, method_id) {
",
    );
    for (class, method, name) in &methods {
        let _ = writeln!(
            out,
            "            ({}, {}) => {name}::decode_args(&payload, args)\n                .map(|(i, m)| (i, Method::{name}(m))),",
            class.id, method.id
        );
    }
    out.push_str(
        "            _ => return Err(MethodError::unknown(class_id, method_id)),
        };
        wire::finish_method(class_id, method_id, &payload, decoded)
    }

    /// Appends the class id, method id and arguments.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.class_id());
        out.put_u16(self.method_id());
        match self {
",
    );
    for (_, _, name) in &methods {
        let _ = writeln!(out, "            Method::{name}(m) => m.encode_args(out),");
    }
    out.push_str(
        "        }
    }
}

/// The spec name of a method id pair, such as `basic.publish` for (60, 40).
pub fn method_name(class_id: u16, method_id: u16) -> Option<&'static str> {
    match (class_id, method_id) {
",
    );
    for (class, method, name) in &methods {
        let _ = writeln!(
            out,
            "        ({}, {}) => Some({name}::NAME),",
            class.id, method.id
        );
    }
    out.push_str("        _ => None,\n    }\n}\n");
}

fn properties(out: &mut String, spec: &Spec) {
    out.push_str("\n/// The content properties of class basic, all optional, in flag order.\n");
    out.push_str("#[derive(Debug, Clone, PartialEq, Default)]\npub struct BasicProperties {\n");
    for property in &spec.properties {
        let _ = writeln!(
            out,
            "    pub {}: Option<{}>,",
            snake(&property.name),
            rust_type(property.ty)
        );
    }
    out.push_str("}\n\nimpl BasicProperties {\n");
    let flag = |index: usize| 0x8000u16 >> index;
    let _ = writeln!(
        out,
        "    /// The property-flags bits this version of the spec defines.\n    pub(crate) const KNOWN_FLAGS: u16 = 0x{:04x};\n",
        spec.properties.iter().enumerate().fold(0u16, |acc, (index, _)| acc | flag(index))
    );
    out.push_str("    /// The property-flags word: bit 15 is the first property.\n");
    out.push_str("    pub(crate) fn flags(&self) -> u16 {\n        let mut flags = 0;\n");
    for (index, property) in spec.properties.iter().enumerate() {
        let _ = writeln!(
            out,
            "        if self.{}.is_some() {{\n            flags |= 0x{:04x};\n        }}",
            snake(&property.name),
            flag(index)
        );
    }
    out.push_str("        flags\n    }\n\n");
    out.push_str(
        "    pub(crate) fn decode_fields<'a>(src: &Bytes, flags: u16, i: &'a [u8]) -> WireResult<'a, Self> {
        let mut properties = Self::default();
        let mut i = i;
",
    );
    for (index, property) in spec.properties.iter().enumerate() {
        let _ = writeln!(
            out,
            "        if flags & 0x{:04x} != 0 {{\n            let (rest, value) = {}?;\n            properties.{} = Some(value);\n            i = rest;\n        }}",
            flag(index),
            decoder(property.ty),
            snake(&property.name)
        );
    }
    out.push_str("        Ok((i, properties))\n    }\n\n");
    out.push_str("    pub(crate) fn encode_fields(&self, out: &mut BytesMut) {\n");
    for property in &spec.properties {
        let _ = writeln!(
            out,
            "        if let Some(value) = &self.{} {{\n            {}\n        }}",
            snake(&property.name),
            encoder(property.ty, "*value")
                .replace("&*value", "value")
                .replace("*value.encode", "value.encode")
        );
    }
    out.push_str("    }\n}\n");
}

fn arbitrary(out: &mut String, spec: &Spec) {
    out.push_str(
        "
/// proptest strategies for every method and the basic properties.
#[cfg(test)]
pub(crate) mod arbitrary {
    use proptest::prelude::*;
    use proptest::strategy::Union;

    use super::*;
",
    );
    let methods = all_methods(spec);
    for (_, method, name) in &methods {
        let visible: Vec<&Field> = method.fields.iter().filter(|f| !f.reserved).collect();
        let function = screaming_from_pascal(name).to_ascii_lowercase();
        let _ = writeln!(
            out,
            "\n    pub(crate) fn {function}() -> impl Strategy<Value = {name}> {{"
        );
        if visible.is_empty() {
            let _ = writeln!(out, "        Just({name})");
        } else {
            let names: Vec<String> = visible.iter().map(|f| snake(&f.name)).collect();
            for field in &visible {
                let _ = writeln!(
                    out,
                    "        let {} = {};",
                    snake(&field.name),
                    strategy(field.ty)
                );
            }
            let _ = writeln!(
                out,
                "        ({},).prop_map(|v| {name} {{",
                names.join(", ")
            );
            for (index, field) in names.iter().enumerate() {
                let _ = writeln!(out, "            {field}: v.{index},");
            }
            out.push_str("        })\n");
        }
        out.push_str("    }\n");
    }
    out.push_str(
        "\n    /// Every method's strategy beside its name, so a test can cover each one.\n",
    );
    out.push_str("    pub(crate) fn methods() -> Vec<(&'static str, BoxedStrategy<Method>)> {\n        vec![\n");
    for (_, _, name) in &methods {
        let function = screaming_from_pascal(name).to_ascii_lowercase();
        let _ = writeln!(
            out,
            "            ({name}::NAME, {function}().prop_map(Method::from).boxed()),"
        );
    }
    out.push_str("        ]\n    }\n");
    out.push_str("\n    pub(crate) fn method() -> impl Strategy<Value = Method> {\n");
    out.push_str(
        "        Union::new(methods().into_iter().map(|(_, strategy)| strategy))\n    }\n",
    );

    // proptest tuples stop at 12 elements, so the properties are drawn in two halves.
    out.push_str("\n    pub(crate) fn properties() -> impl Strategy<Value = BasicProperties> {\n");
    for property in &spec.properties {
        let _ = writeln!(
            out,
            "        let {} = proptest::option::of({});",
            snake(&property.name),
            strategy(property.ty)
        );
    }
    let half = spec.properties.len().div_ceil(2);
    let (first, second) = spec.properties.split_at(half);
    let tuple = |fields: &[Field]| {
        format!(
            "({},)",
            fields
                .iter()
                .map(|f| snake(&f.name))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let _ = writeln!(out, "        let first = {};", tuple(first));
    let _ = writeln!(out, "        let second = {};", tuple(second));
    out.push_str("        (first, second).prop_map(|(a, b)| BasicProperties {\n");
    for (index, property) in first.iter().enumerate() {
        let _ = writeln!(out, "            {}: a.{index},", snake(&property.name));
    }
    for (index, property) in second.iter().enumerate() {
        let _ = writeln!(out, "            {}: b.{index},", snake(&property.name));
    }
    out.push_str("        })\n    }\n}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(pascal("recover-async"), "RecoverAsync");
        assert_eq!(snake("type"), "kind");
        assert_eq!(snake("auto-delete"), "auto_delete");
        assert_eq!(screaming_from_pascal("ByteArray"), "BYTE_ARRAY");
        assert_eq!(screaming_from_pascal("I16"), "I16");
        assert_eq!(
            screaming_from_pascal("BasicRecoverOk").to_ascii_lowercase(),
            "basic_recover_ok"
        );
    }
}
