//! Exchange types as pure routing functions: given a message's routing key and headers, which
//! destinations do an exchange's bindings select? No I/O, no locks, no broker state: the vhost
//! owns one router per exchange and calls it on the publisher's task.
//!
//! A router may name the same destination more than once (two bindings with different keys or
//! arguments to one queue); the caller de-duplicates across the whole route, which it must do
//! anyway for exchange-to-exchange bindings and CC/BCC keys.

mod direct;
mod fanout;
mod headers;
mod topic;

pub use direct::DirectRouter;
pub use fanout::FanoutRouter;
pub use headers::{HeadersBindingError, HeadersRouter};
pub use topic::TopicRouter;

use crate::protocol::FieldTable;

/// The exchange types Warren implements, by their AMQP names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    /// Parses the `type` field of `exchange.declare`; `None` for a type Warren does not know.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "direct" => Some(Self::Direct),
            "fanout" => Some(Self::Fanout),
            "topic" => Some(Self::Topic),
            "headers" => Some(Self::Headers),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
        }
    }
}

/// The bindings of one exchange, indexed the way its type routes.
#[derive(Debug, Clone)]
pub enum Router<D> {
    Direct(DirectRouter<D>),
    Fanout(FanoutRouter<D>),
    Topic(TopicRouter<D>),
    Headers(HeadersRouter<D>),
}

impl<D: Clone + PartialEq> Router<D> {
    pub fn new(kind: ExchangeKind) -> Self {
        match kind {
            ExchangeKind::Direct => Self::Direct(DirectRouter::default()),
            ExchangeKind::Fanout => Self::Fanout(FanoutRouter::default()),
            ExchangeKind::Topic => Self::Topic(TopicRouter::default()),
            ExchangeKind::Headers => Self::Headers(HeadersRouter::default()),
        }
    }

    pub fn kind(&self) -> ExchangeKind {
        match self {
            Self::Direct(_) => ExchangeKind::Direct,
            Self::Fanout(_) => ExchangeKind::Fanout,
            Self::Topic(_) => ExchangeKind::Topic,
            Self::Headers(_) => ExchangeKind::Headers,
        }
    }

    /// Checks a binding's arguments before it is added: only the headers exchange has rules
    /// (its `x-match` value).
    pub fn validate_binding(&self, args: &FieldTable) -> Result<(), HeadersBindingError> {
        match self {
            Self::Headers(_) => headers::validate(args),
            _ => Ok(()),
        }
    }

    /// Adds the binding `(destination, key, args)`; false if that exact binding already exists
    /// (a redeclared binding is a no-op in AMQP).
    pub fn bind(&mut self, dest: D, key: &str, args: &FieldTable) -> bool {
        match self {
            Self::Direct(r) => r.bind(dest, key, args),
            Self::Fanout(r) => r.bind(dest, key, args),
            Self::Topic(r) => r.bind(dest, key, args),
            Self::Headers(r) => r.bind(dest, key, args),
        }
    }

    /// Removes the binding `(destination, key, args)`; false if there was no such binding.
    pub fn unbind(&mut self, dest: &D, key: &str, args: &FieldTable) -> bool {
        match self {
            Self::Direct(r) => r.unbind(dest, key, args),
            Self::Fanout(r) => r.unbind(dest, key, args),
            Self::Topic(r) => r.unbind(dest, key, args),
            Self::Headers(r) => r.unbind(dest, key, args),
        }
    }

    /// Removes every binding to `dest` (the destination was deleted); returns how many went.
    pub fn unbind_all(&mut self, dest: &D) -> usize {
        match self {
            Self::Direct(r) => r.unbind_all(dest),
            Self::Fanout(r) => r.unbind_all(dest),
            Self::Topic(r) => r.unbind_all(dest),
            Self::Headers(r) => r.unbind_all(dest),
        }
    }

    /// Whether some binding leads to `dest` (read-only, so a caller can copy only the routers
    /// that a removal changes).
    pub fn leads_to(&self, dest: &D) -> bool {
        match self {
            Self::Direct(r) => r.leads_to(dest),
            Self::Fanout(r) => r.leads_to(dest),
            Self::Topic(r) => r.leads_to(dest),
            Self::Headers(r) => r.leads_to(dest),
        }
    }

    /// Appends the destinations selected for a message to `out` (possibly with repeats).
    pub fn route(&self, routing_key: &str, headers: Option<&FieldTable>, out: &mut Vec<D>) {
        match self {
            Self::Direct(r) => r.route(routing_key, out),
            Self::Fanout(r) => r.route(out),
            Self::Topic(r) => r.route(routing_key, out),
            Self::Headers(r) => r.route(headers, out),
        }
    }

    /// The number of bindings.
    pub fn len(&self) -> usize {
        match self {
            Self::Direct(r) => r.len(),
            Self::Fanout(r) => r.len(),
            Self::Topic(r) => r.len(),
            Self::Headers(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
