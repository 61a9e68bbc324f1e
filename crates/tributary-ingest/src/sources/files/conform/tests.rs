//! The conversion rules, value by value, without a file.
use arrow_array::{Float64Array, StructArray, TimestampNanosecondArray};
use arrow_schema::{Field as ArrowField, Schema};
use tributary_core::config::Config;
use tributary_table::schema::{lineage_fields, quarantine_fields, to_iceberg_schema};

use super::*;

const TABLE: &str = r#"
[[tables]]
name = "raw.t"
event_time = "event_time"
fields = [
  { name = "event_id",   type = "string",        required = true },
  { name = "user_id",    type = "long",          required = true },
  { name = "n",          type = "int" },
  { name = "amount",     type = "decimal(12,2)" },
  { name = "event_time", type = "timestamptz" },
  { name = "region",     type = "string" },
]
"#;

fn schema() -> IngestSchema {
    let def = Config::from_toml(TABLE).unwrap().validate(std::path::Path::new("/d")).unwrap().tables.remove(0);
    let mut fields = def.fields.clone();
    fields.extend(lineage_fields());
    let table = to_iceberg_schema(&fields, 0).unwrap();
    let quarantine = to_iceberg_schema(&quarantine_fields(), 0).unwrap();
    IngestSchema::of(&def, &table, &quarantine).unwrap()
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<ArrowField> =
        columns.iter().map(|(n, a)| ArrowField::new(*n, a.data_type().clone(), true)).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, a)| a).collect()).unwrap()
}

fn origin(rows: Option<&[u64]>) -> Origin<'_> {
    Origin { location: "/landing/f", rows, first_row: 100, ingested_at_us: 1 }
}

fn refused(done: &Conformed) -> Vec<(usize, &'static str, Option<&str>)> {
    done.rejects.iter().map(|(i, r, _)| (*i, r.kind, r.field.as_deref())).collect()
}

const US: i64 = 1_764_496_800_000_000; // 2025-11-30T10:00:00Z

#[test]
fn typed_columns_are_cast_only_where_each_value_survives() {
    let s = schema();
    let b = batch(vec![
        ("event_id", Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"]))),
        ("USER_ID", Arc::new(Int32Array::from(vec![1, 2, 3, 4, 5]))),
        ("n", Arc::new(Int64Array::from(vec![Some(1), Some(i64::from(i32::MAX) + 1), None, Some(-4), Some(5)]))),
        ("amount", Arc::new(Float64Array::from(vec![10.5, 1.0, 2.0, 1.234, 3.0]))),
        (
            "event_time",
            Arc::new(TimestampNanosecondArray::from(vec![US * 1000, US * 1000 + 1, US * 1000, US * 1000, US * 1000])),
        ),
    ]);
    let file = b.schema();
    let conform = Conform::new(&s, &file, &[("region".into(), "eu".into())]).unwrap();
    let done = conform.apply(&s, &b, &origin(None)).unwrap();
    // Row 1: n overflows an int, and its time has nanoseconds; row 3:
    // 1.234 has three decimal places. The first problem is named.
    assert_eq!(refused(&done), [(1, "type_mismatch", Some("n")), (3, "type_mismatch", Some("amount"))]);
    assert!(done.rejects[0].1.message.contains("2147483648"), "{}", done.rejects[0].1.message);
    assert_eq!(
        String::from_utf8_lossy(&done.rejects[1].2),
        r#"{"event_id":"d","USER_ID":4,"n":-4,"amount":1.234,"event_time":"2025-11-30T10:00:00"}"#
    );
    let good = &done.batch;
    assert_eq!(good.num_rows(), 3);
    let col = |n: &str| good.column(good.schema().index_of(n).unwrap()).clone();
    assert_eq!(col("user_id").as_primitive::<Int64Type>().values().to_vec(), vec![1, 3, 5]);
    assert_eq!(col("region").as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("eu"); 3]);
    assert_eq!(col("_source_offset").as_primitive::<Int64Type>().values().to_vec(), vec![100, 102, 104]);
    assert_eq!(col("_source_file").as_string::<i32>().value(0), "/landing/f");
    assert_eq!(col("_source").as_string::<i32>().value(0), "file");
    let times = col("event_time");
    assert_eq!(times.as_primitive::<arrow_array::types::TimestampMicrosecondType>().value(0), US);
}

#[test]
fn text_follows_the_json_rules() {
    let s = schema();
    let text = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
    let b = batch(vec![
        ("event_id", text(vec![Some("a"), Some("b"), None, Some("d"), Some("e"), Some("f")])),
        ("user_id", text(vec![Some(" 7 "), Some("x"), Some("1"), Some("1"), Some("1"), Some("1")])),
        ("amount", text(vec![Some("1.50"), Some("1"), Some("1"), Some("1e3"), Some("2"), Some("2")])),
        (
            "event_time",
            text(vec![
                Some("2025-11-30T10:00:00Z"),
                Some("2025-11-30 10:00:00"),
                Some("2025-11-30T10:00:00Z"),
                Some("2025-11-30T10:00:00Z"),
                Some("1764496800000"),
                Some("2300-01-01T00:00:00Z"),
            ]),
        ),
    ]);
    let conform = Conform::new(&s, &b.schema(), &[]).unwrap();
    let rows = [7, 8, 9, 10, 11, 12];
    let done = conform.apply(&s, &b, &origin(Some(&rows))).unwrap();
    assert_eq!(
        refused(&done),
        [
            (1, "type_mismatch", Some("user_id")),
            (2, "missing_field", Some("event_id")),
            (3, "type_mismatch", Some("amount")),
            (5, "invalid_timestamp", Some("event_time")),
        ]
    );
    let offsets = done.batch.column(done.batch.schema().index_of("_source_offset").unwrap()).clone();
    assert_eq!(offsets.as_primitive::<Int64Type>().values().to_vec(), vec![7, 11], "row numbers, not indices");
    let times = done.batch.column(done.batch.schema().index_of("event_time").unwrap()).clone();
    let times = times.as_primitive::<arrow_array::types::TimestampMicrosecondType>();
    assert_eq!((times.value(0), times.value(1)), (US, US), "RFC 3339 and epoch milliseconds");
}

#[test]
fn a_file_that_cannot_fit_the_table_is_refused_whole_with_the_reason() {
    let s = schema();
    let no_id = batch(vec![("user_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]);
    let err = Conform::new(&s, &no_id.schema(), &[]).unwrap_err();
    assert!(err.contains("no column 'event_id'") && err.contains("user_id"), "{err}");
    let nested = StructArray::from(vec![(
        Arc::new(ArrowField::new("x", DataType::Int64, true)),
        Arc::new(Int64Array::from(vec![1])) as ArrayRef,
    )]);
    let wrong = batch(vec![
        ("event_id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ("user_id", Arc::new(nested) as ArrayRef),
    ]);
    let err = Conform::new(&s, &wrong.schema(), &[]).unwrap_err();
    assert!(err.contains("column 'user_id'") && err.contains("cannot be converted"), "{err}");
    let ok = batch(vec![
        ("event_id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ("user_id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
    ]);
    let err = Conform::new(&s, &ok.schema(), &[("n".into(), "many".into())]).unwrap_err();
    assert!(err.contains("path segment 'n=many'"), "{err}");
    let twice = batch(vec![
        ("event_id", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ("event_id", Arc::new(StringArray::from(vec!["b"])) as ArrayRef),
    ]);
    assert!(Conform::new(&s, &twice.schema(), &[]).unwrap_err().contains("two columns named 'event_id'"));
}
