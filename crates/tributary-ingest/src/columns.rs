//! Column buffers that validation appends to directly, one tree per table
//! column, shaped by the table's Arrow schema (which carries the Parquet
//! field ids), so a finished batch always matches what the Parquet writer
//! expects, nested types included.
//!
//! Arrow's own builders cannot take back a value. A record is validated
//! column by column as its keys arrive, and may fail after some columns
//! took its values, so every buffer here can be cut back to a row count:
//! a rejected record leaves no trace, without a per-record staging copy.

use std::sync::Arc;

use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{
    ArrayRef, ArrowPrimitiveType, BooleanArray, LargeBinaryArray, ListArray, PrimitiveArray, StringArray, StructArray,
};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, FieldRef, Fields, TimeUnit};

use crate::error::IngestError;

/// Values of one primitive column, with a validity bit per row.
#[derive(Debug)]
pub struct Prim<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    valid: BooleanBufferBuilder,
}

impl<T: ArrowPrimitiveType> Prim<T> {
    fn new() -> Self {
        Self { values: Vec::new(), valid: BooleanBufferBuilder::new(0) }
    }

    /// Appends a value.
    pub fn push(&mut self, v: T::Native) {
        self.values.push(v);
        self.valid.append(true);
    }

    fn reserve(&mut self, rows: usize) {
        self.values.reserve(rows);
        self.valid.reserve(rows);
    }

    /// Appends a value or a null.
    pub fn push_opt(&mut self, v: Option<T::Native>) {
        match v {
            Some(v) => self.push(v),
            None => self.push_null(),
        }
    }

    fn push_null(&mut self) {
        self.values.push(T::Native::default());
        self.valid.append(false);
    }

    fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.valid.truncate(rows);
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn finish(&mut self) -> PrimitiveArray<T> {
        PrimitiveArray::new(ScalarBuffer::from(std::mem::take(&mut self.values)), nulls(&mut self.valid))
    }
}

/// Variable-length values (UTF-8 text or bytes) with `O`-sized offsets.
#[derive(Debug)]
pub struct Var<O> {
    offsets: Vec<O>,
    data: Vec<u8>,
    valid: BooleanBufferBuilder,
}

impl<O: Copy + Default + TryFrom<usize>> Var<O>
where
    usize: TryFrom<O>,
{
    fn new() -> Self {
        Self { offsets: vec![O::default()], data: Vec::new(), valid: BooleanBufferBuilder::new(0) }
    }

    /// Appends a value. Offsets past `O::MAX` are refused when the batch is
    /// built; a batch is far below that (a commit is bounded in bytes).
    pub fn push(&mut self, v: &[u8]) {
        self.data.extend_from_slice(v);
        self.close_row(true);
    }

    fn push_null(&mut self) {
        self.close_row(false);
    }

    fn len(&self) -> usize {
        self.valid.len()
    }

    fn close_row(&mut self, valid: bool) {
        self.offsets.push(O::try_from(self.data.len()).unwrap_or_default());
        self.valid.append(valid);
    }

    fn reserve(&mut self, rows: usize) {
        self.offsets.reserve(rows);
        self.valid.reserve(rows);
    }

    fn truncate(&mut self, rows: usize) {
        self.offsets.truncate(rows + 1);
        let end = self.offsets.last().and_then(|o| usize::try_from(*o).ok()).unwrap_or(0);
        self.data.truncate(end);
        self.valid.truncate(rows);
    }

    fn take(&mut self) -> Result<(OffsetBuffer<O>, Buffer, Option<NullBuffer>), IngestError>
    where
        O: arrow_buffer::ArrowNativeType,
    {
        // An offset that did not fit was written as 0: offsets would fall.
        if self.offsets.windows(2).any(|w| usize::try_from(w[1]).ok() < usize::try_from(w[0]).ok()) {
            return Err(IngestError::Internal("a batch's text column passed its offset limit".to_owned()));
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(&mut self.offsets, vec![O::default()])));
        Ok((offsets, Buffer::from_vec(std::mem::take(&mut self.data)), nulls(&mut self.valid)))
    }
}

/// One column under construction.
#[derive(Debug)]
pub enum Column {
    /// boolean
    Bool { values: BooleanBufferBuilder, valid: BooleanBufferBuilder },
    /// int
    Int(Prim<Int32Type>),
    /// long
    Long(Prim<Int64Type>),
    /// float
    Float(Prim<Float32Type>),
    /// double
    Double(Prim<Float64Type>),
    /// date, days since the epoch
    Date(Prim<Date32Type>),
    /// timestamp in microseconds, with the schema's time zone
    Ts(Prim<TimestampMicrosecondType>, Option<Arc<str>>),
    /// decimal, unscaled, with the schema's precision and scale
    Decimal(Prim<Decimal128Type>, u8, i8),
    /// string
    Str(Var<i32>),
    /// binary
    Bytes(Var<i64>),
    /// struct: one child column per field
    Struct { fields: Fields, children: Vec<Column>, valid: BooleanBufferBuilder },
    /// list: element offsets into one child column
    List { field: FieldRef, offsets: Vec<i32>, child: Box<Column>, valid: BooleanBufferBuilder },
}

/// A match on a column: `$then` with `$buf` bound to the buffer of a column
/// of fixed-size values or of text/bytes (each such buffer has `push_null`,
/// `reserve`, `truncate` and `len`), then the arms given for booleans and
/// nested columns.
macro_rules! each_buffer {
    ($col:expr, $buf:ident => $then:expr, $($other:pat => $else:expr),+ $(,)?) => {
        match $col {
            Column::Int($buf) => $then,
            Column::Long($buf) => $then,
            Column::Float($buf) => $then,
            Column::Double($buf) => $then,
            Column::Date($buf) => $then,
            Column::Ts($buf, _) => $then,
            Column::Decimal($buf, ..) => $then,
            Column::Str($buf) => $then,
            Column::Bytes($buf) => $then,
            $($other => $else,)+
        }
    };
}

impl Column {
    /// An empty column of Arrow type `dt`.
    pub fn new(dt: &DataType) -> Result<Self, IngestError> {
        Ok(match dt {
            DataType::Boolean => {
                Self::Bool { values: BooleanBufferBuilder::new(0), valid: BooleanBufferBuilder::new(0) }
            }
            DataType::Int32 => Self::Int(Prim::new()),
            DataType::Int64 => Self::Long(Prim::new()),
            DataType::Float32 => Self::Float(Prim::new()),
            DataType::Float64 => Self::Double(Prim::new()),
            DataType::Date32 => Self::Date(Prim::new()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => Self::Ts(Prim::new(), tz.clone()),
            DataType::Decimal128(p, s) => Self::Decimal(Prim::new(), *p, *s),
            DataType::Utf8 => Self::Str(Var::new()),
            DataType::LargeBinary => Self::Bytes(Var::new()),
            DataType::Struct(fields) => Self::Struct {
                fields: fields.clone(),
                children: fields.iter().map(|f| Self::new(f.data_type())).collect::<Result<_, _>>()?,
                valid: BooleanBufferBuilder::new(0),
            },
            DataType::List(field) => Self::List {
                field: field.clone(),
                offsets: vec![0],
                child: Box::new(Self::new(field.data_type())?),
                valid: BooleanBufferBuilder::new(0),
            },
            other => return Err(IngestError::Internal(format!("unsupported Arrow type {other} in table schema"))),
        })
    }

    /// Appends a null (a null struct's children get nulls too).
    pub fn push_null(&mut self) {
        each_buffer!(self, b => b.push_null(),
            Self::Bool { values, valid } => {
                values.append(false);
                valid.append(false);
            },
            Self::Struct { children, valid, .. } => {
                children.iter_mut().for_each(Self::push_null);
                valid.append(false);
            },
            Self::List { offsets, valid, .. } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
                valid.append(false);
            },
        );
    }

    /// Appends a boolean; false if this is not a boolean column.
    pub fn push_bool(&mut self, v: bool) -> bool {
        let Self::Bool { values, valid } = self else { return false };
        values.append(v);
        valid.append(true);
        true
    }

    /// Marks a struct row present, once its children took their values.
    pub fn close_struct(&mut self) {
        if let Self::Struct { valid, .. } = self {
            valid.append(true);
        }
    }

    /// Closes a list row whose elements were appended to the child.
    pub fn close_list(&mut self) {
        if let Self::List { offsets, child, valid, .. } = self {
            offsets.push(i32::try_from(child.len()).unwrap_or(i32::MAX));
            valid.append(true);
        }
    }

    /// Makes room for `rows` more rows (values of fixed size, offsets and
    /// validity; not text, nor list elements), so that a batch of known size
    /// grows its buffers once rather than by doubling.
    pub fn reserve(&mut self, rows: usize) {
        each_buffer!(self, b => b.reserve(rows),
            Self::Bool { values, valid } => {
                values.reserve(rows);
                valid.reserve(rows);
            },
            Self::Struct { children, valid, .. } => {
                children.iter_mut().for_each(|c| c.reserve(rows));
                valid.reserve(rows);
            },
            Self::List { offsets, valid, .. } => {
                offsets.reserve(rows);
                valid.reserve(rows);
            },
        );
    }

    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        each_buffer!(self, b => b.len(), Self::Bool { valid, .. } | Self::Struct { valid, .. } | Self::List { valid, .. } => valid.len())
    }

    /// Cuts the column back to its first `rows` rows.
    pub fn truncate(&mut self, rows: usize) {
        each_buffer!(self, b => b.truncate(rows),
            Self::Bool { values, valid } => {
                values.truncate(rows);
                valid.truncate(rows);
            },
            Self::Struct { children, valid, .. } => {
                children.iter_mut().for_each(|c| c.truncate(rows));
                valid.truncate(rows);
            },
            Self::List { offsets, child, valid, .. } => {
                offsets.truncate(rows + 1);
                child.truncate(offsets.last().and_then(|o| usize::try_from(*o).ok()).unwrap_or(0));
                valid.truncate(rows);
            },
        );
    }

    /// The column as an Arrow array; the buffers are left empty.
    pub fn finish(&mut self) -> Result<ArrayRef, IngestError> {
        let invalid = |what: &str, e: arrow_schema::ArrowError| IngestError::Internal(format!("{what} column: {e}"));
        Ok(match self {
            Self::Bool { values, valid } => Arc::new(BooleanArray::new(values.finish(), nulls(valid))),
            Self::Int(p) => Arc::new(p.finish()),
            Self::Long(p) => Arc::new(p.finish()),
            Self::Float(p) => Arc::new(p.finish()),
            Self::Double(p) => Arc::new(p.finish()),
            Self::Date(p) => Arc::new(p.finish()),
            Self::Ts(p, tz) => Arc::new(p.finish().with_timezone_opt(tz.clone())),
            Self::Decimal(p, precision, scale) => {
                Arc::new(p.finish().with_precision_and_scale(*precision, *scale).map_err(|e| invalid("decimal", e))?)
            }
            Self::Str(v) => {
                let (offsets, data, nulls) = v.take()?;
                Arc::new(StringArray::try_new(offsets, data, nulls).map_err(|e| invalid("string", e))?)
            }
            Self::Bytes(v) => {
                let (offsets, data, nulls) = v.take()?;
                Arc::new(LargeBinaryArray::try_new(offsets, data, nulls).map_err(|e| invalid("binary", e))?)
            }
            Self::Struct { fields, children, valid } => {
                let children = children.iter_mut().map(Self::finish).collect::<Result<Vec<_>, _>>()?;
                Arc::new(
                    StructArray::try_new(fields.clone(), children, nulls(valid)).map_err(|e| invalid("struct", e))?,
                )
            }
            Self::List { field, offsets, child, valid } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                let values = child.finish()?;
                Arc::new(
                    ListArray::try_new(field.clone(), offsets, values, nulls(valid)).map_err(|e| invalid("list", e))?,
                )
            }
        })
    }
}

/// The validity bits as a null buffer, or none when every row is valid.
fn nulls(valid: &mut BooleanBufferBuilder) -> Option<NullBuffer> {
    Some(NullBuffer::new(valid.finish())).filter(|n| n.null_count() > 0)
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_schema::Field;

    use super::*;

    fn list_of_struct() -> DataType {
        let point = Fields::from(vec![Field::new("lat", DataType::Float64, false)]);
        DataType::List(Arc::new(Field::new("element", DataType::Struct(point), true)))
    }

    #[test]
    fn a_truncated_row_leaves_no_trace_in_nested_columns() {
        let mut col = Column::new(&list_of_struct()).unwrap();
        let Column::List { child, .. } = &mut col else { unreachable!() };
        let Column::Struct { children, .. } = child.as_mut() else { unreachable!() };
        let Column::Double(lat) = &mut children[0] else { unreachable!() };
        lat.push(1.0);
        child.close_struct();
        col.close_list();
        // A second row that takes two elements, then is rejected.
        let Column::List { child, .. } = &mut col else { unreachable!() };
        for v in [2.0, 3.0] {
            let Column::Struct { children, .. } = child.as_mut() else { unreachable!() };
            let Column::Double(lat) = &mut children[0] else { unreachable!() };
            lat.push(v);
            child.close_struct();
        }
        col.truncate(1);
        col.push_null();
        assert_eq!(col.len(), 2);
        let array = col.finish().unwrap();
        let list = array.as_any().downcast_ref::<ListArray>().unwrap();
        assert_eq!(list.value_offsets(), &[0, 1, 1]);
        assert!(list.is_null(1));
        assert_eq!(list.values().len(), 1, "the rejected row's elements are gone");
    }

    #[test]
    fn text_and_nulls_round_trip() {
        let mut col = Column::new(&DataType::Utf8).unwrap();
        let Column::Str(v) = &mut col else { unreachable!() };
        v.push(b"ab");
        v.push(b"rejected");
        col.truncate(1);
        col.push_null();
        let Column::Str(v) = &mut col else { unreachable!() };
        v.push("é".as_bytes());
        let array = col.finish().unwrap();
        let s = array.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((s.value(0), s.is_null(1), s.value(2)), ("ab", true, "é"));
        assert_eq!(col.len(), 0, "finishing empties the buffers");
    }
}
