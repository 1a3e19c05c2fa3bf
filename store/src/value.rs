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

/// A field as text. Import fields are checked to be UTF-8 when their
/// record is read, so the empty fallback is never taken for them.
pub(crate) fn text(field: &[u8]) -> &str {
    std::str::from_utf8(field).unwrap_or_default()
}

/// Packs the properties of one element, given as `count` CSV fields in
/// the label's order (fewer fields than properties leave the rest
/// absent), onto `arena`. The error says which property and why.
#[inline]
pub(crate) fn encode<'a>(
    label: &LabelDef,
    count: usize,
    fields: impl Iterator<Item = &'a [u8]>,
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
        let field = fields.next().unwrap_or_default();
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

/// Sets of at most this many values are told distinct by comparing each
/// with those before it, larger ones with a hash set.
const SMALL_SET: usize = 16;

#[inline]
fn encode_property(p: &PropertyDef, field: &[u8], arena: &mut Vec<u8>) -> Result<(), String> {
    let values = || field.split(|&b| b == b';');
    match p.cardinality {
        Cardinality::Single => {
            if field.is_empty() {
                arena.push(0);
            } else {
                arena.push(1);
                encode_value(p, field, arena)?;
            }
        }
        Cardinality::List | Cardinality::Set if field.is_empty() => put_varint(arena, 0),
        Cardinality::List => {
            put_varint(arena, values().count() as u64);
            for v in values() {
                encode_value(p, v, arena)?;
            }
        }
        Cardinality::Set => {
            // Each value once, where it first comes.
            let count = values().count();
            if count <= SMALL_SET {
                let first = |i: usize, v: &[u8]| !values().take(i).any(|w| w == v);
                let distinct = values().enumerate().filter(|&(i, v)| first(i, v)).count();
                put_varint(arena, distinct as u64);
                for (i, v) in values().enumerate() {
                    if first(i, v) {
                        encode_value(p, v, arena)?;
                    }
                }
            } else {
                let mut seen = std::collections::HashSet::with_capacity(count);
                let distinct: Vec<&[u8]> = values().filter(|v| seen.insert(*v)).collect();
                put_varint(arena, distinct.len() as u64);
                for v in distinct {
                    encode_value(p, v, arena)?;
                }
            }
        }
    }
    Ok(())
}

fn encode_value(p: &PropertyDef, field: &[u8], arena: &mut Vec<u8>) -> Result<(), String> {
    let s = || text(field);
    let bad = || format!("{} is not a {}", quote(s()), p.data_type.name());
    match p.data_type {
        DataType::Char | DataType::CharArray | DataType::String => {
            if let Some(max) = p.max_size
                && field.len() > max as usize
            {
                return Err(format!("{} is longer than {max} bytes", quote(s())));
            }
            put_varint(arena, field.len() as u64);
            arena.extend_from_slice(field);
        }
        DataType::Int => {
            let v = match plain_int(field).and_then(|v| i32::try_from(v).ok()) {
                Some(v) => v,
                None => s().trim().parse::<i32>().map_err(|_| bad())?,
            };
            arena.extend_from_slice(&v.to_le_bytes());
        }
        DataType::Long => {
            let v = match plain_int(field) {
                Some(v) => v,
                None => s().trim().parse::<i64>().map_err(|_| bad())?,
            };
            arena.extend_from_slice(&v.to_le_bytes());
        }
        DataType::Float => {
            arena.extend_from_slice(&s().trim().parse::<f32>().map_err(|_| bad())?.to_le_bytes());
        }
        DataType::Double => {
            let v = match plain_f64(field) {
                Some(v) => v,
                None => s().trim().parse::<f64>().map_err(|_| bad())?,
            };
            arena.extend_from_slice(&v.to_le_bytes());
        }
        DataType::Bool => {
            let t = s().trim();
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
            let secs = parse_date(s().trim()).ok_or_else(|| {
                format!(
                    "{} is not a date (yyyy-MM-dd HH:mm:ss or yyyy-MM-dd)",
                    quote(s())
                )
            })?;
            arena.extend_from_slice(&secs.to_le_bytes());
        }
        DataType::Enum => {
            let i = p
                .enum_values
                .iter()
                .position(|v| v.as_bytes() == field)
                .ok_or_else(|| format!("{} is not one of the enum's names", quote(s())))?;
            let i = u16::try_from(i).map_err(|_| bad())?;
            arena.extend_from_slice(&i.to_le_bytes());
        }
    }
    Ok(())
}

/// The value of a plain integer, `-?[0-9]{1,18}` (which `i64`'s own
/// parser reads to the same value), without going through `str`; `None`
/// for anything else, which the caller gives to that parser.
fn plain_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v = 0i64;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + i64::from(d);
    }
    Some(if neg { -v } else { v })
}

/// Exact powers of ten as `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The value of a plain decimal, `-?[0-9]+(\.[0-9]+)?` with at most 19
/// digits in all, when its digits make an integer below 2^53 (so it and
/// the power of ten it is divided by are exact, and one division, which
/// IEEE 754 rounds correctly, gives the correctly rounded value: what
/// `f64`'s own parser gives). `None` for anything else, which the caller
/// gives to that parser.
fn plain_f64(b: &[u8]) -> Option<f64> {
    let (neg, rest) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    let (int, frac) = match rest.iter().position(|&c| c == b'.') {
        Some(dot) => (&rest[..dot], &rest[dot + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let dot = int.len() < rest.len();
    if int.is_empty() || (dot && frac.is_empty()) || int.len() + frac.len() > 19 {
        return None;
    }
    let mut m = 0u64;
    for &c in int.iter().chain(frac) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        m = m * 10 + u64::from(d);
    }
    if m > 1 << 53 {
        return None;
    }
    let v = m as f64 / POW10[frac.len()];
    Some(if neg { -v } else { v })
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
        let enc = |f: &[&str], arena: &mut Vec<u8>| {
            encode(&label, f.len(), f.iter().map(|s| s.as_bytes()), arena)
        };
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
    fn sets_keep_each_value_once_where_it_first_comes() {
        let label = LabelDef {
            name: "l".into(),
            properties: vec![prop("s", DataType::Int, Cardinality::Set)],
        };
        for n in [3u32, SMALL_SET as u32, SMALL_SET as u32 + 1, 100] {
            let field: Vec<String> = (0..n)
                .map(|i| ((i * 7) % (n / 2 + 1)).to_string())
                .collect();
            let field = field.join(";");
            let mut arena = Vec::new();
            encode(&label, 1, [field.as_bytes()].into_iter(), &mut arena).unwrap();
            let mut want: Vec<Value> = Vec::new();
            for v in field.split(';') {
                let v = Value::Int(v.parse().unwrap());
                if !want.contains(&v) {
                    want.push(v);
                }
            }
            assert_eq!(decode(&label, &arena, 0).unwrap()[0], want, "{field}");
        }
        // A bad value is named even when it repeats a good one's place.
        let mut arena = Vec::new();
        let e = encode(&label, 1, [&b"1;2;x;1;x"[..]].into_iter(), &mut arena).unwrap_err();
        assert!(e.contains("\"x\" is not a int"), "{e}");
    }

    #[test]
    fn plain_numbers_read_as_the_standard_parsers_read_them() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "-1",
            "007.50",
            "0.1",
            "0.3",
            "2.675",
            "1.",
            ".5",
            "-",
            "",
            "+1",
            "1e3",
            "1.5.2",
            "--1",
            " 1",
            "1 ",
            "9007199254740992",
            "9007199254740993",
            "9223372036854775807",
            "-9223372036854775808",
            "999999999999999999",
            "1,5",
            "inf",
            "NaN",
            "0.0000000000000000000001",
            "123456789.123456789",
            "4.35",
            "5e-324",
            "2147483647",
            "-2147483648",
            "2147483648",
            "１",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let r = next();
            let int = r % 10u64.pow((r >> 60) as u32 % 16 + 1);
            let frac_len = (r >> 40) as usize % 20;
            let frac = format!("{:020}", next());
            let sign = if r & 1 == 0 { "" } else { "-" };
            cases.push(format!("{sign}{int}"));
            cases.push(format!("{sign}{int}.{}", &frac[..frac_len.max(1)]));
        }
        for c in &cases {
            let b = c.as_bytes();
            if let Some(v) = plain_f64(b) {
                assert_eq!(v.to_bits(), c.parse::<f64>().unwrap().to_bits(), "{c}");
            }
            if let Some(v) = plain_int(b) {
                assert_eq!(Ok(v), c.parse::<i64>(), "{c}");
            }
        }
        assert!(plain_f64(b"0.1").is_some() && plain_f64(b"-12.5").is_some());
        assert!(plain_int(b"-42").is_some());
        for c in [
            "1.",
            ".5",
            "",
            "-",
            "+1",
            "1e3",
            " 1",
            "1 ",
            "9007199254740993",
            "１",
        ] {
            assert_eq!(plain_f64(c.as_bytes()), None, "{c}");
        }
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
