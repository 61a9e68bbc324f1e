//! The columnar validator and the reference validator must agree, record by
//! record: on random mixes of good and bad records, the columnar path
//! accepts exactly the records the reference accepts, and builds exactly
//! the columns the reference's typed cells make.

use std::fmt::Write as _;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tributary_core::schema::{EpochUnit, Field, FieldType, TimestampRange};

use super::columnar::{self, Slot};
use super::{Cell, Rules, validate_json};
use crate::columns::Column;

fn fields() -> Vec<Field> {
    let list = |elem: Field| FieldType::List(Box::new(elem));
    let mut fields = vec![
        Field::new("id", FieldType::String, true),
        Field::new("n", FieldType::Int, false),
        Field::new("big", FieldType::Long, false),
        Field::new("ratio", FieldType::Float, false),
        Field::new("score", FieldType::Double, false),
        Field::new("amount", FieldType::Decimal { precision: 10, scale: 2 }, false),
        Field::new("day", FieldType::Date, false),
        Field::new("ts", FieldType::Timestamptz, false),
        Field::new("local", FieldType::Timestamp, false),
        Field::new("ok", FieldType::Boolean, false),
        Field::new("blob", FieldType::Binary, false),
        Field::new(
            "geo",
            FieldType::Struct(vec![
                Field::new("lat", FieldType::Double, true),
                Field::new("place", FieldType::String, false),
            ]),
            false,
        ),
        Field::new("tags", list(Field::new("element", FieldType::String, false)), false),
        Field::new(
            "items",
            list(Field::new("element", FieldType::Struct(vec![Field::new("qty", FieldType::Int, true)]), true)),
            false,
        ),
    ];
    fields[8].epoch_unit = EpochUnit::Seconds;
    fields
}

fn arrow(fields: &[Field]) -> SchemaRef {
    let iceberg = tributary_table::schema::to_iceberg_schema(fields, 0).unwrap();
    std::sync::Arc::new(tributary_table::iceberg::arrow::schema_to_arrow_schema(&iceberg).unwrap())
}

fn columns(schema: &SchemaRef) -> Vec<Column> {
    schema.fields().iter().map(|f| Column::new(f.data_type()).unwrap()).collect()
}

/// Appends a reference cell the plain way, variant by variant.
fn push_cell(col: &mut Column, cell: &Cell) {
    match (col, cell) {
        (col, Cell::Null) => col.push_null(),
        (col @ Column::Bool { .. }, Cell::Bool(v)) => assert!(col.push_bool(*v)),
        (Column::Int(c), Cell::Int(v)) => c.push(*v),
        (Column::Long(c), Cell::Long(v)) => c.push(*v),
        (Column::Float(c), Cell::Float(v)) => c.push(*v),
        (Column::Double(c), Cell::Double(v)) => c.push(*v),
        (Column::Decimal(c, ..), Cell::Decimal(v)) => c.push(*v),
        (Column::Date(c), Cell::Date(v)) => c.push(*v),
        (Column::Ts(c, _), Cell::Ts(v)) => c.push(*v),
        (Column::Str(c), Cell::Str(v)) => c.push(v.as_bytes()),
        (Column::Bytes(c), Cell::Bytes(v)) => c.push(v),
        (col @ Column::Struct { .. }, Cell::Struct(cells)) => {
            let Column::Struct { children, .. } = &mut *col else { unreachable!() };
            children.iter_mut().zip(cells).for_each(|(c, cell)| push_cell(c, cell));
            col.close_struct();
        }
        (col @ Column::List { .. }, Cell::List(cells)) => {
            let Column::List { child, .. } = &mut *col else { unreachable!() };
            cells.iter().for_each(|cell| push_cell(child, cell));
            col.close_list();
        }
        (col, cell) => panic!("cell {cell:?} does not fit {col:?}"),
    }
}

fn batch(schema: &SchemaRef, mut cols: Vec<Column>) -> RecordBatch {
    RecordBatch::try_new(schema.clone(), cols.iter_mut().map(|c| c.finish().unwrap()).collect()).unwrap()
}

/// Runs `records` through both validators and compares them one by one,
/// then compares the columns they built. Returns how many were accepted.
fn agree(records: &[Vec<u8>], rules: &Rules<'_>, fill: &[(usize, &str)]) -> usize {
    let schema = arrow(rules.fields);
    let (mut columnar_cols, mut reference_cols) = (columns(&schema), columns(&schema));
    let (mut slots, mut rows) = (Vec::<Slot>::new(), 0);
    for record in records {
        let accepted = columnar::append(record, rules, fill, &mut columnar_cols, &mut slots);
        let reference = validate_json(record, rules, fill);
        let shown = String::from_utf8_lossy(record);
        assert_eq!(accepted, reference.is_ok(), "validators disagree on {shown}: reference says {reference:?}");
        match reference {
            Ok(cells) => {
                reference_cols.iter_mut().zip(&cells).for_each(|(c, cell)| push_cell(c, cell));
                rows += 1;
            }
            Err(_) => columnar_cols.iter_mut().for_each(|c| c.truncate(rows)),
        }
        assert!(columnar_cols.iter().all(|c| c.len() == rows), "a column is out of step after {shown}");
    }
    assert_eq!(batch(&schema, columnar_cols), batch(&schema, reference_cols));
    rows
}

/// SplitMix64: a small deterministic generator, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[usize::try_from(self.next() % items.len() as u64).unwrap_or(0)]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Values per field: good ones (the first `GOOD`), then bad or odd ones.
fn candidates(name: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match name {
        "id" => (&[r#""a""#, r#""x\"y""#, r#""é\u00e9""#], &["1", "[]", r#"{"k":1}"#]),
        "n" => (&["0", "-7", "2147483647"], &["2147483648", "1.5", r#""3""#, "true", "1e2"]),
        "big" => (&["9223372036854775807", "-9223372036854775808"], &["9223372036854775808", "3.0", r#""1""#]),
        "ratio" | "score" => (&["1.5", "-0", "7", "1e300", "18446744073709551615"], &[r#""1.5""#, "{}"]),
        "amount" => (&[r#""12.5""#, "12.25", "7", r#"" 3.10 ""#], &["1.234", r#""1e3""#, "123456789", "1e3", r#""x""#]),
        "day" => (&[r#""2026-11-25""#, r#""1969-12-31""#], &[r#""2026-02-30""#, r#""25/11/2026""#, "20261125"]),
        "ts" => (
            &[
                r#""2026-11-25T08:00:00Z""#,
                r#""2026-11-25T09:00:00.123456+01:00""#,
                r#""2026-11-25 08:00:00""#,
                "1795000000000",
            ],
            &["-5", "1.5", r#""2301-01-01T00:00:00Z""#, r#""yesterday""#, "99999999999999999999"],
        ),
        "local" => (&["1795000000", r#""2026-11-25T08:00:00""#], &["9300000000000000000", "17950000000000"]),
        "ok" => (&["true", "false"], &[r#""true""#, "0"]),
        "blob" => (&[r#""aGVsbG8=""#, r#""""#], &[r#""not base64!""#, "5"]),
        "geo" => (
            &[r#"{"lat":1.5}"#, r#"{"lat":2,"place":"x","other":[1,{"a":1}]}"#],
            &[
                r#"{"place":"x"}"#,
                r#"{"lat":null}"#,
                r#"{"lat":1,"lat":2}"#,
                r#"{"lat":1,"other":{"a":1,"a":2}}"#,
                r#"{"lat":"1"}"#,
                "[1]",
            ],
        ),
        "tags" => (&[r#"["a",null,"b"]"#, "[]"], &[r#"["a",1]"#, r#"[{"k":1,"k":2}]"#, r#""a""#]),
        "items" => (&[r#"[{"qty":1},{"qty":2}]"#, r#"[{"qty":1,"z":{}}]"#], &["[null]", r#"[{"qty":"x"}]"#, r#"[{}]"#]),
        _ => (&["1"], &[]),
    }
}

fn record(rng: &mut Rng, fields: &[Field]) -> Vec<u8> {
    let mut parts = Vec::new();
    for f in fields {
        if rng.chance(25) {
            continue;
        }
        let (good, bad) = candidates(&f.name);
        let value = match rng.next() % 100 {
            0..5 => "null",
            5..8 if !bad.is_empty() => rng.pick(bad),
            _ => rng.pick(good),
        };
        let key = if rng.chance(3) { f.name.replacen('i', "\\u0069", 1) } else { f.name.clone() };
        parts.push(format!(r#""{key}":{value}"#));
        if rng.chance(1) {
            parts.push(format!(r#""{}":{value}"#, f.name));
        }
    }
    if rng.chance(20) {
        parts.push(rng.pick(&[r#""extra":{"a":1,"a":2}"#, r#""extra":[1,2]"#, r#""x":1,"x":2"#]).to_owned());
    }
    // Shuffle the keys' order.
    for i in (1..parts.len()).rev() {
        parts.swap(i, usize::try_from(rng.next() % (i as u64 + 1)).unwrap_or(0));
    }
    let mut text = String::new();
    if rng.chance(2) {
        text.push('\u{feff}');
    }
    let _ = write!(text, "{{{}}}", parts.join(if rng.chance(10) { " , " } else { "," }));
    match rng.next() % 100 {
        0 => text.truncate(text.len() / 2),
        1 => text.push_str(" {}"),
        2 => text = format!("[{text}]"),
        3 => text = r#""just text""#.to_owned(),
        _ => {}
    }
    text.into_bytes()
}

#[test]
fn columnar_and_reference_agree_on_random_mixes() {
    let fields = fields();
    let ts = fields.iter().position(|f| f.name == "ts");
    let narrow = TimestampRange { min_us: 946_684_800_000_000, max_us: 4_102_444_800_000_000 };
    for (seed, event_time, timestamps, fill) in [
        (1, None, TimestampRange::default(), &[][..]),
        (2, ts, TimestampRange::default(), &[]),
        (3, None, narrow, &[(0, "from-key")]),
        (4, ts, narrow, &[(7, "2026-11-25T08:00:00Z"), (0, "k")]),
        (5, None, TimestampRange::default(), &[(1, "not an int")]),
    ] {
        let mut rng = Rng(seed);
        let records: Vec<Vec<u8>> = (0..4000).map(|_| record(&mut rng, &fields)).collect();
        let rules = Rules { fields: &fields, event_time, timestamps };
        let accepted = agree(&records, &rules, fill);
        // Both outcomes are exercised in every mix.
        assert!((400..3600).contains(&accepted), "seed {seed}: {accepted} of 4000 accepted");
    }
}

#[test]
fn columnar_and_reference_agree_on_edge_cases() {
    let fields = fields();
    let rules = Rules { fields: &fields, event_time: None, timestamps: TimestampRange::default() };
    let records: Vec<Vec<u8>> = [
        &br#"{"id":"a"}"#[..],
        br#"{"id":"a","n":1,"n":2}"#,
        br#"{"id":null,"id":"a"}"#,
        br#"{"i\u0064":"a","x":{"deep":[1,{"y":2}]},"n":2}"#,
        br#"{"id":"a","x":1,"x":2}"#,
        b"\xEF\xBB\xBF{\"id\":\"a\"}",
        b"{\"id\":\"a\",",
        b"{\"id\":\"a\"} {\"id\":\"b\"}",
        b"\"text\"",
        b"",
        b"  ",
        br#"{"id":"a","geo":null,"tags":null,"items":[]}"#,
        br#"{"id":"a","amount":-0.5,"ratio":3.4028236e38}"#,
        br#"{"id":"\ud800"}"#,
    ]
    .iter()
    .map(|r| r.to_vec())
    .collect();
    assert_eq!(agree(&records, &rules, &[]), 6);
}
