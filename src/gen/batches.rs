//! The Arrow side of the generator: each generated table's schema (the contract's columns from
//! [`crate::tables`], plus the custom `users` columns), the column builders that collect a chunk's
//! rows, and the record batches of the dimension tables and of sequentially numbered purchases.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::model::Product;
use super::vocabulary::CHANNELS;
use crate::error::Result;
use crate::tables::{ColumnType, Table};

/// The generator's own columns of `users`, after the contract's: (name, type, nullable).
const USERS_CUSTOM_COLUMNS: [(&str, ColumnType, bool); 3] = [
    ("occupation", ColumnType::Utf8, true),
    ("has_children", ColumnType::Boolean, false),
    ("income_band", ColumnType::Int32, true),
];

/// The Arrow schema of a generated table: the contract's columns ([`Table::columns`]), then, for
/// `users`, [`USERS_CUSTOM_COLUMNS`]. Every contract column gets a value in every row, so their
/// fields are non-nullable (which Parquet writes as required columns, without definition levels),
/// but a users row's phone and e-mail: a further profile of a planted person may have neither
/// (gen::identities).
pub(super) fn schema(table: Table) -> SchemaRef {
    let optional = |name: &str| table == Table::Users && (name == "phone" || name == "email");
    let mut fields: Vec<Field> = table.columns().iter().map(|c| c.field(optional(c.name))).collect();
    if table == Table::Users {
        fields.extend(USERS_CUSTOM_COLUMNS.map(|(name, ty, nullable)| Field::new(name, ty.arrow_type(), nullable)));
    }
    Arc::new(Schema::new(fields))
}

/// The `channels` table: every channel of the vocabulary.
pub(super) fn channels_batch() -> Result<RecordBatch> {
    let mut id = StringBuilder::new();
    let mut name = StringBuilder::new();
    let mut kind = StringBuilder::new();
    for c in CHANNELS {
        id.append_value(c.id);
        name.append_value(c.name);
        kind.append_value(c.kind.as_str());
    }
    let cols: Vec<ArrayRef> = vec![Arc::new(id.finish()), Arc::new(name.finish()), Arc::new(kind.finish())];
    Ok(RecordBatch::try_new(schema(Table::Channels), cols)?)
}

/// The `products` table: the model's catalogue.
pub(super) fn products_batch(products: &[Product]) -> Result<RecordBatch> {
    let n = products.len();
    let mut id = StringBuilder::with_capacity(n, n * 6);
    let mut name = StringBuilder::with_capacity(n, n * 32);
    let mut category = StringBuilder::with_capacity(n, n * 10);
    let mut brand = StringBuilder::with_capacity(n, n * 8);
    let mut price = Float64Builder::with_capacity(n);
    for p in products {
        id.append_value(&p.id);
        name.append_value(&p.name);
        category.append_value(p.category().name);
        brand.append_value(p.brand_name());
        price.append_value(p.price);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(name.finish()),
        Arc::new(category.finish()),
        Arc::new(brand.finish()),
        Arc::new(price.finish()),
    ];
    Ok(RecordBatch::try_new(schema(Table::Products), cols)?)
}

/// One row of `users`: the contract's columns, then the custom ones. Dates are days since
/// 1970-01-01.
pub(super) struct UserRow<'a> {
    pub(super) user_id: &'a str,
    pub(super) name: &'a str,
    pub(super) gender: &'a str,
    pub(super) birth_date: i32,
    pub(super) city: &'a str,
    pub(super) region: &'a str,
    pub(super) tier: &'a str,
    pub(super) points: i64,
    pub(super) signup_date: i32,
    pub(super) phone: &'a str,
    pub(super) email: &'a str,
    pub(super) acquisition_channel: &'a str,
    pub(super) occupation: Option<&'a str>,
    pub(super) has_children: bool,
    pub(super) income_band: Option<i32>,
}

/// One row of `purchases` but its `order_id`, which is numbered over the whole output when the
/// chunks are put in order ([`UnnumberedPurchases::number`]). `ts` is in microseconds.
pub(super) struct PurchaseRow<'a> {
    pub(super) user_id: &'a str,
    pub(super) product_id: &'a str,
    pub(super) channel_id: &'a str,
    pub(super) ts: i64,
    pub(super) quantity: i32,
    pub(super) amount: f64,
}

/// Column builders of one chunk of users and their facts, in each table's column order.
pub(super) struct ChunkBuilders {
    u_id: StringBuilder,
    u_name: StringBuilder,
    u_gender: StringBuilder,
    u_birth: Date32Builder,
    u_city: StringBuilder,
    u_region: StringBuilder,
    u_tier: StringBuilder,
    u_points: Int64Builder,
    u_signup: Date32Builder,
    u_phone: StringBuilder,
    u_email: StringBuilder,
    u_acquisition: StringBuilder,
    u_occupation: StringBuilder,
    u_children: BooleanBuilder,
    u_income: Int32Builder,
    p_user: StringBuilder,
    p_product: StringBuilder,
    p_channel: StringBuilder,
    p_ts: TimestampMicrosecondBuilder,
    p_quantity: Int32Builder,
    p_amount: Float64Builder,
    e_user: StringBuilder,
    e_channel: StringBuilder,
    e_type: StringBuilder,
    e_ts: TimestampMicrosecondBuilder,
    t_user: StringBuilder,
    t_tag: StringBuilder,
    t_at: TimestampMicrosecondBuilder,
}

impl ChunkBuilders {
    /// Builders sized for `users` users and their expected facts.
    pub(super) fn new(users: usize) -> Self {
        let p = users * 6;
        let e = users * 11;
        let t = users * 7;
        ChunkBuilders {
            u_id: StringBuilder::with_capacity(users, users * 8),
            u_name: StringBuilder::with_capacity(users, users * 9),
            u_gender: StringBuilder::with_capacity(users, users),
            u_birth: Date32Builder::with_capacity(users),
            u_city: StringBuilder::with_capacity(users, users * 9),
            u_region: StringBuilder::with_capacity(users, users * 9),
            u_tier: StringBuilder::with_capacity(users, users * 7),
            u_points: Int64Builder::with_capacity(users),
            u_signup: Date32Builder::with_capacity(users),
            u_phone: StringBuilder::with_capacity(users, users * 11),
            u_email: StringBuilder::with_capacity(users, users * 18),
            u_acquisition: StringBuilder::with_capacity(users, users * 7),
            u_occupation: StringBuilder::with_capacity(users, users * 9),
            u_children: BooleanBuilder::with_capacity(users),
            u_income: Int32Builder::with_capacity(users),
            p_user: StringBuilder::with_capacity(p, p * 8),
            p_product: StringBuilder::with_capacity(p, p * 6),
            p_channel: StringBuilder::with_capacity(p, p * 6),
            p_ts: TimestampMicrosecondBuilder::with_capacity(p),
            p_quantity: Int32Builder::with_capacity(p),
            p_amount: Float64Builder::with_capacity(p),
            e_user: StringBuilder::with_capacity(e, e * 8),
            e_channel: StringBuilder::with_capacity(e, e * 6),
            e_type: StringBuilder::with_capacity(e, e * 5),
            e_ts: TimestampMicrosecondBuilder::with_capacity(e),
            t_user: StringBuilder::with_capacity(t, t * 8),
            t_tag: StringBuilder::with_capacity(t, t * 10),
            t_at: TimestampMicrosecondBuilder::with_capacity(t),
        }
    }

    pub(super) fn push_user(&mut self, u: &UserRow<'_>) {
        self.u_id.append_value(u.user_id);
        self.u_name.append_value(u.name);
        self.u_gender.append_value(u.gender);
        self.u_birth.append_value(u.birth_date);
        self.u_city.append_value(u.city);
        self.u_region.append_value(u.region);
        self.u_tier.append_value(u.tier);
        self.u_points.append_value(u.points);
        self.u_signup.append_value(u.signup_date);
        // A profile without a phone or e-mail (gen::identities) has NULL there.
        self.u_phone.append_option(Some(u.phone).filter(|p| !p.is_empty()));
        self.u_email.append_option(Some(u.email).filter(|e| !e.is_empty()));
        self.u_acquisition.append_value(u.acquisition_channel);
        self.u_occupation.append_option(u.occupation);
        self.u_children.append_value(u.has_children);
        self.u_income.append_option(u.income_band);
    }

    pub(super) fn push_purchase(&mut self, p: &PurchaseRow<'_>) {
        self.p_user.append_value(p.user_id);
        self.p_product.append_value(p.product_id);
        self.p_channel.append_value(p.channel_id);
        self.p_ts.append_value(p.ts);
        self.p_quantity.append_value(p.quantity);
        self.p_amount.append_value(p.amount);
    }

    /// One row of `events`; `ts` is in microseconds.
    pub(super) fn push_event(&mut self, user_id: &str, channel_id: &str, event_type: &str, ts: i64) {
        self.e_user.append_value(user_id);
        self.e_channel.append_value(channel_id);
        self.e_type.append_value(event_type);
        self.e_ts.append_value(ts);
    }

    /// One row of `user_tags`; `assigned_at` is in microseconds.
    pub(super) fn push_tag(&mut self, user_id: &str, tag: &str, assigned_at: i64) {
        self.t_user.append_value(user_id);
        self.t_tag.append_value(tag);
        self.t_at.append_value(assigned_at);
    }

    /// The chunk's batches.
    pub(super) fn finish(mut self) -> Result<Chunk> {
        let users: Vec<ArrayRef> = vec![
            Arc::new(self.u_id.finish()),
            Arc::new(self.u_name.finish()),
            Arc::new(self.u_gender.finish()),
            Arc::new(self.u_birth.finish()),
            Arc::new(self.u_city.finish()),
            Arc::new(self.u_region.finish()),
            Arc::new(self.u_tier.finish()),
            Arc::new(self.u_points.finish()),
            Arc::new(self.u_signup.finish()),
            Arc::new(self.u_phone.finish()),
            Arc::new(self.u_email.finish()),
            Arc::new(self.u_acquisition.finish()),
            Arc::new(self.u_occupation.finish()),
            Arc::new(self.u_children.finish()),
            Arc::new(self.u_income.finish()),
        ];
        let purchases: Vec<ArrayRef> = vec![
            Arc::new(self.p_user.finish()),
            Arc::new(self.p_product.finish()),
            Arc::new(self.p_channel.finish()),
            Arc::new(self.p_ts.finish()),
            Arc::new(self.p_quantity.finish()),
            Arc::new(self.p_amount.finish()),
        ];
        let rows = purchases[0].len();
        let events: Vec<ArrayRef> = vec![
            Arc::new(self.e_user.finish()),
            Arc::new(self.e_channel.finish()),
            Arc::new(self.e_type.finish()),
            Arc::new(self.e_ts.finish()),
        ];
        let tags: Vec<ArrayRef> =
            vec![Arc::new(self.t_user.finish()), Arc::new(self.t_tag.finish()), Arc::new(self.t_at.finish())];
        Ok(Chunk {
            users: RecordBatch::try_new(schema(Table::Users), users)?,
            purchases: UnnumberedPurchases { columns: purchases, rows },
            events: RecordBatch::try_new(schema(Table::Events), events)?,
            tags: RecordBatch::try_new(schema(Table::UserTags), tags)?,
        })
    }
}

/// One generated chunk of users and their facts.
pub(super) struct Chunk {
    pub(super) users: RecordBatch,
    pub(super) purchases: UnnumberedPurchases,
    pub(super) events: RecordBatch,
    pub(super) tags: RecordBatch,
}

/// A chunk's purchases without their `order_id` column: chunks are generated concurrently, and the
/// order numbers run over the whole output in chunk order.
pub(super) struct UnnumberedPurchases {
    /// The `purchases` columns after `order_id`.
    columns: Vec<ArrayRef>,
    rows: usize,
}

impl UnnumberedPurchases {
    /// The `purchases` batch, with `order_id`s `o{next_order}`, `o{next_order + 1}`, ...;
    /// advances `next_order` past them.
    pub(super) fn number(self, next_order: &mut u64) -> Result<RecordBatch> {
        let mut ids = StringBuilder::with_capacity(self.rows, self.rows * 10);
        let mut text = String::with_capacity(24);
        for _ in 0..self.rows {
            text.clear();
            let _ = write!(text, "o{next_order}");
            ids.append_value(&text);
            *next_order += 1;
        }
        let mut all: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        all.push(Arc::new(ids.finish()));
        all.extend(self.columns);
        Ok(RecordBatch::try_new(schema(Table::Purchases), all)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};

    /// The builders are positional: each value must land in the column of its name.
    #[test]
    fn rows_land_in_the_columns_of_their_names() {
        let mut b = ChunkBuilders::new(1);
        b.push_user(&UserRow {
            user_id: "u0",
            name: "王芳",
            gender: "F",
            birth_date: 1,
            city: "Wuxi",
            region: "Jiangsu",
            tier: "gold",
            points: 2,
            signup_date: 3,
            phone: "13800000000",
            email: "u0@qq.com",
            acquisition_channel: "app",
            occupation: None,
            has_children: true,
            income_band: Some(4),
        });
        b.push_purchase(&PurchaseRow {
            user_id: "u0",
            product_id: "p00001",
            channel_id: "web",
            ts: 5,
            quantity: 6,
            amount: 7.5,
        });
        b.push_event("u0", "jd", "cart", 8);
        b.push_tag("u0", "vip", 9);
        let chunk = b.finish().expect("batches");
        let mut next_order = 41;
        let purchases = chunk.purchases.number(&mut next_order).expect("numbered");
        assert_eq!(next_order, 42);

        let text = |batch: &RecordBatch, column: &str| {
            batch.column_by_name(column).expect(column).as_string::<i32>().value(0).to_string()
        };
        let users = &chunk.users;
        for (column, value) in [
            ("user_id", "u0"),
            ("name", "王芳"),
            ("gender", "F"),
            ("city", "Wuxi"),
            ("region", "Jiangsu"),
            ("tier", "gold"),
            ("phone", "13800000000"),
            ("email", "u0@qq.com"),
            ("acquisition_channel", "app"),
        ] {
            assert_eq!(text(users, column), value, "users.{column}");
        }
        let column = |batch: &RecordBatch, name: &str| batch.column_by_name(name).expect(name).clone();
        assert_eq!(column(users, "birth_date").as_primitive::<Date32Type>().value(0), 1);
        assert_eq!(column(users, "points").as_primitive::<Int64Type>().value(0), 2);
        assert_eq!(column(users, "signup_date").as_primitive::<Date32Type>().value(0), 3);
        assert!(column(users, "occupation").is_null(0));
        assert!(column(users, "has_children").as_boolean().value(0));
        assert_eq!(column(users, "income_band").as_primitive::<Int32Type>().value(0), 4);

        assert_eq!(text(&purchases, "order_id"), "o41");
        assert_eq!(text(&purchases, "user_id"), "u0");
        assert_eq!(text(&purchases, "product_id"), "p00001");
        assert_eq!(text(&purchases, "channel_id"), "web");
        assert_eq!(column(&purchases, "ts").as_primitive::<TimestampMicrosecondType>().value(0), 5);
        assert_eq!(column(&purchases, "quantity").as_primitive::<Int32Type>().value(0), 6);
        assert_eq!(column(&purchases, "amount").as_primitive::<Float64Type>().value(0), 7.5);

        assert_eq!(text(&chunk.events, "channel_id"), "jd");
        assert_eq!(text(&chunk.events, "event_type"), "cart");
        assert_eq!(column(&chunk.events, "ts").as_primitive::<TimestampMicrosecondType>().value(0), 8);
        assert_eq!(text(&chunk.tags, "tag"), "vip");
        assert_eq!(column(&chunk.tags, "assigned_at").as_primitive::<TimestampMicrosecondType>().value(0), 9);
    }

    #[test]
    fn schemas_are_the_contract_plus_the_custom_users_columns() {
        for table in Table::ALL {
            let names: Vec<String> = schema(table).fields().iter().map(|f| f.name().clone()).collect();
            let mut expected: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
            if table == Table::Users {
                expected.extend(["occupation", "has_children", "income_band"]);
            }
            assert_eq!(names, expected, "{table}");
        }
    }
}
