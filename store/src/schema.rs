//! A graph's metadata (GES calls it the schema): its labels, each with its
//! properties in order, each property with a data type and a cardinality;
//! read from and written to GES's XML metadata file.
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <PMML version="3.0">
//!   <labels>
//!     <label name="person">
//!       <properties>
//!         <property name="name" cardinality="single" dataType="string"/>
//!         <property name="gender" cardinality="single" dataType="enum"
//!                   typeNameCount="2" typeName1="F" typeName2="M"/>
//!       </properties>
//!     </label>
//!   </labels>
//! </PMML>
//! ```
//!
//! The reader takes `label` and `property` elements wherever they are (the
//! wrappers and the root's name are not checked, nor namespaces). It
//! refuses a document type declaration (so no DTD, no entity can be
//! declared, let alone expanded), any entity reference but XML's five
//! predefined ones, files over [`MAX_SCHEMA_BYTES`], nesting deeper than
//! [`MAX_DEPTH`], and more than [`MAX_LABELS`] labels, [`MAX_PROPERTIES`]
//! properties a label or [`MAX_ENUM_VALUES`] values an enum. Each refusal
//! names the file and the line.

use indexmap::IndexMap;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

use crate::error::{StoreError, quote};

/// Largest metadata file read, in bytes.
pub const MAX_SCHEMA_BYTES: usize = 4 << 20;
/// Most labels a graph has (label numbers are 16 bits).
pub const MAX_LABELS: usize = 4_096;
/// Most properties a label has.
pub const MAX_PROPERTIES: usize = 256;
/// Most values an enum property lists.
pub const MAX_ENUM_VALUES: usize = 4_096;
/// Longest label, property or enum value name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 16;

/// A property's data type, as GES names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `char`: text.
    Char,
    /// `char array`: text, at most `maxDataSize` bytes if given.
    CharArray,
    /// `float`: 32-bit floating point.
    Float,
    /// `double`: 64-bit floating point.
    Double,
    /// `bool`: `true`/`false` (any case) or `1`/`0`.
    Bool,
    /// `long`: 64-bit signed integer.
    Long,
    /// `int`: 32-bit signed integer.
    Int,
    /// `date`: `yyyy-MM-dd HH:mm:ss` or `yyyy-MM-dd`, UTC, kept to the
    /// second.
    Date,
    /// `enum`: one of the names the property lists.
    Enum,
    /// `string`: text.
    String,
}

impl DataType {
    /// Every type, in GES's order.
    pub const ALL: [DataType; 10] = [
        DataType::Char,
        DataType::CharArray,
        DataType::Float,
        DataType::Double,
        DataType::Bool,
        DataType::Long,
        DataType::Int,
        DataType::Date,
        DataType::Enum,
        DataType::String,
    ];

    /// GES's name (`char array`, `long`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            DataType::Char => "char",
            DataType::CharArray => "char array",
            DataType::Float => "float",
            DataType::Double => "double",
            DataType::Bool => "bool",
            DataType::Long => "long",
            DataType::Int => "int",
            DataType::Date => "date",
            DataType::Enum => "enum",
            DataType::String => "string",
        }
    }

    /// The type of a GES name, `None` for anything else.
    pub fn parse(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether values are text.
    pub const fn is_text(self) -> bool {
        matches!(
            self,
            DataType::Char | DataType::CharArray | DataType::String
        )
    }
}

/// How many values a property holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cardinality {
    /// One value (or none).
    Single,
    /// Any number of values, in order, repeats kept (`;` between them in
    /// CSV).
    List,
    /// Any number of distinct values, in the order first seen.
    Set,
}

impl Cardinality {
    /// GES's name.
    pub const fn name(self) -> &'static str {
        match self {
            Cardinality::Single => "single",
            Cardinality::List => "list",
            Cardinality::Set => "set",
        }
    }

    /// The cardinality of a GES name.
    pub fn parse(name: &str) -> Option<Cardinality> {
        [Cardinality::Single, Cardinality::List, Cardinality::Set]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// One property of a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PropertyDef {
    /// Its name, unique within the label.
    pub name: String,
    /// Its values' type.
    pub data_type: DataType,
    /// How many values it holds.
    pub cardinality: Cardinality,
    /// For text, the most bytes a value may have (`maxDataSize`).
    pub max_size: Option<u32>,
    /// For an enum, its names in order (`typeName1`, `typeName2`, ...).
    pub enum_values: Vec<String>,
}

/// A label and its properties, in the order CSV fields follow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelDef {
    /// Its name.
    pub name: String,
    /// Its properties.
    pub properties: Vec<PropertyDef>,
}

/// A graph's labels. A label's number (its place here) is what vertices
/// and edges store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    labels: IndexMap<String, LabelDef, foldhash::fast::RandomState>,
}

impl Schema {
    /// A schema with no label.
    pub fn new() -> Schema {
        Schema::default()
    }

    /// How many labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no label.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A label by number.
    pub fn label(&self, id: u16) -> Option<&LabelDef> {
        self.labels.get_index(usize::from(id)).map(|(_, l)| l)
    }

    /// A label's number and definition by name.
    pub fn find(&self, name: &str) -> Option<(u16, &LabelDef)> {
        let (i, _, l) = self.labels.get_full(name)?;
        Some((u16::try_from(i).ok()?, l))
    }

    /// The labels in number order.
    pub fn labels(&self) -> impl Iterator<Item = &LabelDef> {
        self.labels.values()
    }

    /// Adds a label.
    ///
    /// # Errors
    ///
    /// [`StoreError::Schema`] if a label of that name exists with another
    /// definition, or the schema holds [`MAX_LABELS`] labels.
    pub fn add(&mut self, label: LabelDef) -> Result<(), StoreError> {
        if let Some(old) = self.labels.get(&label.name) {
            return if *old == label {
                Ok(())
            } else {
                Err(StoreError::Schema(format!(
                    "label {} is already defined with other properties",
                    quote(&label.name)
                )))
            };
        }
        if self.labels.len() >= MAX_LABELS {
            return Err(StoreError::Schema(format!("more than {MAX_LABELS} labels")));
        }
        self.labels.insert(label.name.clone(), label);
        Ok(())
    }

    /// Adds every label of `other` (see [`add`](Self::add)); on an error
    /// `self` may hold some of them.
    ///
    /// # Errors
    ///
    /// As [`add`](Self::add).
    pub fn merge(&mut self, other: &Schema) -> Result<(), StoreError> {
        for l in other.labels() {
            self.add(l.clone())?;
        }
        Ok(())
    }

    /// Reads a metadata file's bytes; `file` names it in errors.
    ///
    /// # Errors
    ///
    /// [`StoreError::Xml`] with the file, the line and why.
    ///
    /// ```
    /// use graph_lifecycle_store::schema::{Schema, DataType};
    /// let xml = r#"<PMML><labels><label name="rate"><properties>
    ///     <property name="score" cardinality="single" dataType="int"/>
    ///   </properties></label></labels></PMML>"#;
    /// let s = Schema::from_xml(xml.as_bytes(), "schema.xml").unwrap();
    /// let (id, rate) = s.find("rate").unwrap();
    /// assert_eq!((id, rate.properties[0].data_type), (0, DataType::Int));
    /// assert!(Schema::from_xml(b"<!DOCTYPE x [<!ENTITY a \"b\">]><x/>", "s.xml").is_err());
    /// ```
    pub fn from_xml(bytes: &[u8], file: &str) -> Result<Schema, StoreError> {
        XmlReader::new(bytes, file)?.read()
    }

    /// The metadata file of this schema, which [`from_xml`](Self::from_xml)
    /// reads back to an equal schema.
    pub fn to_xml(&self) -> String {
        use quick_xml::escape::escape;
        let mut out = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PMML version=\"3.0\">\n  <labels>\n",
        );
        for l in self.labels() {
            out.push_str(&format!("    <label name=\"{}\">\n", escape(&l.name)));
            out.push_str("      <properties>\n");
            for p in &l.properties {
                out.push_str(&format!(
                    "        <property name=\"{}\" cardinality=\"{}\" dataType=\"{}\"",
                    escape(&p.name),
                    p.cardinality.name(),
                    p.data_type.name()
                ));
                if let Some(n) = p.max_size {
                    out.push_str(&format!(" maxDataSize=\"{n}\""));
                }
                if p.data_type == DataType::Enum {
                    out.push_str(&format!(" typeNameCount=\"{}\"", p.enum_values.len()));
                    for (i, v) in p.enum_values.iter().enumerate() {
                        out.push_str(&format!(" typeName{}=\"{}\"", i + 1, escape(v)));
                    }
                }
                out.push_str("/>\n");
            }
            out.push_str("      </properties>\n    </label>\n");
        }
        out.push_str("  </labels>\n</PMML>\n");
        out
    }
}

/// The 1-based line of byte `pos` of `text`.
pub(crate) fn line_at(text: &[u8], pos: usize) -> u64 {
    let end = pos.min(text.len());
    text[..end].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

struct XmlReader<'a> {
    text: &'a str,
    file: &'a str,
    reader: quick_xml::Reader<&'a [u8]>,
}

impl<'a> XmlReader<'a> {
    fn new(bytes: &'a [u8], file: &'a str) -> Result<Self, StoreError> {
        if bytes.len() > MAX_SCHEMA_BYTES {
            return Err(StoreError::Xml {
                file: file.to_owned(),
                line: 1,
                reason: format!("the file is larger than {MAX_SCHEMA_BYTES} bytes"),
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| StoreError::Xml {
            file: file.to_owned(),
            line: line_at(bytes, e.valid_up_to()),
            reason: "the file is not UTF-8".to_owned(),
        })?;
        let mut reader = quick_xml::Reader::from_str(text);
        let cfg = reader.config_mut();
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        Ok(Self { text, file, reader })
    }

    fn fail(&self, pos: u64, reason: impl Into<String>) -> StoreError {
        StoreError::Xml {
            file: self.file.to_owned(),
            line: line_at(
                self.text.as_bytes(),
                usize::try_from(pos).unwrap_or(usize::MAX),
            ),
            reason: reason.into(),
        }
    }

    fn read(mut self) -> Result<Schema, StoreError> {
        let mut schema = Schema::new();
        let mut depth = 0usize;
        // The label being read, and the depth of its element.
        let mut current: Option<(LabelDef, usize)> = None;
        loop {
            let at = self.reader.buffer_position();
            let event = match self.reader.read_event() {
                Ok(e) => e,
                Err(e) => {
                    let pos = self.reader.error_position();
                    return Err(self.fail(pos, format!("malformed XML: {e}")));
                }
            };
            match event {
                Event::Eof => break,
                Event::DocType(_) => {
                    return Err(self.fail(
                        at,
                        "a document type declaration is not allowed (no DTD, no entities)",
                    ));
                }
                Event::GeneralRef(r) => {
                    let name: &str = r.as_ref();
                    let name = name.to_owned();
                    if !matches!(name.as_str(), "lt" | "gt" | "amp" | "apos" | "quot")
                        && !name.starts_with('#')
                    {
                        return Err(
                            self.fail(at, format!("entity reference &{}; is not allowed", name))
                        );
                    }
                }
                Event::Start(e) => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(self.fail(at, format!("nested deeper than {MAX_DEPTH}")));
                    }
                    self.element(&e, at, depth, &mut current, &mut schema)?;
                }
                Event::Empty(e) => {
                    if depth + 1 > MAX_DEPTH {
                        return Err(self.fail(at, format!("nested deeper than {MAX_DEPTH}")));
                    }
                    self.element(&e, at, depth + 1, &mut current, &mut schema)?;
                    if let Some((_, d)) = &current
                        && *d == depth + 1
                        && let Some((l, _)) = current.take()
                    {
                        self.finish_label(l, at, &mut schema)?;
                    }
                }
                Event::End(_) => {
                    if let Some((_, d)) = &current
                        && *d == depth
                        && let Some((l, _)) = current.take()
                    {
                        self.finish_label(l, at, &mut schema)?;
                    }
                    depth = depth.saturating_sub(1);
                }
                Event::Text(_)
                | Event::CData(_)
                | Event::Comment(_)
                | Event::Decl(_)
                | Event::PI(_) => {}
            }
        }
        if depth != 0 {
            let end = self.text.len() as u64;
            return Err(self.fail(end, "the document ends inside an element"));
        }
        Ok(schema)
    }

    fn finish_label(
        &self,
        label: LabelDef,
        at: u64,
        schema: &mut Schema,
    ) -> Result<(), StoreError> {
        if schema.find(&label.name).is_some() {
            return Err(self.fail(at, format!("label {} is defined twice", quote(&label.name))));
        }
        schema.add(label).map_err(|e| self.fail(at, e.to_string()))
    }

    fn element(
        &self,
        e: &BytesStart<'_>,
        at: u64,
        depth: usize,
        current: &mut Option<(LabelDef, usize)>,
        schema: &mut Schema,
    ) -> Result<(), StoreError> {
        let local = e.local_name();
        match local.as_ref() {
            "label" => {
                if current.is_some() {
                    return Err(self.fail(at, "a label inside a label"));
                }
                if schema.len() >= MAX_LABELS {
                    return Err(self.fail(at, format!("more than {MAX_LABELS} labels")));
                }
                let attrs = self.attributes(e, at)?;
                let name = self.name_attr(&attrs, "name", at)?;
                *current = Some((
                    LabelDef {
                        name,
                        properties: Vec::new(),
                    },
                    depth,
                ));
            }
            "property" => {
                let Some((label, _)) = current.as_mut() else {
                    return Err(self.fail(at, "a property outside any label"));
                };
                if label.properties.len() >= MAX_PROPERTIES {
                    return Err(self.fail(
                        at,
                        format!(
                            "label {} has more than {MAX_PROPERTIES} properties",
                            quote(&label.name)
                        ),
                    ));
                }
                let attrs = self.attributes(e, at)?;
                let p = self.property(&attrs, at)?;
                if label.properties.iter().any(|q| q.name == p.name) {
                    return Err(self.fail(
                        at,
                        format!(
                            "property {} of label {} is defined twice",
                            quote(&p.name),
                            quote(&label.name)
                        ),
                    ));
                }
                label.properties.push(p);
            }
            _ => {}
        }
        Ok(())
    }

    fn attributes(&self, e: &BytesStart<'_>, at: u64) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        for a in e.attributes().with_checks(true) {
            let a = a.map_err(|err| self.fail(at, format!("malformed attribute: {err}")))?;
            let key = a.key.local_name().as_ref().to_owned();
            let value = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| self.fail(at, format!("attribute {}: {err}", quote(&key))))?
                .into_owned();
            if out.len() >= MAX_ENUM_VALUES + 8 {
                return Err(self.fail(at, "too many attributes"));
            }
            out.push((key, value));
        }
        Ok(out)
    }

    fn name_attr(
        &self,
        attrs: &[(String, String)],
        key: &str,
        at: u64,
    ) -> Result<String, StoreError> {
        let v = get(attrs, key).ok_or_else(|| self.fail(at, format!("no {key} attribute")))?;
        if v.is_empty() || v.len() > MAX_NAME_BYTES || v.chars().any(char::is_control) {
            return Err(self.fail(
                at,
                format!(
                    "{key} {} must be 1 to {MAX_NAME_BYTES} bytes without control characters",
                    quote(v)
                ),
            ));
        }
        Ok(v.to_owned())
    }

    fn property(&self, attrs: &[(String, String)], at: u64) -> Result<PropertyDef, StoreError> {
        let name = self.name_attr(attrs, "name", at)?;
        let dt = get(attrs, "dataType").ok_or_else(|| self.fail(at, "no dataType attribute"))?;
        let data_type = DataType::parse(dt).ok_or_else(|| {
            self.fail(at, format!("dataType {} is not a GES data type", quote(dt)))
        })?;
        let cardinality = match get(attrs, "cardinality") {
            None => Cardinality::Single,
            Some(c) => Cardinality::parse(c).ok_or_else(|| {
                self.fail(
                    at,
                    format!("cardinality {} is not single, list or set", quote(c)),
                )
            })?,
        };
        let max_size =
            match get(attrs, "maxDataSize") {
                None => None,
                Some(s) => Some(s.parse::<u32>().map_err(|_| {
                    self.fail(at, format!("maxDataSize {} is not a number", quote(s)))
                })?),
            };
        let mut enum_values = Vec::new();
        if data_type == DataType::Enum {
            let count = get(attrs, "typeNameCount")
                .ok_or_else(|| self.fail(at, "an enum property without typeNameCount"))?;
            let count = count
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_ENUM_VALUES).contains(n))
                .ok_or_else(|| {
                    self.fail(
                        at,
                        format!(
                            "typeNameCount {} is not in 1..={MAX_ENUM_VALUES}",
                            quote(count)
                        ),
                    )
                })?;
            for i in 1..=count {
                let v = self.name_attr(attrs, &format!("typeName{i}"), at)?;
                if enum_values.contains(&v) {
                    return Err(self.fail(at, format!("enum value {} repeats", quote(&v))));
                }
                enum_values.push(v);
            }
        }
        Ok(PropertyDef {
            name,
            data_type,
            cardinality,
            max_size,
            enum_values,
        })
    }
}

fn get<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOVIES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<PMML version="3.0" xmlns="http://www.dmg.org/PMML-3-0">
  <labels>
    <label name="user">
      <properties>
        <property name="name" cardinality="single" dataType="string"/>
        <property name="gender" cardinality="single" dataType="enum" typeNameCount="2" typeName1="F" typeName2="M"/>
        <property name="tags" cardinality="set" dataType="char array" maxDataSize="20"/>
      </properties>
    </label>
    <label name="rate">
      <properties>
        <property name="score" cardinality="single" dataType="int"/>
      </properties>
    </label>
    <label name="knows"/>
  </labels>
</PMML>"#;

    #[test]
    fn ges_metadata_files_are_read_and_written_back() {
        let s = Schema::from_xml(MOVIES.as_bytes(), "m.xml").unwrap();
        assert_eq!(s.len(), 3);
        let (id, user) = s.find("user").unwrap();
        assert_eq!(id, 0);
        assert_eq!(user.properties[1].enum_values, ["F", "M"]);
        assert_eq!(user.properties[2].cardinality, Cardinality::Set);
        assert_eq!(user.properties[2].max_size, Some(20));
        assert!(s.find("knows").unwrap().1.properties.is_empty());
        let again = Schema::from_xml(s.to_xml().as_bytes(), "again.xml").unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn entity_declarations_and_references_are_refused_with_the_line() {
        let billion = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n \
                       <!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">\n]>\n<labels/>";
        let e = Schema::from_xml(billion.as_bytes(), "bomb.xml").unwrap_err();
        assert!(
            matches!(&e, StoreError::Xml { file, line: 2, .. } if file == "bomb.xml"),
            "{e}"
        );
        let external = "<labels>\n<label name=\"&xxe;\"/></labels>";
        let e = Schema::from_xml(external.as_bytes(), "x.xml").unwrap_err();
        assert!(matches!(e, StoreError::Xml { line: 2, .. }), "{e}");
        let in_text = "<labels>\n\n<label name=\"a\">&xxe;</label></labels>";
        let e = Schema::from_xml(in_text.as_bytes(), "x.xml").unwrap_err();
        assert!(matches!(e, StoreError::Xml { line: 3, .. }), "{e}");
    }

    #[test]
    fn malformed_metadata_fails_with_file_and_line() {
        let cases: [(&str, u64); 7] = [
            ("<labels>\n<label name=\"a\">\n</labels>", 3),
            ("<labels>\n<label>\n</label></labels>", 2),
            (
                "<labels>\n<label name=\"a\">\n<property name=\"p\" dataType=\"blob\"/></label></labels>",
                3,
            ),
            (
                "<l>\n<label name=\"a\"><property name=\"p\" dataType=\"int\"/>\n<property name=\"p\" dataType=\"int\"/></label></l>",
                3,
            ),
            ("<l>\n<label name=\"a\"/>\n<label name=\"a\"/></l>", 3),
            ("<l>\n<property name=\"p\" dataType=\"int\"/></l>", 2),
            (
                "<l><label name=\"e\">\n<property name=\"p\" dataType=\"enum\" typeNameCount=\"99999\"/></label></l>",
                2,
            ),
        ];
        for (xml, line) in cases {
            match Schema::from_xml(xml.as_bytes(), "bad.xml") {
                Err(StoreError::Xml { line: l, file, .. }) => {
                    assert_eq!((l, file.as_str()), (line, "bad.xml"), "{xml}");
                }
                other => panic!("{xml}: {other:?}"),
            }
        }
    }

    #[test]
    fn size_and_depth_limits_hold() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(Schema::from_xml(deep.as_bytes(), "d.xml").is_err());
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(Schema::from_xml(ok.as_bytes(), "d.xml").is_ok());
        let big = vec![b' '; MAX_SCHEMA_BYTES + 1];
        assert!(Schema::from_xml(&big, "big.xml").is_err());
        let mut many = String::from("<l>");
        for i in 0..=MAX_LABELS {
            many.push_str(&format!("<label name=\"l{i}\"/>"));
        }
        many.push_str("</l>");
        let e = Schema::from_xml(many.as_bytes(), "many.xml").unwrap_err();
        assert!(e.to_string().contains("labels"), "{e}");
        assert!(Schema::from_xml(b"\xff\xfe<a/>", "bin.xml").is_err());
    }

    #[test]
    fn merging_keeps_equal_labels_and_refuses_changed_ones() {
        let mut s = Schema::from_xml(MOVIES.as_bytes(), "m.xml").unwrap();
        let same = s.clone();
        s.merge(&same).unwrap();
        assert_eq!(s.len(), 3);
        let changed = Schema::from_xml(
            b"<l><label name=\"rate\"><property name=\"score\" dataType=\"long\"/></label></l>",
            "c.xml",
        )
        .unwrap();
        assert!(matches!(s.merge(&changed), Err(StoreError::Schema(_))));
    }
}
