//! Converts config schemas to Iceberg schemas and decides schema evolution.
//!
//! Evolution is additive only: a new optional column (at any depth) is added
//! with a fresh field id, a required column may become optional, and a
//! column may widen the ways Iceberg allows (int → long, float → double, a
//! larger decimal precision). Anything
//! that could make existing files unreadable or change their meaning — a
//! removed required column, a new required column, a changed type, an
//! optional column made required — is refused with an error that says what to
//! do instead. Old data files keep their field ids, so they stay readable and
//! read new columns as NULL.

use std::sync::Arc;

use iceberg::spec::{
    ListType, NestedField, NestedFieldRef, PrimitiveType, Schema, StructType, Transform, Type, UnboundPartitionSpec,
};
use tributary_core::TableName;
use tributary_core::config::LINEAGE_COLUMNS;
use tributary_core::schema::{Field, FieldType, PartitionField, PartitionTransform};

use crate::error::{Result, TableError};

/// Hands out field ids in increasing order.
#[derive(Debug)]
pub(crate) struct IdAlloc(pub i32);

impl IdAlloc {
    fn next(&mut self) -> i32 {
        self.0 += 1;
        self.0
    }
}

/// The lineage columns every ingested table carries after the user columns.
pub fn lineage_fields() -> Vec<Field> {
    let ty = |c: &str| match c {
        "_source" | "_source_file" => FieldType::String,
        "_source_partition" | "_schema_id" => FieldType::Int,
        "_source_offset" => FieldType::Long,
        _ => FieldType::Timestamptz,
    };
    LINEAGE_COLUMNS.iter().map(|c| Field::new(*c, ty(c), false)).collect()
}

/// The columns of the quarantine table that receives a table's rejects.
pub fn quarantine_fields() -> Vec<Field> {
    vec![
        Field::new("raw", FieldType::Binary, true),
        Field::new("error_kind", FieldType::String, true),
        Field::new("error_message", FieldType::String, true),
        Field::new("field", FieldType::String, false),
        Field::new("source", FieldType::String, true),
        Field::new("position", FieldType::String, false),
        Field::new("quarantined_at", FieldType::Timestamptz, true),
        // `raw` as text, with invalid UTF-8 replaced: `CAST(raw AS VARCHAR)`
        // fails the whole query on one binary record; this never does.
        Field::new("raw_text", FieldType::String, false),
    ]
}

fn iceberg_type(ty: &FieldType, ids: &mut IdAlloc) -> Type {
    match ty {
        FieldType::String => Type::Primitive(PrimitiveType::String),
        FieldType::Int => Type::Primitive(PrimitiveType::Int),
        FieldType::Long => Type::Primitive(PrimitiveType::Long),
        FieldType::Float => Type::Primitive(PrimitiveType::Float),
        FieldType::Double => Type::Primitive(PrimitiveType::Double),
        FieldType::Decimal { precision, scale } => {
            Type::Primitive(PrimitiveType::Decimal { precision: u32::from(*precision), scale: u32::from(*scale) })
        }
        FieldType::Boolean => Type::Primitive(PrimitiveType::Boolean),
        FieldType::Date => Type::Primitive(PrimitiveType::Date),
        FieldType::Timestamp => Type::Primitive(PrimitiveType::Timestamp),
        FieldType::Timestamptz => Type::Primitive(PrimitiveType::Timestamptz),
        FieldType::Binary => Type::Primitive(PrimitiveType::Binary),
        FieldType::Struct(fields) => Type::Struct(StructType::new(fields.iter().map(|f| nested(f, ids)).collect())),
        FieldType::List(elem) => {
            let id = ids.next();
            let ty = iceberg_type(&elem.ty, ids);
            Type::List(ListType::new(Arc::new(NestedField::list_element(id, ty, elem.required))))
        }
    }
}

fn nested(f: &Field, ids: &mut IdAlloc) -> NestedFieldRef {
    let id = ids.next();
    let ty = iceberg_type(&f.ty, ids);
    Arc::new(NestedField::new(id, &f.name, ty, f.required))
}

/// Reads an Iceberg schema back into the config model, so that record
/// validation follows the table as it is, not the config as it was.
pub fn from_iceberg_schema(schema: &Schema) -> Vec<Field> {
    schema.as_struct().fields().iter().map(|f| from_nested(f)).collect()
}

fn from_nested(f: &NestedField) -> Field {
    Field::new(f.name.clone(), from_type(&f.field_type), f.required)
}

fn from_type(t: &Type) -> FieldType {
    match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Int => FieldType::Int,
            PrimitiveType::Long => FieldType::Long,
            PrimitiveType::Float => FieldType::Float,
            PrimitiveType::Double => FieldType::Double,
            PrimitiveType::Decimal { precision, scale } => FieldType::Decimal {
                precision: u8::try_from(*precision).unwrap_or(38),
                scale: u8::try_from(*scale).unwrap_or(0),
            },
            PrimitiveType::Boolean => FieldType::Boolean,
            PrimitiveType::Date => FieldType::Date,
            PrimitiveType::Timestamp | PrimitiveType::TimestampNs => FieldType::Timestamp,
            PrimitiveType::Timestamptz | PrimitiveType::TimestamptzNs => FieldType::Timestamptz,
            PrimitiveType::Binary | PrimitiveType::Fixed(_) => FieldType::Binary,
            _ => FieldType::String,
        },
        Type::Struct(s) => FieldType::Struct(s.fields().iter().map(|f| from_nested(f)).collect()),
        Type::List(l) => FieldType::List(Box::new(Field::new(
            "element",
            from_type(&l.element_field.field_type),
            l.element_field.required,
        ))),
        Type::Map(_) => FieldType::String,
    }
}

/// Builds an Iceberg schema from config fields; ids start after `last_id`.
pub fn to_iceberg_schema(fields: &[Field], last_id: i32) -> Result<Schema> {
    let mut ids = IdAlloc(last_id);
    let fields: Vec<_> = fields.iter().map(|f| nested(f, &mut ids)).collect();
    Schema::builder().with_fields(fields).build().map_err(TableError::iceberg("building schema"))
}

/// Builds the unbound partition spec for a table.
pub fn to_partition_spec(partition: &[PartitionField], schema: &Schema) -> Result<UnboundPartitionSpec> {
    let mut b = UnboundPartitionSpec::builder().with_spec_id(0);
    for p in partition {
        let source = schema
            .field_id_by_name(&p.column)
            .ok_or_else(|| TableError::Config(format!("partition column '{}' is not in the schema", p.column)))?;
        let (transform, suffix) = match p.transform {
            PartitionTransform::Identity => (Transform::Identity, String::new()),
            PartitionTransform::Day => (Transform::Day, "_day".to_owned()),
            PartitionTransform::Hour => (Transform::Hour, "_hour".to_owned()),
            PartitionTransform::Bucket(n) => (Transform::Bucket(n), format!("_bucket_{n}")),
        };
        b = b
            .add_partition_field(source, format!("{}{suffix}", p.column), transform)
            .map_err(TableError::iceberg("building partition spec"))?;
    }
    Ok(b.build())
}

/// Computes the schema the table should have for `wanted` user columns.
///
/// Returns `None` when the current schema already matches, or the evolved
/// schema (existing ids kept, new ids after `last_column_id`).
pub fn evolve(table: &TableName, current: &Schema, wanted: &[Field], last_column_id: i32) -> Result<Option<Schema>> {
    let mut ids = IdAlloc(last_column_id);
    let mut changed = false;
    let fields = evolve_struct(table, "", current.as_struct(), wanted, &mut ids, &mut changed, true)?;
    if !changed {
        return Ok(None);
    }
    Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_fields(fields)
        .build()
        .map(Some)
        .map_err(TableError::iceberg("building evolved schema"))
}

fn evolve_struct(
    table: &TableName,
    prefix: &str,
    current: &StructType,
    wanted: &[Field],
    ids: &mut IdAlloc,
    changed: &mut bool,
    top_level: bool,
) -> Result<Vec<NestedFieldRef>> {
    let refuse = |reason: String| TableError::BreakingSchemaChange { table: table.clone(), reason };
    let mut out = Vec::new();
    for existing in current.fields() {
        let path = format!("{prefix}{}", existing.name);
        let lineage = top_level && LINEAGE_COLUMNS.contains(&existing.name.as_str());
        match wanted.iter().find(|w| w.name == existing.name) {
            None if existing.required && !lineage => {
                return Err(refuse(format!(
                    "required column '{path}' was removed from the config; put it back, or create a new table"
                )));
            }
            None => out.push(existing.clone()),
            Some(w) => out.push(evolve_field(table, &path, existing, w, ids, changed)?),
        }
    }
    for w in wanted.iter().filter(|w| current.field_by_name(&w.name).is_none()) {
        let path = format!("{prefix}{}", w.name);
        if w.required {
            return Err(refuse(format!(
                "new column '{path}' is required, but existing rows have no value for it; declare it with required = false"
            )));
        }
        *changed = true;
        out.push(nested(w, ids));
    }
    Ok(out)
}

fn evolve_field(
    table: &TableName,
    path: &str,
    existing: &NestedFieldRef,
    wanted: &Field,
    ids: &mut IdAlloc,
    changed: &mut bool,
) -> Result<NestedFieldRef> {
    let refuse = |reason: String| TableError::BreakingSchemaChange { table: table.clone(), reason };
    if wanted.required && !existing.required {
        return Err(refuse(format!(
            "column '{path}' is optional in the table and cannot become required; keep required = false"
        )));
    }
    let required = wanted.required;
    if required != existing.required {
        *changed = true;
    }
    let ty = match (&*existing.field_type, &wanted.ty) {
        (Type::Struct(cur), FieldType::Struct(w)) => {
            Type::Struct(StructType::new(evolve_struct(table, &format!("{path}."), cur, w, ids, changed, false)?))
        }
        (Type::List(cur), FieldType::List(w)) => {
            let elem = &cur.element_field;
            let new_elem = evolve_field(table, &format!("{path}.element"), elem, w, ids, changed)?;
            Type::List(ListType::new(new_elem))
        }
        (cur, w) => {
            let mut scratch = IdAlloc(0);
            let w_ty = iceberg_type(w, &mut scratch);
            if *cur == w_ty {
                cur.clone()
            } else if from_type(cur).widens_to(w) {
                // A promotion Iceberg allows: old files read as the wider type.
                *changed = true;
                w_ty
            } else {
                return Err(refuse(format!(
                    "column '{path}' has type {cur} in the table but {w} in the config; only widening is supported \
                     (int to long, float to double, a larger decimal precision): add a new column instead"
                )));
            }
        }
    };
    Ok(Arc::new(NestedField::new(existing.id, &existing.name, ty, required)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> TableName {
        TableName::new("raw", "t")
    }

    fn base() -> Vec<Field> {
        vec![
            Field::new("id", FieldType::String, true),
            Field::new("n", FieldType::Long, false),
            Field::new("geo", FieldType::Struct(vec![Field::new("lat", FieldType::Double, false)]), false),
        ]
    }

    #[test]
    fn adding_an_optional_nested_column_keeps_existing_ids() {
        let cur = to_iceberg_schema(&base(), 0).unwrap();
        let mut wanted = base();
        wanted[2].ty = FieldType::Struct(vec![
            Field::new("lat", FieldType::Double, false),
            Field::new("lon", FieldType::Double, false),
        ]);
        wanted.push(Field::new("note", FieldType::String, false));
        let evolved = evolve(&t(), &cur, &wanted, cur.highest_field_id()).unwrap().unwrap();
        assert_eq!(evolved.field_id_by_name("id"), cur.field_id_by_name("id"));
        assert_eq!(evolved.field_id_by_name("geo.lat"), cur.field_id_by_name("geo.lat"));
        assert!(evolved.field_id_by_name("geo.lon").unwrap() > cur.highest_field_id());
        assert!(evolved.field_id_by_name("note").is_some());
    }

    #[test]
    fn iceberg_schema_round_trips_to_the_config_model() {
        let cur = to_iceberg_schema(&base(), 0).unwrap();
        assert_eq!(from_iceberg_schema(&cur), base());
    }

    #[test]
    fn unchanged_schema_needs_no_evolution() {
        let cur = to_iceberg_schema(&base(), 0).unwrap();
        assert!(evolve(&t(), &cur, &base(), cur.highest_field_id()).unwrap().is_none());
    }

    #[test]
    fn breaking_changes_are_refused_with_a_reason() {
        let cur = to_iceberg_schema(&base(), 0).unwrap();
        let err = |w: Vec<Field>| evolve(&t(), &cur, &w, cur.highest_field_id()).unwrap_err().to_string();
        assert!(err(base()[1..].to_vec()).contains("required column 'id' was removed"));
        let mut narrowed = base();
        narrowed[1].ty = FieldType::Int;
        assert!(err(narrowed).contains("column 'n' has type long"));
        let mut retyped = base();
        retyped[1].ty = FieldType::String;
        assert!(err(retyped).contains("only widening is supported"));
        let mut new_required = base();
        new_required.push(Field::new("x", FieldType::Int, true));
        assert!(err(new_required).contains("declare it with required = false"));
    }

    #[test]
    fn widening_a_column_keeps_its_id() {
        let mut fields = base();
        fields.push(Field::new("qty", FieldType::Int, false));
        fields.push(Field::new("amount", FieldType::Decimal { precision: 12, scale: 2 }, false));
        let cur = to_iceberg_schema(&fields, 0).unwrap();
        fields[3].ty = FieldType::Long;
        fields[4].ty = FieldType::Decimal { precision: 14, scale: 2 };
        let evolved = evolve(&t(), &cur, &fields, cur.highest_field_id()).unwrap().unwrap();
        assert_eq!(evolved.field_id_by_name("qty"), cur.field_id_by_name("qty"));
        assert_eq!(from_iceberg_schema(&evolved), fields);
    }

    #[test]
    fn dropping_an_optional_column_from_config_keeps_it_in_the_table() {
        let cur = to_iceberg_schema(&base(), 0).unwrap();
        let wanted = vec![base()[0].clone(), base()[2].clone()];
        assert!(evolve(&t(), &cur, &wanted, cur.highest_field_id()).unwrap().is_none());
    }
}
