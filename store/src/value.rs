//! Property values: parsed from CSV fields by their property's type,
//! packed into the graph's property bytes, read back for queries and
//! export.
//!
//! An element's properties are one record in the graph's byte arena, in
//! its label's property order. A single-valued property is a presence
//! byte and the value; a list or set is a LEB128 count and the values.
//! Values: `int` and `float` 4 bytes, `long`, `double` and `date` (seconds
//! since 1970, UTC) 8, `bool` 1, `enum` 2 (the name's number), text a
//! LEB128 length and UTF-8 bytes. An empty CSV field is an absent value;
//! the values of a list or set are separated by `;`.

use time::PrimitiveDateTime;
use time::macros::format_description;

use crate::error::quote;
use crate::schema::{Cardinality, DataType, LabelDef, PropertyDef};

/// One property value, as queries and exports show it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `char`, `char array`, `string`, and an `enum`'s name.
    Text(String),
    /// `int`.
    Int(i32),
    /// `long`.
    Long(i64),
    /// `float`.
    Float(f32),
    /// `double`.
    Double(f64),
    /// `bool`.
    Bool(bool),
    /// `date`, seconds since 1970 (UTC); shown `yyyy-MM-dd HH:mm:ss`.
    Date(i64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Int(v) => write!(f, "{v}"),
            Value::Long(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Double(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Date(s) => f.write_str(&format_date(*s)),
        }
    }
}

const DATE_TIME: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

/// `yyyy-MM-dd HH:mm:ss` of seconds since 1970, UTC.
pub fn format_date(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(DATE_TIME).ok())
        .unwrap_or_else(|| secs.to_string())
}

fn parse_date(s: &str) -> Option<i64> {
    if let Ok(t) = PrimitiveDateTime::parse(s, DATE_TIME) {
        return Some(t.assume_utc().unix_timestamp());
    }
    time::Date::parse(s, DATE)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp())
}

/// Appends `v` as LEB128.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 value at `*pos`, moving it on; `None` if cut short or
/// longer than 64 bits.
pub(crate) fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Packs the properties of one element, given as `count` CSV fields in
/// the label's order (fewer fields than properties leave the rest
/// absent), onto `arena`. The error says which property and why.
pub(crate) fn encode<'a>(
    label: &LabelDef,
    count: usize,
    fields: impl Iterator<Item = &'a str>,
    arena: &mut Vec<u8>,
) -> Result<(), String> {
    if count > label.properties.len() {
        return Err(format!(
            "{count} property fields, label {} has {} properties",
            quote(&label.name),
            label.properties.len()
        ));
    }
    let mut fields = fields;
    for p in &label.properties {
        let field = fields.next().unwrap_or("");
        encode_property(p, field, arena).map_err(|why| {
            format!(
                "property {} ({} {}): {why}",
                quote(&p.name),
                p.cardinality.name(),
                p.data_type.name()
            )
        })?;
    }
    Ok(())
}

fn encode_property(p: &PropertyDef, field: &str, arena: &mut Vec<u8>) -> Result<(), String> {
    match p.cardinality {
        Cardinality::Single => {
            if field.is_empty() {
                arena.push(0);
            } else {
                arena.push(1);
                encode_value(p, field, arena)?;
            }
        }
        Cardinality::List | Cardinality::Set => {
            if field.is_empty() {
                put_varint(arena, 0);
                return Ok(());
            }
            let mut values: Vec<&str> = field.split(';').collect();
            if p.cardinality == Cardinality::Set {
                let mut seen = std::collections::HashSet::new();
                values.retain(|v| seen.insert(*v));
            }
            put_varint(arena, values.len() as u64);
            for v in values {
                encode_value(p, v, arena)?;
            }
        }
    }
    Ok(())
}

fn encode_value(p: &PropertyDef, s: &str, arena: &mut Vec<u8>) -> Result<(), String> {
    let bad = || format!("{} is not a {}", quote(s), p.data_type.name());
    match p.data_type {
        DataType::Char | DataType::CharArray | DataType::String => {
            if let Some(max) = p.max_size
                && s.len() > max as usize
            {
                return Err(format!("{} is longer than {max} bytes", quote(s)));
            }
            put_varint(arena, s.len() as u64);
            arena.extend_from_slice(s.as_bytes());
        }
        DataType::Int => {
            arena.extend_from_slice(&s.trim().parse::<i32>().map_err(|_| bad())?.to_le_bytes())
        }
        DataType::Long => {
            arena.extend_from_slice(&s.trim().parse::<i64>().map_err(|_| bad())?.to_le_bytes())
        }
        DataType::Float => {
            arena.extend_from_slice(&s.trim().parse::<f32>().map_err(|_| bad())?.to_le_bytes());
        }
        DataType::Double => {
            arena.extend_from_slice(&s.trim().parse::<f64>().map_err(|_| bad())?.to_le_bytes());
        }
        DataType::Bool => {
            let t = s.trim();
            let v = if t.eq_ignore_ascii_case("true") || t == "1" {
                1
            } else if t.eq_ignore_ascii_case("false") || t == "0" {
                0
            } else {
                return Err(bad());
            };
            arena.push(v);
        }
        DataType::Date => {
            let secs = parse_date(s.trim()).ok_or_else(|| {
                format!(
                    "{} is not a date (yyyy-MM-dd HH:mm:ss or yyyy-MM-dd)",
                    quote(s)
                )
            })?;
            arena.extend_from_slice(&secs.to_le_bytes());
        }
        DataType::Enum => {
            let i = p
                .enum_values
                .iter()
                .position(|v| v == s)
                .ok_or_else(|| format!("{} is not one of the enum's names", quote(s)))?;
            let i = u16::try_from(i).map_err(|_| bad())?;
            arena.extend_from_slice(&i.to_le_bytes());
        }
    }
    Ok(())
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(n)?;
    let s = b.get(*pos..end)?;
    *pos = end;
    Some(s)
}

fn decode_value(p: &PropertyDef, b: &[u8], pos: &mut usize) -> Option<Value> {
    Some(match p.data_type {
        DataType::Char | DataType::CharArray | DataType::String => {
            let n = usize::try_from(get_varint(b, pos)?).ok()?;
            Value::Text(String::from_utf8(take(b, pos, n)?.to_vec()).ok()?)
        }
        DataType::Int => Value::Int(i32::from_le_bytes(take(b, pos, 4)?.try_into().ok()?)),
        DataType::Long => Value::Long(i64::from_le_bytes(take(b, pos, 8)?.try_into().ok()?)),
        DataType::Float => Value::Float(f32::from_le_bytes(take(b, pos, 4)?.try_into().ok()?)),
        DataType::Double => Value::Double(f64::from_le_bytes(take(b, pos, 8)?.try_into().ok()?)),
        DataType::Bool => Value::Bool(take(b, pos, 1)?[0] != 0),
        DataType::Date => Value::Date(i64::from_le_bytes(take(b, pos, 8)?.try_into().ok()?)),
        DataType::Enum => {
            let i = u16::from_le_bytes(take(b, pos, 2)?.try_into().ok()?);
            Value::Text(p.enum_values.get(usize::from(i))?.clone())
        }
    })
}

/// Reads back the record at `offset`: one list of values per property of
/// the label (empty when absent). `None` if the bytes do not hold such a
/// record (a damaged graph; never for a record [`encode`] wrote).
pub(crate) fn decode(label: &LabelDef, arena: &[u8], offset: usize) -> Option<Vec<Vec<Value>>> {
    let mut pos = offset;
    let mut out = Vec::with_capacity(label.properties.len());
    for p in &label.properties {
        let mut values = Vec::new();
        match p.cardinality {
            Cardinality::Single => {
                if *arena.get(pos)? != 0 {
                    pos += 1;
                    values.push(decode_value(p, arena, &mut pos)?);
                } else {
                    pos += 1;
                }
            }
            Cardinality::List | Cardinality::Set => {
                let n = get_varint(arena, &mut pos)?;
                // Every value takes at least one byte: a count past what is
                // left is damage, not a reason to allocate.
                if n > (arena.len() - pos.min(arena.len())) as u64 {
                    return None;
                }
                for _ in 0..n {
                    values.push(decode_value(p, arena, &mut pos)?);
                }
            }
        }
        out.push(values);
    }
    Some(out)
}

/// The CSV field of a property's values (`;` between the values of a list
/// or set; empty when absent).
pub(crate) fn field(values: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(&v.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(name: &str, t: DataType, c: Cardinality) -> PropertyDef {
        PropertyDef {
            name: name.into(),
            data_type: t,
            cardinality: c,
            max_size: None,
            enum_values: if t == DataType::Enum {
                vec!["F".into(), "M".into()]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn every_type_round_trips_and_bad_values_are_named() {
        let label = LabelDef {
            name: "l".into(),
            properties: vec![
                prop("s", DataType::String, Cardinality::Single),
                prop("i", DataType::Int, Cardinality::Single),
                prop("l", DataType::Long, Cardinality::List),
                prop("f", DataType::Float, Cardinality::Single),
                prop("d", DataType::Double, Cardinality::Single),
                prop("b", DataType::Bool, Cardinality::Single),
                prop("t", DataType::Date, Cardinality::Single),
                prop("e", DataType::Enum, Cardinality::Set),
                prop("absent", DataType::Int, Cardinality::Single),
            ],
        };
        let mut arena = vec![7];
        let enc =
            |f: &[&str], arena: &mut Vec<u8>| encode(&label, f.len(), f.iter().copied(), arena);
        enc(
            &[
                "a,b",
                "-3",
                "1;2;2",
                "1.5",
                "2.25",
                "TRUE",
                "2024-05-01 12:00:00",
                "M;F;M",
            ],
            &mut arena,
        )
        .unwrap();
        let got = decode(&label, &arena, 1).unwrap();
        assert_eq!(got[0], [Value::Text("a,b".into())]);
        assert_eq!(got[1], [Value::Int(-3)]);
        assert_eq!(got[2], [Value::Long(1), Value::Long(2), Value::Long(2)]);
        assert_eq!(got[5], [Value::Bool(true)]);
        assert_eq!(field(&got[6]), "2024-05-01 12:00:00");
        assert_eq!(field(&got[7]), "M;F");
        assert!(got[8].is_empty());
        let e = enc(&["x", "nope"], &mut arena).unwrap_err();
        assert!(e.contains("\"i\"") && e.contains("not a int"), "{e}");
        let e = enc(&["x"; 10], &mut arena).unwrap_err();
        assert!(e.contains("10 property fields"), "{e}");
        assert!(enc(&["", "", "", "", "", "", "", "X"], &mut arena).is_err());
        assert!(enc(&["", "", "", "", "", "maybe"], &mut arena).is_err());
        assert!(enc(&["", "", "", "", "", "", "31/12/2024"], &mut arena).is_err());
    }

    #[test]
    fn damaged_records_decode_to_none_without_allocating() {
        let label = LabelDef {
            name: "l".into(),
            properties: vec![prop("l", DataType::Long, Cardinality::List)],
        };
        let mut arena = Vec::new();
        put_varint(&mut arena, u64::MAX);
        assert!(decode(&label, &arena, 0).is_none());
        assert!(decode(&label, &[], 0).is_none());
        assert!(decode(&label, &[1], 5).is_none());
    }
}
