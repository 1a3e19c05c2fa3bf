//! Exporting a graph in the formats it is imported from: the metadata
//! file, the vertex file and the edge file, written into one directory.
//!
//! Each file is written under a temporary name (`.<name>.partial`) and
//! renamed into place once complete, so a reader never sees half a file,
//! and a failed or cancelled export leaves no partial file behind (an
//! earlier file of the same name stays until its replacement is
//! complete). [`Control::is_cancelled`] is asked every
//! [`crate::import::CHECK_EVERY`] rows.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::Control;
use crate::error::StoreError;
use crate::graph::GraphData;
use crate::import::CHECK_EVERY;

/// The names of the three files of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportNames {
    /// The metadata file (default `schema.xml`).
    pub schema: String,
    /// The vertex file (default `vertices.csv`).
    pub vertices: String,
    /// The edge file (default `edges.csv`).
    pub edges: String,
}

impl Default for ExportNames {
    fn default() -> Self {
        ExportNames {
            schema: "schema.xml".into(),
            vertices: "vertices.csv".into(),
            edges: "edges.csv".into(),
        }
    }
}

/// Removes the temporary file unless it was renamed into place.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn write_file(
    dir: &Path,
    name: &str,
    body: impl FnOnce(&mut BufWriter<File>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut partial = Partial {
        path: dir.join(format!(".{name}.partial")),
        done: false,
    };
    let file = File::create(&partial.path).map_err(StoreError::io("create", name.to_owned()))?;
    let mut w = BufWriter::with_capacity(256 << 10, file);
    body(&mut w)?;
    let file = w
        .into_inner()
        .map_err(|e| StoreError::io("write", name.to_owned())(e.into_error()))?;
    file.sync_all()
        .map_err(StoreError::io("sync", name.to_owned()))?;
    fs::rename(&partial.path, dir.join(name)).map_err(StoreError::io("rename", name.to_owned()))?;
    partial.done = true;
    Ok(())
}

/// Writes `g` into `dir` (which must exist) under `names`, reporting
/// progress by rows written.
///
/// # Errors
///
/// [`StoreError::Io`] naming the file, [`StoreError::Cancelled`].
pub fn export(
    g: &GraphData,
    dir: &Path,
    names: &ExportNames,
    control: &dyn Control,
) -> Result<(), StoreError> {
    let total = (g.vertex_count() + g.edge_count()).max(1) as u64;
    let mut rows = 0u64;
    let mut last = 0u8;
    let mut tick = |rows: u64| -> Result<(), StoreError> {
        if rows.is_multiple_of(CHECK_EVERY) {
            if control.is_cancelled() {
                return Err(StoreError::Cancelled);
            }
            let pct = (rows * 100 / total).min(99) as u8;
            if pct > last {
                last = pct;
                control.progress(pct);
            }
        }
        Ok(())
    };
    write_file(dir, &names.schema, |w| {
        w.write_all(g.schema().to_xml().as_bytes())
            .map_err(StoreError::io("write", names.schema.clone()))
    })?;
    let csv_err = |name: &str| {
        let name = name.to_owned();
        move |e: csv::Error| StoreError::Io {
            op: "write",
            file: name,
            source: std::io::Error::other(e.to_string()),
        }
    };
    write_file(dir, &names.vertices, |w| {
        let mut out = csv::WriterBuilder::new().flexible(true).from_writer(w);
        for (id, label, props) in g.vertex_rows() {
            let mut rec = vec![id, label];
            rec.extend(props.iter().map(String::as_str));
            out.write_record(&rec).map_err(csv_err(&names.vertices))?;
            rows += 1;
            tick(rows)?;
        }
        out.flush()
            .map_err(StoreError::io("write", names.vertices.clone()))
    })?;
    write_file(dir, &names.edges, |w| {
        let mut out = csv::WriterBuilder::new().flexible(true).from_writer(w);
        for (s, t, label, props) in g.edge_rows() {
            let mut rec = vec![s, t, label];
            rec.extend(props.iter().map(String::as_str));
            out.write_record(&rec).map_err(csv_err(&names.edges))?;
            rows += 1;
            tick(rows)?;
        }
        out.flush()
            .map_err(StoreError::io("write", names.edges.clone()))
    })?;
    Ok(())
}
