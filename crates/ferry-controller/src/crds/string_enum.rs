//! String enums that tolerate values they do not know.
//!
//! Velero may add a phase or an OS value in a later release; ferry must still read (and write
//! back unchanged) such objects instead of failing to deserialize the whole list. Each enum gets
//! an `Unknown(String)` variant holding the verbatim text; the CRD schema still lists only the
//! values Velero's schema lists, so the API server keeps validating them.

/// Declares a string enum with the known variants and their wire text, plus `Unknown(String)`.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant, )+
            /// A value this version of ferry does not know (for example from a newer Velero),
            /// kept verbatim so it is written back unchanged.
            Unknown(String),
        }

        impl $name {
            /// The wire values this version knows, in the order Velero's CRD schema lists them.
            pub const KNOWN_VALUES: &'static [&'static str] = &[$($text),+];

            /// The text written to the API server.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Unknown(text) => text,
                }
            }

            /// Whether this is one of [`Self::KNOWN_VALUES`].
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Unknown(_))
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $( $text => Self::$variant, )+
                    other => Self::Unknown(other.to_string()),
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Ok(Self::from(text))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(Self::from(text.as_ref()))
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn inline_schema() -> bool {
                true
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "enum": Self::KNOWN_VALUES,
                })
            }
        }
    };
}

pub(crate) use string_enum;

string_enum! {
    /// The operating system of the node a data mover runs on (`nodeOS`).
    pub enum NodeOs {
        Auto = "auto",
        Linux = "linux",
        Windows = "windows",
    }
}

#[cfg(test)]
mod tests {
    use super::NodeOs;

    #[test]
    fn known_and_unknown_values_round_trip_verbatim() {
        let known: NodeOs = serde_json::from_str("\"linux\"").unwrap();
        assert_eq!(known, NodeOs::Linux);
        assert_eq!(serde_json::to_string(&known).unwrap(), "\"linux\"");
        let unknown: NodeOs = serde_json::from_str("\"plan9\"").unwrap();
        assert_eq!(unknown, NodeOs::Unknown("plan9".into()));
        assert!(!unknown.is_known());
        assert_eq!(serde_json::to_string(&unknown).unwrap(), "\"plan9\"");
    }

    #[test]
    fn schema_lists_exactly_the_known_values() {
        let schema = schemars::schema_for!(NodeOs);
        assert_eq!(
            schema.get("enum"),
            Some(&serde_json::json!(["auto", "linux", "windows"]))
        );
        assert_eq!(schema.get("type"), Some(&serde_json::json!("string")));
    }
}
