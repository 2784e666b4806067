//! How typed values sit in text columns, in one place: a row field that is
//! not plain text or a number is read as [`Text`] (`#[sqlx(try_from =
//! "Text")]`) and parsed by its `TryFrom<Text>`.

use serde::de::DeserializeOwned;
use sqlx::error::BoxDynError;
use sqlx::{Decode, Postgres, Sqlite, Type};

/// A text column as read, NULL as `None`.
#[derive(Debug)]
pub struct Text(pub Option<String>);

macro_rules! text_on {
    ($db:ty) => {
        impl Type<$db> for Text {
            fn type_info() -> <$db as sqlx::Database>::TypeInfo {
                <String as Type<$db>>::type_info()
            }

            fn compatible(ty: &<$db as sqlx::Database>::TypeInfo) -> bool {
                <String as Type<$db>>::compatible(ty)
            }
        }

        impl<'r> Decode<'r, $db> for Text {
            fn decode(value: <$db as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                <Option<String> as Decode<'r, $db>>::decode(value).map(Text)
            }
        }
    };
}

text_on!(Sqlite);
text_on!(Postgres);

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, BoxDynError> {
    serde_json::from_str(text).map_err(|e| format!("stored JSON is unreadable: {e}").into())
}

/// A JSON array read as its items; NULL as none.
impl TryFrom<Text> for Vec<String> {
    type Error = BoxDynError;

    fn try_from(text: Text) -> Result<Self, Self::Error> {
        text.0.map_or_else(|| Ok(Vec::new()), |t| from_json(&t))
    }
}
