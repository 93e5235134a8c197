//! Warren's machine-readable description of AMQP 0-9-1 (`amqp-0-9-1.spec`) and the generator
//! that turns it into `src/protocol/generated.rs`.
//!
//! The spec format is documented in the comment header of `amqp-0-9-1.spec`. The parser is
//! hand-written on purpose: the format is a handful of line kinds, and owning the parser keeps
//! its error messages pointing at the offending line.

mod generate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub use generate::generate_from_spec;

/// The spec shipped with this crate.
pub const SPEC_TEXT: &str = include_str!("../amqp-0-9-1.spec");

/// Parses `spec_text` and returns the Rust source of `src/protocol/generated.rs`.
pub fn generate(spec_text: &str) -> Result<String, SpecError> {
    let spec = Spec::parse(spec_text)?;
    Ok(generate_from_spec(&spec))
}

/// A problem in the spec text, with the 1-based line it was found on (0 when it concerns the
/// whole document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "amqp spec line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for SpecError {}

/// The wire types every domain resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primitive {
    Bit,
    Octet,
    Short,
    Long,
    LongLong,
    ShortStr,
    LongStr,
    Timestamp,
    Table,
}

impl Primitive {
    fn parse(word: &str) -> Option<Primitive> {
        Some(match word {
            "bit" => Primitive::Bit,
            "octet" => Primitive::Octet,
            "short" => Primitive::Short,
            "long" => Primitive::Long,
            "longlong" => Primitive::LongLong,
            "shortstr" => Primitive::ShortStr,
            "longstr" => Primitive::LongStr,
            "timestamp" => Primitive::Timestamp,
            "table" => Primitive::Table,
            _ => return None,
        })
    }

    /// The spelling of the forced default that a reserved field of this type must carry.
    fn zero(self) -> &'static str {
        match self {
            Primitive::Bit => "false",
            Primitive::ShortStr | Primitive::LongStr => "\"\"",
            Primitive::Table => "{}",
            _ => "0",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyClass {
    Success,
    Soft,
    Hard,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constant {
    pub name: String,
    pub value: u32,
    pub ty: Primitive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub name: String,
    pub class: ReplyClass,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub domain: String,
    pub ty: Primitive,
    pub reserved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    pub name: String,
    pub id: u16,
    pub synchronous: bool,
    pub reply: Option<String>,
    pub content: bool,
    pub sender: Sender,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub id: u16,
    pub methods: Vec<Method>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldType {
    pub code: u8,
    pub variant: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erratum {
    pub topic: String,
    pub key: String,
    pub values: Vec<String>,
}

/// The parsed and cross-checked spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    pub constants: Vec<Constant>,
    pub replies: Vec<Reply>,
    pub domains: BTreeMap<String, Primitive>,
    pub classes: Vec<Class>,
    pub properties: Vec<Field>,
    pub field_types: Vec<FieldType>,
    pub errata: Vec<Erratum>,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError {
        line,
        message: message.into(),
    })
}

fn number<T: std::str::FromStr>(line: usize, word: &str, what: &str) -> Result<T, SpecError> {
    word.parse()
        .or_else(|_| err(line, format!("{what} `{word}` is not a valid number")))
}

impl Spec {
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let mut spec = Spec::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("");
            let words: Vec<&str> = content.split_whitespace().collect();
            let Some((&keyword, args)) = words.split_first() else {
                continue;
            };
            spec.statement(line, keyword, args)?;
        }
        spec.check()?;
        Ok(spec)
    }

    fn statement(&mut self, line: usize, keyword: &str, args: &[&str]) -> Result<(), SpecError> {
        let need = |n: usize| {
            if args.len() < n {
                err(line, format!("`{keyword}` needs at least {n} arguments"))
            } else {
                Ok(())
            }
        };
        match keyword {
            "constant" => {
                need(3)?;
                self.constants.push(parse_constant(line, args)?);
            }
            "reply" => {
                need(3)?;
                self.replies.push(parse_reply(line, args)?);
            }
            "domain" => {
                need(2)?;
                let Some(ty) = Primitive::parse(args[1]) else {
                    return err(line, format!("unknown primitive type `{}`", args[1]));
                };
                if self.domains.insert(args[0].to_string(), ty).is_some() {
                    return err(line, format!("domain `{}` defined twice", args[0]));
                }
            }
            "class" => {
                need(2)?;
                self.classes.push(Class {
                    name: args[0].to_string(),
                    id: number(line, args[1], "class id")?,
                    methods: Vec::new(),
                });
            }
            "method" => {
                need(2)?;
                let method = parse_method(line, args)?;
                let Some(class) = self.classes.last_mut() else {
                    return err(line, "`method` before any `class`");
                };
                class.methods.push(method);
            }
            "field" => {
                need(2)?;
                let field = self.parse_field(line, args)?;
                let Some(method) = self.classes.last_mut().and_then(|c| c.methods.last_mut())
                else {
                    return err(line, "`field` before any `method`");
                };
                method.fields.push(field);
            }
            "property" => {
                need(2)?;
                let field = self.parse_field(line, args)?;
                self.properties.push(field);
            }
            "field-type" => {
                need(2)?;
                self.field_types.push(parse_field_type(line, args)?);
            }
            "errata" => {
                need(3)?;
                self.errata.push(Erratum {
                    topic: args[0].to_string(),
                    key: args[1].to_string(),
                    values: args[2..].iter().map(|s| s.to_string()).collect(),
                });
            }
            other => return err(line, format!("unknown statement `{other}`")),
        }
        Ok(())
    }

    fn parse_field(&self, line: usize, args: &[&str]) -> Result<Field, SpecError> {
        let domain = args[1];
        let ty = match Primitive::parse(domain) {
            Some(ty) => ty,
            None => match self.domains.get(domain) {
                Some(ty) => *ty,
                None => return err(line, format!("unknown domain `{domain}`")),
            },
        };
        let reserved = match args.get(2) {
            None => false,
            Some(&"reserved") => true,
            Some(other) => return err(line, format!("unknown field flag `{other}`")),
        };
        Ok(Field {
            name: args[0].to_string(),
            domain: domain.to_string(),
            ty,
            reserved,
        })
    }

    /// Cross-checks that a line-by-line parse cannot: unique ids, reply targets that exist,
    /// every reserved field listed with a zero forced default in the errata.
    fn check(&self) -> Result<(), SpecError> {
        let mut class_ids = BTreeSet::new();
        for class in &self.classes {
            if !class_ids.insert(class.id) {
                return err(0, format!("class id {} used twice", class.id));
            }
            let mut method_ids = BTreeSet::new();
            for method in &class.methods {
                if !method_ids.insert(method.id) {
                    return err(
                        0,
                        format!("{}.{} reuses id {}", class.name, method.name, method.id),
                    );
                }
                if let Some(reply) = &method.reply {
                    if !class.methods.iter().any(|m| &m.name == reply) {
                        return err(
                            0,
                            format!(
                                "{}.{} replies with unknown {reply}",
                                class.name, method.name
                            ),
                        );
                    }
                }
                if method.synchronous != method.reply.is_some() {
                    return err(
                        0,
                        format!(
                            "{}.{}: `sync` and `reply=` go together",
                            class.name, method.name
                        ),
                    );
                }
                for field in method.fields.iter().filter(|f| f.reserved) {
                    let key = format!("{}.{}.{}", class.name, method.name, field.name);
                    let default = self
                        .errata
                        .iter()
                        .find(|e| e.topic == "forced-default" && e.key == key);
                    match default {
                        Some(e)
                            if e.values.first().map(String::as_str) == Some(field.ty.zero()) => {}
                        Some(_) => {
                            return err(
                                0,
                                format!("forced default of {key} must be {}", field.ty.zero()),
                            )
                        }
                        None => {
                            return err(
                                0,
                                format!("reserved field {key} has no forced-default erratum"),
                            )
                        }
                    }
                }
            }
        }
        if self.properties.len() > 15 {
            return err(0, "more than 15 properties need a continuation flag word");
        }
        let mut codes = BTreeSet::new();
        for field_type in &self.field_types {
            if !codes.insert(char::from(field_type.code).to_string()) {
                let code = char::from(field_type.code);
                return err(0, format!("field type `{code}` listed twice"));
            }
        }
        // An erratum about a type code must agree with the list RabbitMQ's codes are taken from.
        for erratum in self.errata.iter().filter(|e| e.topic == "field-type") {
            let absent = erratum.values.iter().any(|v| v == "rabbitmq=absent");
            if codes.contains(&erratum.key) == absent {
                let key = &erratum.key;
                return err(
                    0,
                    format!("erratum for field type `{key}` disagrees with the field-type list"),
                );
            }
        }
        Ok(())
    }
}

/// `constant NAME VALUE TYPE`: the value must fit the type.
fn parse_constant(line: usize, args: &[&str]) -> Result<Constant, SpecError> {
    let value: u32 = number(line, args[1], "constant value")?;
    let ty = match args[2] {
        "octet" if value <= u32::from(u8::MAX) => Primitive::Octet,
        "short" if value <= u32::from(u16::MAX) => Primitive::Short,
        "long" => Primitive::Long,
        other => {
            return err(
                line,
                format!("constant type `{other}` does not fit {value}"),
            )
        }
    };
    Ok(Constant {
        name: args[0].to_string(),
        value,
        ty,
    })
}

/// `reply CODE NAME success|soft|hard`.
fn parse_reply(line: usize, args: &[&str]) -> Result<Reply, SpecError> {
    let class = match args[2] {
        "success" => ReplyClass::Success,
        "soft" => ReplyClass::Soft,
        "hard" => ReplyClass::Hard,
        other => return err(line, format!("unknown reply class `{other}`")),
    };
    Ok(Reply {
        code: number(line, args[0], "reply code")?,
        name: args[1].to_string(),
        class,
    })
}

/// `field-type CODE VARIANT`: the code is one ASCII letter.
fn parse_field_type(line: usize, args: &[&str]) -> Result<FieldType, SpecError> {
    let code = match args[0].as_bytes() {
        [code] if code.is_ascii_alphabetic() => *code,
        _ => {
            return err(
                line,
                format!("field type code `{}` is not one letter", args[0]),
            )
        }
    };
    Ok(FieldType {
        code,
        variant: args[1].to_string(),
    })
}

fn parse_method(line: usize, args: &[&str]) -> Result<Method, SpecError> {
    let mut method = Method {
        name: args[0].to_string(),
        id: number(line, args[1], "method id")?,
        synchronous: false,
        reply: None,
        content: false,
        sender: Sender::Client,
        fields: Vec::new(),
    };
    let mut sender = None;
    for flag in &args[2..] {
        match *flag {
            "sync" => method.synchronous = true,
            "content" => method.content = true,
            "from=client" => sender = Some(Sender::Client),
            "from=server" => sender = Some(Sender::Server),
            "from=both" => sender = Some(Sender::Both),
            other => match other.strip_prefix("reply=") {
                Some(reply) => method.reply = Some(reply.to_string()),
                None => return err(line, format!("unknown method flag `{other}`")),
            },
        }
    }
    match sender {
        Some(sender) => method.sender = sender,
        None => {
            return err(
                line,
                format!("method `{}` needs from=client|server|both", method.name),
            )
        }
    }
    Ok(method)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn shipped_spec_parses_and_covers_the_extensions() {
        let spec = Spec::parse(SPEC_TEXT).unwrap();
        let find = |class: &str, method: &str| {
            let class = spec.classes.iter().find(|c| c.name == class).unwrap();
            (
                class.id,
                class
                    .methods
                    .iter()
                    .find(|m| m.name == method)
                    .unwrap()
                    .clone(),
            )
        };
        assert_eq!(find("exchange", "unbind-ok").1.id, 51);
        assert_eq!(find("basic", "nack").1.id, 120);
        assert_eq!(find("confirm", "select").0, 85);
        assert_eq!(find("connection", "update-secret-ok").1.id, 71);
        assert!(find("basic", "publish").1.content);
        assert_eq!(find("basic", "cancel").1.sender, Sender::Both);
        assert_eq!(spec.properties.len(), 14);
        assert_eq!(spec.properties[13].name, "cluster-id");
        let end = spec
            .constants
            .iter()
            .find(|c| c.name == "FRAME-END")
            .unwrap();
        assert_eq!(end.value, 0xCE);
    }

    #[test]
    fn reserved_field_without_erratum_is_rejected() {
        let text = "class c 1\nmethod m 1 from=client\nfield ticket short reserved\n";
        let error = Spec::parse(text).unwrap_err();
        assert!(error.message.contains("c.m.ticket"), "{error}");
    }

    #[test]
    fn errors_name_the_line() {
        let error = Spec::parse("domain a shortstr\n\nclass x 1\nfield f octet\n").unwrap_err();
        assert_eq!(error.line, 4);
        let error = Spec::parse("domain a nonsense\n").unwrap_err();
        assert_eq!(error.line, 1);
    }

    #[test]
    fn field_type_errata_must_match_the_list() {
        let text = "field-type s I16\nerrata field-type x spec=absent rabbitmq=byte-array\n";
        let error = Spec::parse(text).unwrap_err();
        assert!(error.message.contains("`x`"), "{error}");
        let text = "field-type s I16\nerrata field-type s spec=short-string rabbitmq=signed-16\n";
        assert!(Spec::parse(text).is_ok());
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(generate(SPEC_TEXT).unwrap(), generate(SPEC_TEXT).unwrap());
    }
}
