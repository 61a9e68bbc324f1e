//! What a data file's manifest entry says about its columns, in
//! DataFusion's terms: the bounds and counts that prune files, decide
//! filters without reading them, and answer `count(*)`, `min` and `max`.
//!
//! Iceberg bounds are bounds, not always values: a writer may truncate a
//! string's. So a string's bounds prune and decide filters but are only
//! *inexact* statistics; numbers, dates, times and booleans are exact. A
//! float's bounds leave NaN out, so they count only where the file says it
//! has no NaN.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, UInt64Array};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, ColumnStatistics, ScalarValue, Statistics};
use datafusion::logical_expr::{Expr, Operator};
use iceberg::spec::{DataFile, Datum, PrimitiveLiteral};

/// One data file of a scan, with its statistics per table column.
#[derive(Debug, Clone)]
pub(crate) struct FileStats {
    pub path: String,
    pub size: u64,
    pub rows: u64,
    /// Aligned with the table's columns.
    pub columns: Vec<ColumnStats>,
}

/// What the manifest says about one column of one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnStats {
    pub min: Option<ScalarValue>,
    pub max: Option<ScalarValue>,
    pub nulls: Option<u64>,
    /// Whether `min` and `max` are values of the column, not just bounds.
    pub exact: bool,
}

impl FileStats {
    /// `file`'s entry, for a table of `schema` whose columns have field ids `ids`.
    pub fn of(file: &DataFile, schema: &SchemaRef, ids: &[i32]) -> Self {
        let columns = schema.fields().iter().zip(ids).map(|(f, id)| column(file, *id, f.data_type())).collect();
        Self { path: file.file_path().to_owned(), size: file.file_size_in_bytes(), rows: file.record_count(), columns }
    }

    /// As DataFusion's statistics of the file.
    pub fn statistics(&self) -> Statistics {
        let columns = self
            .columns
            .iter()
            .map(|c| {
                let precision = |v: &Option<ScalarValue>| match v {
                    Some(v) if c.exact => Precision::Exact(v.clone()),
                    Some(v) => Precision::Inexact(v.clone()),
                    None => Precision::Absent,
                };
                ColumnStatistics {
                    null_count: c.nulls.map_or(Precision::Absent, |n| Precision::Exact(n as usize)),
                    min_value: precision(&c.min),
                    max_value: precision(&c.max),
                    ..ColumnStatistics::new_unknown()
                }
            })
            .collect();
        Statistics {
            num_rows: Precision::Exact(self.rows as usize),
            total_byte_size: Precision::Inexact(self.size as usize),
            column_statistics: columns,
        }
    }
}

fn column(file: &DataFile, id: i32, ty: &DataType) -> ColumnStats {
    let nulls = file.null_value_counts().get(&id).copied();
    // A float's bounds skip NaN: trust them only where there is none.
    let float = matches!(ty, DataType::Float32 | DataType::Float64);
    if float && file.nan_value_counts().get(&id).copied() != Some(0) {
        return ColumnStats { nulls, ..ColumnStats::default() };
    }
    let bound = |d: Option<&Datum>| d.and_then(|d| scalar(d.literal(), ty));
    let (min, max) = (bound(file.lower_bounds().get(&id)), bound(file.upper_bounds().get(&id)));
    let exact = !matches!(ty, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    ColumnStats { min, max, nulls, exact }
}

/// An Iceberg bound as a value of the column's Arrow type.
fn scalar(v: &PrimitiveLiteral, ty: &DataType) -> Option<ScalarValue> {
    use PrimitiveLiteral as L;
    Some(match (ty, v) {
        (DataType::Boolean, L::Boolean(b)) => ScalarValue::Boolean(Some(*b)),
        (DataType::Int32, L::Int(i)) => ScalarValue::Int32(Some(*i)),
        (DataType::Int64, L::Long(i)) => ScalarValue::Int64(Some(*i)),
        (DataType::Int64, L::Int(i)) => ScalarValue::Int64(Some(i64::from(*i))),
        (DataType::Float32, L::Float(f)) => ScalarValue::Float32(Some(f.0)),
        (DataType::Float64, L::Double(f)) => ScalarValue::Float64(Some(f.0)),
        (DataType::Float64, L::Float(f)) => ScalarValue::Float64(Some(f64::from(f.0))),
        (DataType::Date32, L::Int(d)) => ScalarValue::Date32(Some(*d)),
        (DataType::Time64(TimeUnit::Microsecond), L::Long(t)) => ScalarValue::Time64Microsecond(Some(*t)),
        (DataType::Timestamp(TimeUnit::Microsecond, tz), L::Long(t)) => {
            ScalarValue::TimestampMicrosecond(Some(*t), tz.clone())
        }
        (DataType::Timestamp(TimeUnit::Nanosecond, tz), L::Long(t)) => {
            ScalarValue::TimestampNanosecond(Some(*t), tz.clone())
        }
        (DataType::Decimal128(p, s), L::Int128(v)) => ScalarValue::Decimal128(Some(*v), *p, *s),
        (DataType::Utf8, L::String(s)) => ScalarValue::Utf8(Some(s.clone())),
        (DataType::LargeUtf8, L::String(s)) => ScalarValue::LargeUtf8(Some(s.clone())),
        (DataType::Utf8View, L::String(s)) => ScalarValue::Utf8View(Some(s.clone())),
        _ => return None,
    })
}

/// The files of a scan as pruning containers, one per file.
pub(crate) struct Files<'a> {
    pub schema: &'a SchemaRef,
    pub files: &'a [FileStats],
}

impl Files<'_> {
    fn index(&self, column: &Column) -> Option<usize> {
        self.schema.index_of(&column.name).ok()
    }

    fn bounds(&self, column: &Column, pick: fn(&ColumnStats) -> &Option<ScalarValue>) -> Option<ArrayRef> {
        let i = self.index(column)?;
        let ty = self.schema.field(i).data_type();
        let null = ScalarValue::try_from(ty).ok()?;
        let values = self.files.iter().map(|f| pick(&f.columns[i]).clone().unwrap_or_else(|| null.clone()));
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for Files<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bounds(column, |c| &c.min)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bounds(column, |c| &c.max)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let i = self.index(column)?;
        Some(Arc::new(self.files.iter().map(|f| f.columns[i].nulls).collect::<UInt64Array>()))
    }

    fn row_counts(&self, _column: &Column) -> Option<ArrayRef> {
        Some(Arc::new(self.files.iter().map(|f| Some(f.rows)).collect::<UInt64Array>()))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// Whether every row of `file` satisfies `filter`, by its bounds alone:
/// `filter` is `column op literal` (either way round) or an AND of such,
/// and the column has no NULL in the file. `false` means "not known".
pub(crate) fn all_match(filter: &Expr, schema: &SchemaRef, file: &FileStats) -> bool {
    let Expr::BinaryExpr(b) = filter else { return false };
    if b.op == Operator::And {
        return all_match(&b.left, schema, file) && all_match(&b.right, schema, file);
    }
    let (column, op, value) = match (b.left.as_ref(), b.right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, b.op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => match b.op.swap() {
            Some(op) => (c, op, v),
            None => return false,
        },
        _ => return false,
    };
    let Ok(i) = schema.index_of(&column.name) else { return false };
    let stats = &file.columns[i];
    let (Some(min), Some(max), Some(0)) = (&stats.min, &stats.max, stats.nulls) else { return false };
    if value.is_null() || value.data_type() != min.data_type() {
        return false;
    }
    use std::cmp::Ordering::{Greater, Less};
    let (lo, hi) = (min.partial_cmp(value), max.partial_cmp(value));
    match op {
        Operator::Gt => lo == Some(Greater),
        Operator::GtEq => matches!(lo, Some(o) if o != Less),
        Operator::Lt => hi == Some(Less),
        Operator::LtEq => matches!(hi, Some(o) if o != Greater),
        Operator::Eq => stats.exact && min == value && max == value,
        Operator::NotEq => lo == Some(Greater) || hi == Some(Less),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use arrow_schema::{Field, Schema};
    use datafusion::prelude::{col, lit};

    use super::*;

    fn file(nulls: u64) -> (SchemaRef, FileStats) {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let x = ColumnStats {
            min: Some(ScalarValue::Int64(Some(10))),
            max: Some(ScalarValue::Int64(Some(20))),
            nulls: Some(nulls),
            exact: true,
        };
        (schema, FileStats { path: "f".into(), size: 1, rows: 5, columns: vec![x] })
    }

    #[test]
    fn bounds_settle_a_filter_only_when_every_row_passes() {
        let (schema, f) = file(0);
        let cases = [
            (col("x").gt_eq(lit(10i64)), true),
            (col("x").gt(lit(10i64)), false),
            (col("x").gt(lit(9i64)), true),
            (col("x").lt(lit(20i64)), false),
            (col("x").lt(lit(21i64)), true),
            (col("x").lt_eq(lit(20i64)), true),
            (col("x").lt_eq(lit(19i64)), false),
            (col("x").eq(lit(15i64)), false),
            (col("x").not_eq(lit(25i64)), true),
            (col("x").not_eq(lit(15i64)), false),
            (lit(20i64).gt_eq(col("x")), true),
            (lit(20i64).gt(col("x")), false),
            (col("x").gt_eq(lit(10i64)).and(col("x").lt(lit(21i64))), true),
            (col("x").gt_eq(lit(10i64)).and(col("x").lt(lit(20i64))), false),
            (col("x").gt_eq(lit(10i64)).or(col("x").lt(lit(0i64))), false),
            // A literal of another type is not compared.
            (col("x").gt_eq(lit(1i32)), false),
        ];
        for (filter, all) in cases {
            assert_eq!(all_match(&filter, &schema, &f), all, "{filter}");
        }
        // A NULL fails every comparison.
        let (schema, f) = file(1);
        assert!(!all_match(&col("x").gt_eq(lit(10i64)), &schema, &f));
    }
}
