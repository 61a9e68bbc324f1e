//! Statements with `$1`, `$2`, … placeholders, for clients that prepare
//! once and bind values per execution (the Postgres extended protocol).
//!
//! Values arrive as text, as the protocol's text format sends them, and are
//! cast to the type planning inferred for their placeholder
//! (`user_id = $1` makes `$1` a `long`), so a value is bound as a typed
//! literal into the planned statement, never pasted into SQL text. A
//! placeholder nothing constrains (`SELECT $1`) takes its value as text.

use arrow_schema::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;

use crate::QueryError;

/// Each placeholder's inferred type, `$1` first; `None` where nothing
/// constrains it. A gap (`$2` used without `$1`) is unconstrained too.
pub fn types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, QueryError> {
    let found = plan.get_parameter_types()?;
    let count = found.keys().filter_map(|id| index(id)).max().unwrap_or(0);
    Ok((1..=count).map(|n| found.get(&format!("${n}")).cloned().flatten()).collect())
}

/// `plan` with `values` (`None`: SQL NULL) bound to its placeholders.
pub fn bind(plan: LogicalPlan, values: &[Option<String>]) -> Result<LogicalPlan, QueryError> {
    let types = types(&plan)?;
    if types.is_empty() && values.is_empty() {
        return Ok(plan);
    }
    if types.len() > values.len() {
        return Err(QueryError::Parameter(format!(
            "the statement uses ${} but {} value(s) were bound; bind one value per placeholder",
            types.len(),
            values.len()
        )));
    }
    let scalars = values
        .iter()
        .enumerate()
        .map(|(i, value)| scalar(i + 1, value.as_deref(), types.get(i).cloned().flatten().as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(plan.with_param_values(scalars)?)
}

fn scalar(n: usize, value: Option<&str>, ty: Option<&DataType>) -> Result<ScalarValue, QueryError> {
    match (value, ty) {
        (None, Some(ty)) => Ok(ScalarValue::try_new_null(ty)?),
        (None, None) => Ok(ScalarValue::Utf8(None)),
        (Some(v), None) => Ok(ScalarValue::Utf8(Some(v.to_owned()))),
        (Some(v), Some(ty)) => ScalarValue::try_from_string(v.to_owned(), ty)
            .map_err(|e| QueryError::Parameter(format!("${n} = '{v}' is not a valid {ty}: {e}"))),
    }
}

fn index(id: &str) -> Option<usize> {
    id.strip_prefix('$')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_take_the_inferred_type() {
        assert_eq!(scalar(1, Some("42"), Some(&DataType::Int64)).unwrap(), ScalarValue::Int64(Some(42)));
        assert_eq!(scalar(1, None, Some(&DataType::Int64)).unwrap(), ScalarValue::Int64(None));
        assert_eq!(scalar(1, Some("x"), None).unwrap(), ScalarValue::Utf8(Some("x".into())));
        let err = scalar(2, Some("abc"), Some(&DataType::Int64)).unwrap_err().to_string();
        assert!(err.contains("$2 = 'abc' is not a valid Int64"), "{err}");
    }
}
