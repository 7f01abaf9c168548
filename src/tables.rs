//! The tables of the data contract (`shared/data-contract.md`): their names, their standard
//! columns with types and roles, which columns a load must carry, and the Arrow schemas SQL sees.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The hidden column that carries a user's dense row id in every stored Parquet file. It is not
/// part of the SQL schema.
pub const ROW_ID_COLUMN: &str = "__row_id";

// Column roles: the contract columns the engine relies on by meaning, named here once. The query
// rules, the index build, the store's fact reads, the importer, the audience layer, lint and shell
// completion use these names rather than spelling them out, so what a column is for is written
// down in one place.

/// The user key: the key of `users` ([`Table::key_column`]) and, on every fact table, the user a
/// row belongs to. The store maps it to the dense row id ([`ROW_ID_COLUMN`]) that bitmaps hold;
/// an audience query returns it; `has_tag()` and the audience rewrites join the facts to users on
/// it, and a per-user aggregate groups by it.
pub const USER_ID: &str = "user_id";

/// The fact time of `purchases` and `events`: when the purchase or event happened (microseconds,
/// UTC). Time windows are bounds on it; the index's day bitmaps, a fact file's `ts` range and its
/// row groups' statistics are by it. (`user_tags.assigned_at` is not a fact time.)
pub const TS: &str = "ts";
/// Microseconds in one day of `ts` (days are UTC days).
pub const DAY_MICROS: i64 = 86_400_000_000;

/// The tag of a `user_tags` row: the index keeps one bitmap of users per tag.
pub const TAG: &str = "tag";

/// The key of `channels`, by which purchases and events name their channel. Purchases' activity
/// streams are built per channel.
pub const CHANNEL_ID: &str = "channel_id";

/// The key of `products`, by which a purchase names its product (and so its [`CATEGORY`]).
pub const PRODUCT_ID: &str = "product_id";

/// A product's category. Purchases' activity streams are built per category too, each purchase
/// taking its product's through [`PRODUCT_ID`].
pub const CATEGORY: &str = "category";

/// An event's type. Events' activity streams are built per type; it is never NULL.
pub const EVENT_TYPE: &str = "event_type";

/// A purchase's order id: unique per row ([`UNIQUE_COLUMNS`]); nobody filters on a range of them, so
/// the purchases files the importer writes keep no statistics of it.
pub const ORDER_ID: &str = "order_id";

/// What a purchase cost: what per-user aggregates over time windows sum (the reason purchases keep
/// a plain copy, [`Table::keeps_plain_copy`]).
pub const AMOUNT: &str = "amount";

/// The kind of an `identities` row's identifier: `phone`, `email`, `wx_openid`, `wx_unionid`,
/// `device_id` or a custom type the store's identity rules declare.
pub const ID_TYPE: &str = "id_type";
/// The identifier itself, normalised on import (docs/identity.md).
pub const ID_VALUE: &str = "id_value";
/// Where an identifier was seen: a channel or system; for a `wx_openid`, the app id that scopes it.
pub const SOURCE: &str = "source";

/// Standard columns whose values are (nearly) unique per row, in whichever table has them. The
/// role decides how they are kept: a Parquet dictionary of them would only cost a read, so stored
/// and exported files give them none; a users file's row-addressable copy holds those of them it
/// has ([`crate::store::addressable`]); a fact file's plain copy leaves them out
/// ([`crate::store::plain_columns`]). A fact table's `user_id` repeats, so fact data files keep
/// its dictionary, but the plain copy still leaves it out: the row id stands for it there.
pub const UNIQUE_COLUMNS: &[&str] = &[USER_ID, "name", "phone", "email", ORDER_ID];

/// One table of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Users,
    Products,
    Channels,
    Purchases,
    Events,
    UserTags,
    /// Identifiers seen on profiles, which link them into persons (docs/identity.md).
    Identities,
}

impl Table {
    /// All tables, in load order: users first (facts refer to them), then dimensions, then facts.
    pub const ALL: [Table; 7] = [
        Table::Users,
        Table::Products,
        Table::Channels,
        Table::Purchases,
        Table::Events,
        Table::UserTags,
        Table::Identities,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Products => "products",
            Table::Channels => "channels",
            Table::Purchases => "purchases",
            Table::Events => "events",
            Table::UserTags => "user_tags",
            Table::Identities => "identities",
        }
    }

    /// Fact tables refer to users by `user_id` and are appended to.
    pub fn is_fact(self) -> bool {
        matches!(self, Table::Purchases | Table::Events | Table::UserTags | Table::Identities)
    }

    /// Whether the store keeps a plain (uncompressed, row-for-row) copy of the table's files for
    /// per-user aggregates ([`crate::store::plain_columns`]): purchases, whose amounts and
    /// quantities are summed per user over time windows. Events would double the import's extra
    /// writes for counts that their Parquet files answer well (measured at 10 M: 51 s with both).
    pub fn keeps_plain_copy(self) -> bool {
        self == Table::Purchases
    }

    /// The columns a fact file's day times are grouped by ([`crate::store::day_times`]), for the
    /// tables that keep them: events, whose window edges inside a day would otherwise decode
    /// every `ts` of the file (purchases find theirs through the plain copy, by user).
    pub fn day_times_columns(self) -> Option<&'static [&'static str]> {
        match self {
            Table::Events => Some(&[EVENT_TYPE, CHANNEL_ID]),
            _ => None,
        }
    }

    /// The key a dimension load upserts by.
    pub fn key_column(self) -> Option<&'static str> {
        match self {
            Table::Users => Some(USER_ID),
            Table::Products => Some(PRODUCT_ID),
            Table::Channels => Some(CHANNEL_ID),
            _ => None,
        }
    }

    /// The standard columns, in contract order.
    pub fn columns(self) -> &'static [ContractColumn] {
        match self {
            Table::Users => USERS_COLUMNS,
            Table::Products => PRODUCTS_COLUMNS,
            Table::Channels => CHANNELS_COLUMNS,
            Table::Purchases => PURCHASES_COLUMNS,
            Table::Events => EVENTS_COLUMNS,
            Table::UserTags => USER_TAGS_COLUMNS,
            Table::Identities => IDENTITIES_COLUMNS,
        }
    }

    /// Columns that may never be NULL or empty.
    pub fn non_null_columns(self) -> &'static [&'static str] {
        match self {
            Table::Users => &[USER_ID],
            Table::Products => &[PRODUCT_ID],
            Table::Channels => &[CHANNEL_ID],
            Table::Purchases => &[ORDER_ID, USER_ID, TS],
            Table::Events => &[USER_ID, EVENT_TYPE, TS],
            Table::UserTags => &[USER_ID, TAG],
            Table::Identities => &[USER_ID, ID_TYPE, ID_VALUE],
        }
    }

    /// Whether this table keeps columns the contract does not list (only `users` does).
    pub fn accepts_custom_columns(self) -> bool {
        self == Table::Users
    }

    /// The SQL schema of a table whose columns are fixed by the contract.
    pub fn contract_schema(self) -> SchemaRef {
        let defs: Vec<ColumnDef> =
            self.columns().iter().map(|c| ColumnDef { name: c.name.to_string(), ty: c.ty }).collect();
        sql_schema(&defs)
    }

    /// Recognises a table from a file or folder name: `users`, `users.csv`, `users-00001.parquet`,
    /// `purchases_2024` ... The longest matching name wins.
    pub fn from_file_stem(stem: &str) -> Option<Table> {
        let stem = stem.to_ascii_lowercase();
        let mut tables = Table::ALL;
        tables.sort_by_key(|t| std::cmp::Reverse(t.name().len()));
        tables.into_iter().find(|t| {
            let name = t.name();
            stem == name
                || stem.strip_prefix(name).is_some_and(|rest| {
                    rest.starts_with(['-', '_', '.', ' ']) || rest.starts_with(|c: char| c.is_ascii_digit())
                })
        })
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Table {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            Error::Usage(format!("unknown table '{s}'; the tables are {}", Table::ALL.map(Table::name).join(", ")))
        })
    }
}

const fn col(name: &'static str, ty: ColumnType, required: bool) -> ContractColumn {
    ContractColumn { name, ty, required }
}

const USERS_COLUMNS: &[ContractColumn] = &[
    col(USER_ID, ColumnType::Utf8, true),
    col("name", ColumnType::Utf8, false),
    col("gender", ColumnType::Utf8, false),
    col("birth_date", ColumnType::Date, false),
    col("city", ColumnType::Utf8, false),
    col("region", ColumnType::Utf8, false),
    col("tier", ColumnType::Utf8, false),
    col("points", ColumnType::Int64, false),
    col("signup_date", ColumnType::Date, false),
    col("phone", ColumnType::Utf8, false),
    col("email", ColumnType::Utf8, false),
    col("acquisition_channel", ColumnType::Utf8, false),
];
const PRODUCTS_COLUMNS: &[ContractColumn] = &[
    col(PRODUCT_ID, ColumnType::Utf8, true),
    col("name", ColumnType::Utf8, false),
    col(CATEGORY, ColumnType::Utf8, false),
    col("brand", ColumnType::Utf8, false),
    col("price", ColumnType::Float64, false),
];
const CHANNELS_COLUMNS: &[ContractColumn] = &[
    col(CHANNEL_ID, ColumnType::Utf8, true),
    col("name", ColumnType::Utf8, false),
    col("kind", ColumnType::Utf8, false),
];
const PURCHASES_COLUMNS: &[ContractColumn] = &[
    col(ORDER_ID, ColumnType::Utf8, true),
    col(USER_ID, ColumnType::Utf8, true),
    col(PRODUCT_ID, ColumnType::Utf8, true),
    col(CHANNEL_ID, ColumnType::Utf8, true),
    col(TS, ColumnType::Timestamp, true),
    col("quantity", ColumnType::Int32, true),
    col(AMOUNT, ColumnType::Float64, true),
];
const EVENTS_COLUMNS: &[ContractColumn] = &[
    col(USER_ID, ColumnType::Utf8, true),
    col(CHANNEL_ID, ColumnType::Utf8, true),
    col(EVENT_TYPE, ColumnType::Utf8, true),
    col(TS, ColumnType::Timestamp, true),
];
const USER_TAGS_COLUMNS: &[ContractColumn] = &[
    col(USER_ID, ColumnType::Utf8, true),
    col(TAG, ColumnType::Utf8, true),
    col("assigned_at", ColumnType::Timestamp, false),
];
const IDENTITIES_COLUMNS: &[ContractColumn] = &[
    col(USER_ID, ColumnType::Utf8, true),
    col(ID_TYPE, ColumnType::Utf8, true),
    col(ID_VALUE, ColumnType::Utf8, true),
    col(SOURCE, ColumnType::Utf8, false),
    col(TS, ColumnType::Timestamp, false),
];

/// A column the contract defines for a table.
#[derive(Debug, Clone, Copy)]
pub struct ContractColumn {
    pub name: &'static str,
    pub ty: ColumnType,
    /// A load that lacks this column is refused.
    pub required: bool,
}

impl ContractColumn {
    /// The column as an Arrow field. SQL sees every column as nullable ([`sql_schema`]); a writer
    /// that fills a column for every row may declare it non-nullable.
    pub fn field(&self, nullable: bool) -> Field {
        Field::new(self.name, self.ty.arrow_type(), nullable)
    }
}

/// The column types a store keeps. Custom `users` columns are inferred into one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Utf8,
    Int32,
    Int64,
    Float64,
    Boolean,
    Date,
    /// Microseconds, no zone: instants in UTC.
    Timestamp,
}

impl ColumnType {
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// The store type for an Arrow type found in a Parquet file's custom column.
    pub fn from_arrow(dt: &DataType) -> Option<ColumnType> {
        Some(match dt {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::Utf8,
            DataType::Dictionary(_, v) => return ColumnType::from_arrow(v),
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => {
                ColumnType::Int32
            }
            DataType::Int64 | DataType::UInt32 => ColumnType::Int64,
            DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => ColumnType::Float64,
            DataType::Boolean => ColumnType::Boolean,
            DataType::Date32 | DataType::Date64 => ColumnType::Date,
            DataType::Timestamp(..) => ColumnType::Timestamp,
            _ => return None,
        })
    }

    pub fn sql_name(self) -> &'static str {
        match self {
            ColumnType::Utf8 => "VARCHAR",
            ColumnType::Int32 => "INT",
            ColumnType::Int64 => "BIGINT",
            ColumnType::Float64 => "DOUBLE",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Date => "DATE",
            ColumnType::Timestamp => "TIMESTAMP",
        }
    }
}

/// A column of a stored table, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

/// `columns` cast to the types of `schema`'s first fields (string views become the plain strings
/// every tool reads; columns already of the right type are kept as they are).
pub fn cast_to_schema(
    columns: &[arrow::array::ArrayRef],
    schema: &Schema,
) -> crate::error::Result<Vec<arrow::array::ArrayRef>> {
    columns
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(std::sync::Arc::clone(c))
            } else {
                arrow::compute::cast(c, f.data_type()).map_err(crate::error::Error::from)
            }
        })
        .collect()
}

/// The schema SQL sees for these columns (all nullable, no row id).
pub fn sql_schema(columns: &[ColumnDef]) -> SchemaRef {
    Arc::new(Schema::new(columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), true)).collect::<Vec<_>>()))
}

/// The schema of a stored Parquet file: the hidden row id first, then the SQL columns.
pub fn file_schema(columns: &[ColumnDef]) -> SchemaRef {
    let mut fields = vec![Field::new(ROW_ID_COLUMN, DataType::UInt32, false)];
    fields.extend(columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), true)));
    Arc::new(Schema::new(fields))
}

/// The contract's columns of a table as manifest column definitions.
pub fn contract_columns(table: Table) -> Vec<ColumnDef> {
    table.columns().iter().map(|c| ColumnDef { name: c.name.to_string(), ty: c.ty }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_recognised_from_file_names() {
        assert_eq!(Table::from_file_stem("users"), Some(Table::Users));
        assert_eq!(Table::from_file_stem("users-00001"), Some(Table::Users));
        assert_eq!(Table::from_file_stem("user_tags-00000"), Some(Table::UserTags));
        assert_eq!(Table::from_file_stem("Purchases_2024"), Some(Table::Purchases));
        assert_eq!(Table::from_file_stem("users2"), Some(Table::Users));
        assert_eq!(Table::from_file_stem("usersx"), None);
        assert_eq!(Table::from_file_stem("orders"), None);
        assert_eq!(Table::from_file_stem("identities-2026-10"), Some(Table::Identities));
    }

    #[test]
    fn unknown_table_name_lists_the_known_ones() {
        let err = "orders".parse::<Table>().unwrap_err().to_string();
        assert!(err.contains("users, products"), "{err}");
    }
}
