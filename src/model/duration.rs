//! Human-readable durations (`"150ms"`, `"2s"`) in serde, through humantime.
//!
//! Every duration a file gives is at most [`MAX_DURATION`] (`docs/formats/topology.md`: bounded durations), so no
//! later sum or scaling of run times can overflow: the bound is checked here, where every
//! topology and scenario duration is parsed, and serde's error carries it to the file, line and
//! key of the value.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Longest duration a file may give: 7 days. Runs, windows, timeouts and delays are seconds to
/// hours; anything longer is a typo, and the bound keeps every sum of run times far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Parses a duration such as `150ms`, `2s` or `1m 30s`, at most [`MAX_DURATION`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let value = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("bad duration {text:?}: {e} (write e.g. \"150ms\", \"2s\", \"1m\")")
    })?;
    if value > MAX_DURATION {
        return Err(format!(
            "duration {text:?} is longer than the longest allowed, 7 days (\"7d\")"
        ));
    }
    Ok(value)
}

/// What a duration looks like in a file, for the JSON Schemas (`schemas/`): humantime text such
/// as `"150ms"`, `"2s"` or `"1m 30s"`. The 7-day bound is checked by [`parse`], not the schema.
/// A field `#[serde(with = "duration::Text")]` (or [`OptionalText`]) is read and written
/// through it, and schemars, which takes a serde `with` type as the field's schema, describes
/// it by it too: the field needs no schemars attribute of its own.
pub struct Text;

impl schemars::JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": r"^\s*([0-9]+\s*[a-zA-Zµ]+\s*)+$",
            "description": "A duration such as \"150ms\", \"2s\" or \"1m 30s\", at most 7 days.",
        })
    }
}

impl Text {
    /// Deserializes a duration from a string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Serializes a duration as humantime text.
    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }
}

/// An optional duration field, `#[serde(default, with = "duration::OptionalText")]`: like
/// [`Text`], and described in the schemas exactly as `Option<Text>`. Always with `default`:
/// a serde `with` field is required otherwise, and the schema says so.
pub struct OptionalText;

impl OptionalText {
    /// Deserializes an optional duration from a string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }

    /// Serializes an optional duration as humantime text.
    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => Text::serialize(v, s),
            None => s.serialize_none(),
        }
    }
}

impl schemars::JsonSchema for OptionalText {
    fn inline_schema() -> bool {
        <Option<Text>>::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        <Option<Text>>::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        <Option<Text>>::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Option<Text>>::json_schema(generator)
    }
}
