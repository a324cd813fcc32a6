//! Blocks that are the same on many records (the host, an agent's identity), serialised to
//! JSON once and spliced into each record as raw bytes: escaping them anew on every record
//! was a large share of the pipeline's time. The value stays readable (OCSF maps from it);
//! whoever changes the source makes a new `Rendered`, so the bytes cannot go stale.
use std::ops::Deref;

use serde::Serialize;
use serde_json::value::RawValue;

/// A value and its JSON, rendered once; it serialises as that JSON, verbatim.
pub struct Rendered<T> {
    value: T,
    json: Box<RawValue>,
}

impl<T: Serialize> Rendered<T> {
    /// Renders `value`.
    pub fn new(value: T) -> Self {
        let json = serde_json::value::to_raw_value(&value).expect("the block serialises");
        Self { value, json }
    }
}

impl<T> Rendered<T> {
    /// The JSON every record carries for this value.
    pub fn json(&self) -> &str {
        self.json.get()
    }
}

impl<T> Deref for Rendered<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Rendered<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: Clone + Serialize> Clone for Rendered<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            json: self.json.clone(),
        }
    }
}

/// The rendered bytes, verbatim (with serde_json; other serialisers get the value parsed).
impl<T> Serialize for Rendered<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

/// The schema of the value itself: rendering changes no byte of the output.
impl<T: schemars::JsonSchema> schemars::JsonSchema for Rendered<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[serde_with::skip_serializing_none]
    #[derive(Clone, Serialize)]
    struct Block {
        name: String,
        note: Option<String>,
    }

    #[derive(Serialize)]
    struct Outer<'a, B> {
        before: u32,
        block: &'a B,
        after: &'a str,
    }

    #[test]
    fn splices_exactly_what_serde_writes_for_the_value() {
        let hostile = Block {
            name: "a\"b\\c\n\r\t\u{0}\u{1b}\u{7f}é\u{2028}{\"forged\":1}".into(),
            note: None,
        };
        let rendered = Rendered::new(hostile.clone());
        assert_eq!(rendered.json(), serde_json::to_string(&hostile).unwrap());
        let outer = Outer {
            before: 1,
            block: &rendered,
            after: "z",
        };
        let plain = Outer {
            before: 1,
            block: &hostile,
            after: "z",
        };
        assert_eq!(
            serde_json::to_string(&outer).unwrap(),
            serde_json::to_string(&plain).unwrap()
        );
        // Other serialisers (OCSF maps records through `serde_json::Value`) see the value.
        assert_eq!(
            serde_json::to_value(&outer).unwrap(),
            serde_json::to_value(&plain).unwrap()
        );
        assert_eq!(rendered.name, hostile.name);
    }
}
