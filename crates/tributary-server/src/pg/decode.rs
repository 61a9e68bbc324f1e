//! Bound parameter values as text, the form the query engine casts to each
//! placeholder's type. Text-format values are already that; binary ones
//! (drivers send integers, floats, booleans, dates and timestamps so) are
//! read as their Postgres type and printed.

use super::encode::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use pgwire::api::Type;
use pgwire::error::PgWireResult;

use super::error;

/// Parameter `$n` of type `ty` as text; `None` for NULL.
pub fn parameter(n: usize, raw: Option<&[u8]>, ty: &Type, binary: bool) -> PgWireResult<Option<String>> {
    let Some(raw) = raw else { return Ok(None) };
    if !binary || [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::UNKNOWN, Type::JSON].contains(ty) {
        return String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| error::error("22021", format!("${n} is not valid UTF-8")));
    }
    let bad = || error::error("22P03", format!("${n}: {} bytes are not a binary {}", raw.len(), ty.name()));
    let int = |len: usize| -> PgWireResult<i64> {
        match (len, raw) {
            (2, &[a, b]) => Ok(i64::from(i16::from_be_bytes([a, b]))),
            (4, &[a, b, c, d]) => Ok(i64::from(i32::from_be_bytes([a, b, c, d]))),
            (8, r) if r.len() == 8 => Ok(i64::from_be_bytes(r.try_into().map_err(|_| bad())?)),
            _ => Err(bad()),
        }
    };
    let text = match ty {
        t if *t == Type::BOOL => match raw {
            [0] => "false".to_owned(),
            [_] => "true".to_owned(),
            _ => return Err(bad()),
        },
        t if *t == Type::INT2 => int(2)?.to_string(),
        t if *t == Type::INT4 => int(4)?.to_string(),
        t if *t == Type::INT8 => int(8)?.to_string(),
        t if *t == Type::FLOAT4 => f32::from_be_bytes(raw.try_into().map_err(|_| bad())?).to_string(),
        t if *t == Type::FLOAT8 => f64::from_be_bytes(raw.try_into().map_err(|_| bad())?).to_string(),
        t if *t == Type::DATE => {
            let days = int(4)? + i64::from(PG_EPOCH_DAYS);
            chrono::DateTime::from_timestamp(days * 86_400, 0).ok_or_else(bad)?.format("%Y-%m-%d").to_string()
        }
        t if *t == Type::TIMESTAMP || *t == Type::TIMESTAMPTZ => {
            let micros = int(8)? + PG_EPOCH_MICROS;
            let at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
            let zone = if *t == Type::TIMESTAMPTZ { "+00:00" } else { "" };
            format!("{}{zone}", at.format("%Y-%m-%dT%H:%M:%S%.6f"))
        }
        other => {
            return Err(error::error(
                "0A000",
                format!("${n}: binary {} parameters are not supported; send the value as text", other.name()),
            ));
        }
    };
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_become_text() {
        let p = |raw: &[u8], ty: &Type| parameter(1, Some(raw), ty, true).unwrap().unwrap();
        assert_eq!(p(&42i64.to_be_bytes(), &Type::INT8), "42");
        assert_eq!(p(&(-7i32).to_be_bytes(), &Type::INT4), "-7");
        assert_eq!(p(&[1], &Type::BOOL), "true");
        assert_eq!(p(&1.5f64.to_be_bytes(), &Type::FLOAT8), "1.5");
        assert_eq!(p(&0i64.to_be_bytes(), &Type::TIMESTAMPTZ), "2000-01-01T00:00:00.000000+00:00");
        assert_eq!(p(&1i32.to_be_bytes(), &Type::DATE), "2000-01-02");
        assert_eq!(parameter(1, Some(b"abc"), &Type::INT8, false).unwrap().as_deref(), Some("abc"));
        assert_eq!(parameter(1, None, &Type::INT8, true).unwrap(), None);
        assert!(parameter(1, Some(&[1, 2, 3]), &Type::INT8, true).is_err());
    }
}
