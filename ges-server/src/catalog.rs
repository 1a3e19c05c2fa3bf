//! Named schemas (GES calls them metadata) and the project's quotas.
//!
//! | method and path | what |
//! |---|---|
//! | `POST /v2/{p}/graphs/metadatas` | stores a schema given as `ges_metadata.labels`, checked by the store's schema reader |
//! | `GET /v2/{p}/graphs/metadatas?offset&limit` | the project's schemas |
//! | `GET /v2/{p}/graphs/metadatas/{metadata_id}` | one schema's labels |
//! | `DELETE /v2/{p}/graphs/metadatas/{metadata_id}` | removes one |
//! | `GET /v2/{p}/graphs/quotas` | what is left of the project's quotas |
//!
//! A schema is kept in `<data dir>/metadatas/<project>/` as its metadata
//! file (`<id>-<digest>.xml`, the XML an import reads) and a manifest
//! (`<id>.json`, with the SHA-256 of its record, which holds the XML's
//! SHA-256). Both are written whole (temporary file, sync, rename), the
//! manifest last; an import whose `schema_path` is a stored schema's
//! `metadata_path`, name or id reads the stored XML instead of a file of
//! the import root.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;
use graph_lifecycle::{Clock, IdSource, JobId, ProjectId, SystemClock, Timestamp, UuidV7Ids};
use graph_lifecycle_store::Schema;
use graph_lifecycle_store::error::quote;
use graph_lifecycle_store::schema::DataType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use sha2::{Digest, Sha256};

use crate::api::{ApiState, ProjectPath, Query, ReqBody, json_response, path_param, raw_params};
use crate::backup::{Shelf, read_manifest, sync_dir, write_atomic, write_manifest};
use crate::error::{ApiError, codes};

/// Longest schema name, in bytes.
pub const MAX_SCHEMA_NAME: usize = 64;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 512;
/// Longest `metadata_path`, in bytes.
pub const MAX_METADATA_PATH: usize = 1_024;

/// What a schema's manifest records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchemaRecord {
    /// Its id (a UUID).
    pub id: String,
    /// Its name, unique in the project.
    pub name: String,
    /// The client's description.
    pub description: String,
    /// The client's `metadata_path`, if any: an import naming it reads
    /// this schema.
    pub metadata_path: Option<String>,
    /// When it was created, in milliseconds since the epoch.
    pub created_ms: u64,
    /// When it was last overwritten.
    pub updated_ms: u64,
    /// The SHA-256 of its XML.
    pub xml_sha256: String,
}

impl SchemaRecord {
    fn xml_name(&self) -> String {
        format!(
            "{}-{}.xml",
            self.id,
            &self.xml_sha256[..16.min(self.xml_sha256.len())]
        )
    }
}

/// The stored schemas, under `<data dir>/metadatas`.
#[derive(Debug)]
pub(crate) struct Schemas {
    shelf: Shelf,
}

impl Schemas {
    /// The schemas kept under `root`, at most `max_per_project` a project.
    pub(crate) fn new(root: PathBuf, max_per_project: usize) -> Self {
        Self {
            shelf: Shelf::new(root, max_per_project),
        }
    }

    /// Most schemas one project keeps.
    pub(crate) fn max_per_project(&self) -> usize {
        self.shelf.max_per_project()
    }

    fn scan(&self, project: &str) -> Vec<SchemaRecord> {
        let Ok(entries) = fs::read_dir(self.shelf.dir(project)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if name.starts_with("tmp-") {
                continue;
            }
            match read_manifest::<SchemaRecord>(&e.path()) {
                Ok(Some(r)) if r.id == id => out.push(r),
                Ok(_) => {}
                Err(why) => {
                    tracing::warn!(project, metadata = id, error = %why, "a schema's manifest is damaged; it is not listed");
                }
            }
        }
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        out
    }

    /// The project's schemas, oldest first.
    pub(crate) fn list(&self, project: &str) -> Vec<SchemaRecord> {
        let _g = self.shelf.guard();
        self.scan(project)
    }

    /// One schema by id.
    fn get(&self, project: &str, id: JobId) -> Option<SchemaRecord> {
        let _g = self.shelf.guard();
        read_manifest::<SchemaRecord>(&self.shelf.dir(project).join(format!("{id}.json")))
            .ok()
            .flatten()
            .filter(|r| r.id == id.to_string())
    }

    /// The stored XML of a schema, checked against its digest.
    fn xml(&self, project: &str, r: &SchemaRecord) -> Result<String, String> {
        let bytes =
            fs::read(self.shelf.dir(project).join(r.xml_name())).map_err(|e| e.to_string())?;
        if hex::encode(Sha256::digest(&bytes)) != r.xml_sha256 {
            return Err("its metadata file's checksum does not match".into());
        }
        String::from_utf8(bytes).map_err(|_| "its metadata file is not UTF-8".into())
    }

    /// The metadata file an import's `schema_path` names, if it names a
    /// stored schema (by `metadata_path`, name or id).
    pub(crate) fn resolve(&self, project: &str, schema_path: &str) -> Option<PathBuf> {
        let _g = self.shelf.guard();
        let all = self.scan(project);
        let r = all
            .iter()
            .find(|r| r.metadata_path.as_deref() == Some(schema_path))
            .or_else(|| {
                all.iter()
                    .find(|r| r.name == schema_path || r.id == schema_path)
            })?;
        Some(self.shelf.dir(project).join(r.xml_name()))
    }

    /// Stores a schema; with `overwrite`, replaces the one of the same name.
    fn put(
        &self,
        project: &str,
        new: NewSchema,
        overwrite: bool,
    ) -> Result<SchemaRecord, ApiError> {
        let _g = self.shelf.guard();
        let all = self.scan(project);
        let now = SystemClock.now();
        let existing = all.iter().find(|r| r.name == new.name);
        let (id, created_ms) = match existing {
            Some(_) if !overwrite => {
                return Err(ApiError::invalid_request(format!(
                    "a schema named {} exists in project {project}: set is_overwrite to replace it",
                    quote(&new.name)
                )));
            }
            Some(r) => (r.id.clone(), r.created_ms),
            None => {
                if all.len() >= self.shelf.max_per_project() {
                    return Err(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        codes::PROJECT_QUOTA,
                        format!(
                            "project {project} keeps {} schemas, its quota is {}: delete one first",
                            all.len(),
                            self.shelf.max_per_project()
                        ),
                    ));
                }
                (UuidV7Ids.next_id(now).to_string(), now.as_millis())
            }
        };
        let record = SchemaRecord {
            id,
            name: new.name,
            description: new.description,
            metadata_path: new.metadata_path,
            created_ms,
            updated_ms: now.as_millis(),
            xml_sha256: hex::encode(Sha256::digest(new.xml.as_bytes())),
        };
        let dir = self.shelf.dir(project);
        let stored = write_atomic(&dir, &record.xml_name(), new.xml.as_bytes())
            .and_then(|()| write_manifest(&dir, &format!("{}.json", record.id), &record));
        if let Err(e) = stored {
            tracing::error!(project, metadata = %record.id, error = %e, "a schema could not be stored");
            return Err(ApiError::internal("the schema could not be stored"));
        }
        if let Some(old) = existing
            && old.xml_name() != record.xml_name()
        {
            let _ = fs::remove_file(dir.join(old.xml_name()));
        }
        Ok(record)
    }

    /// Removes a schema; `false` if there was none.
    fn remove(&self, project: &str, id: JobId) -> std::io::Result<bool> {
        let Some(r) = self.get(project, id) else {
            return Ok(false);
        };
        let _g = self.shelf.guard();
        let dir = self.shelf.dir(project);
        fs::remove_file(dir.join(format!("{}.json", r.id)))?;
        let _ = fs::remove_file(dir.join(r.xml_name()));
        sync_dir(&dir)?;
        Ok(true)
    }

    /// Settles what a crash left: temporary files and metadata files no
    /// manifest names go. Returns how many files were removed.
    pub(crate) fn recover(&self) -> usize {
        let _g = self.shelf.guard();
        let mut removed = 0;
        let Ok(projects) = fs::read_dir(self.shelf.root()) else {
            return 0;
        };
        for p in projects.filter_map(Result::ok) {
            let Ok(project) = p.file_name().into_string() else {
                continue;
            };
            let named: Vec<String> = self
                .scan(&project)
                .iter()
                .map(SchemaRecord::xml_name)
                .collect();
            let dir: &Path = &p.path();
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                let orphan = name.ends_with(".xml") && !named.contains(&name);
                if (name.starts_with("tmp-") || orphan) && fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// A checked schema, ready to store.
struct NewSchema {
    name: String,
    description: String,
    metadata_path: Option<String>,
    xml: String,
}

/// The body of `POST .../metadatas`, as GES defines it.
#[derive(Debug, Deserialize)]
struct CreateMetadataRequest {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata_path: Option<String>,
    #[serde(default)]
    is_overwrite: Option<bool>,
    ges_metadata: GesMetadata,
}

#[derive(Debug, Deserialize)]
struct GesMetadata {
    labels: Vec<LabelIn>,
}

#[derive(Debug, Deserialize)]
struct LabelIn {
    name: String,
    #[serde(default)]
    properties: Vec<Map<String, Json>>,
}

/// A schema name: 1 to 64 bytes, a letter first, then letters, digits,
/// `_` or `-`.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SCHEMA_NAME
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "schema name {} must be 1 to {MAX_SCHEMA_NAME} letters, digits, '_' or '-', a letter first",
            quote(name)
        )))
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The metadata file of `labels`, as GES writes it, read back by the
/// store's schema reader (which checks every label, property, data type
/// and cardinality, and every bound); returns the reader's canonical XML.
fn labels_xml(labels: &[LabelIn]) -> Result<String, ApiError> {
    if labels.is_empty() {
        return Err(ApiError::invalid_request(
            "ges_metadata.labels must hold at least one label",
        ));
    }
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PMML version=\"3.0\"><labels>");
    for l in labels {
        xml.push_str(&format!("<label name=\"{}\"><properties>", escape(&l.name)));
        for p in &l.properties {
            xml.push_str("<property");
            for (k, v) in p {
                let key_ok = k.starts_with(|c: char| c.is_ascii_alphabetic())
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !key_ok {
                    return Err(ApiError::invalid_request(format!(
                        "label {}: property attribute {} is not a name",
                        quote(&l.name),
                        quote(k)
                    )));
                }
                let v = match v {
                    Json::String(s) => s.clone(),
                    Json::Number(n) => n.to_string(),
                    Json::Bool(b) => b.to_string(),
                    _ => {
                        return Err(ApiError::invalid_request(format!(
                            "label {}: property attribute {} must be a string",
                            quote(&l.name),
                            quote(k)
                        )));
                    }
                };
                xml.push_str(&format!(" {k}=\"{}\"", escape(&v)));
            }
            xml.push_str("/>");
        }
        xml.push_str("</properties></label>");
    }
    xml.push_str("</labels></PMML>\n");
    let schema = Schema::from_xml(xml.as_bytes(), "ges_metadata")
        .map_err(|e| ApiError::invalid_request(format!("ges_metadata is refused: {e}")))?;
    Ok(schema.to_xml())
}

/// A schema's labels as GES shows them.
fn labels_json(schema: &Schema) -> Json {
    let labels: Vec<Json> = schema
        .labels()
        .map(|l| {
            let props: Vec<Json> = l
                .properties
                .iter()
                .map(|p| {
                    let mut m = Map::new();
                    m.insert("name".into(), Json::from(p.name.clone()));
                    m.insert("cardinality".into(), Json::from(p.cardinality.name()));
                    m.insert("dataType".into(), Json::from(p.data_type.name()));
                    if let Some(n) = p.max_size {
                        m.insert("maxDataSize".into(), Json::from(n.to_string()));
                    }
                    if p.data_type == DataType::Enum {
                        m.insert(
                            "typeNameCount".into(),
                            Json::from(p.enum_values.len().to_string()),
                        );
                        for (i, v) in p.enum_values.iter().enumerate() {
                            m.insert(format!("typeName{}", i + 1), Json::from(v.clone()));
                        }
                    }
                    Json::Object(m)
                })
                .collect();
            json!({"name": l.name, "properties": props})
        })
        .collect();
    json!({"labels": labels})
}

// ---- routes and handlers ----------------------------------------------------

/// The schema and quota routes (merged into [`crate::api::service`]).
pub(crate) fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route(
            "/v2/{project_id}/graphs/metadatas",
            get(list_metadatas).post(create_metadata),
        )
        .route(
            "/v2/{project_id}/graphs/metadatas/{metadata_id}",
            get(show_metadata).delete(delete_metadata),
        )
        .route("/v2/{project_id}/graphs/quotas", get(show_quotas))
}

/// The project and `{metadata_id}` of the path.
struct MetadataPath(ProjectId, JobId);

impl<S: Send + Sync> FromRequestParts<S> for MetadataPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let params = raw_params(parts).await?;
        let project = ProjectId::new(path_param(&params, "project_id")?)?;
        let raw = path_param(&params, "metadata_id")?;
        let id = JobId::parse(raw).map_err(|_| {
            ApiError::invalid_parameter(format!(
                "metadata id {} is not a metadata id (a UUID)",
                quote(raw)
            ))
        })?;
        Ok(MetadataPath(project, id))
    }
}

fn schemas(st: &ApiState) -> Result<Arc<Schemas>, ApiError> {
    let host = st.store.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::ENGINE_UNAVAILABLE,
            "this server runs no graph engine (the simulated host keeps no schemas)",
        )
    })?;
    host.schemas().ok_or_else(|| {
        ApiError::invalid_request(
            "this server keeps nothing on disk ([storage] in_memory): it keeps no schemas",
        )
    })
}

fn not_found(project: &ProjectId, id: JobId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        codes::RESOURCE_NOT_FOUND,
        format!("metadata {id} is not found in project {project}"),
    )
}

async fn create_metadata(
    State(st): State<Arc<ApiState>>,
    ProjectPath(project): ProjectPath,
    body: ReqBody,
) -> Result<Response, ApiError> {
    let s = schemas(&st)?;
    let req: CreateMetadataRequest = body.json()?;
    check_name(&req.name)?;
    let description = req.description.unwrap_or_default();
    if description.len() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        return Err(ApiError::invalid_parameter(format!(
            "description must be at most {MAX_DESCRIPTION} bytes, without control characters"
        )));
    }
    if let Some(p) = &req.metadata_path
        && (p.is_empty() || p.len() > MAX_METADATA_PATH || p.chars().any(char::is_control))
    {
        return Err(ApiError::invalid_parameter(format!(
            "metadata_path must be 1 to {MAX_METADATA_PATH} bytes, without control characters"
        )));
    }
    let xml = labels_xml(&req.ges_metadata.labels)?;
    let new = NewSchema {
        name: req.name,
        description,
        metadata_path: req.metadata_path,
        xml,
    };
    let overwrite = req.is_overwrite.unwrap_or(false);
    let record = tokio::task::spawn_blocking(move || s.put(project.as_str(), new, overwrite))
        .await
        .map_err(|_| ApiError::internal("the schema could not be stored"))??;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": record.id, "name": record.name}),
    ))
}

fn time(ms: u64) -> String {
    crate::wire::format_time(Timestamp::from_millis(ms))
}

async fn list_metadatas(
    State(st): State<Arc<ApiState>>,
    ProjectPath(project): ProjectPath,
    q: Query,
) -> Result<Response, ApiError> {
    let offset = q.usize("offset", 0, usize::MAX)?;
    let limit = q.usize("limit", crate::api::DEFAULT_LIMIT, crate::api::MAX_LIMIT)?;
    let s = schemas(&st)?;
    let all = s.list(project.as_str());
    let list: Vec<Json> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "start_time": time(r.created_ms),
                "last_update_time": time(r.updated_ms),
                "description": r.description,
                "metadata_path": r.metadata_path.clone().unwrap_or_default(),
                "status": "available",
                "encrypted": false,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"schema_count": all.len(), "schema_list": list}),
    ))
}

async fn show_metadata(
    State(st): State<Arc<ApiState>>,
    MetadataPath(project, id): MetadataPath,
) -> Result<Response, ApiError> {
    let s = schemas(&st)?;
    let r = s
        .get(project.as_str(), id)
        .ok_or_else(|| not_found(&project, id))?;
    let schema = s
        .xml(project.as_str(), &r)
        .and_then(|xml| Schema::from_xml(xml.as_bytes(), &r.name).map_err(|e| e.to_string()))
        .map_err(|why| {
            tracing::error!(metadata = %id, error = %why, "a stored schema is damaged");
            ApiError::internal(format!("metadata {id} is damaged: {why}"))
        })?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": r.id, "name": r.name, "ges_metadata": labels_json(&schema)}),
    ))
}

async fn delete_metadata(
    State(st): State<Arc<ApiState>>,
    MetadataPath(project, id): MetadataPath,
) -> Result<Response, ApiError> {
    let s = schemas(&st)?;
    let p = project.clone();
    let removed = tokio::task::spawn_blocking(move || s.remove(p.as_str(), id))
        .await
        .map_err(|_| ApiError::internal("the removal failed inside the server"))?;
    match removed {
        Ok(true) => Ok(json_response(StatusCode::OK, &json!({}))),
        Ok(false) => Err(not_found(&project, id)),
        Err(e) => {
            tracing::error!(metadata = %id, error = %e, "a schema could not be deleted");
            Err(ApiError::internal(format!(
                "metadata {id} could not be deleted"
            )))
        }
    }
}

/// `GET .../quotas`: what is left of the project's quotas, by GES's
/// resource types: `graph` (graphs it may still create, and in
/// `edge_volume` the edges a graph may hold), `backup` and `metadata`
/// (backups and schemas it may still keep).
async fn show_quotas(
    State(st): State<Arc<ApiState>>,
    ProjectPath(project): ProjectPath,
) -> Result<Response, ApiError> {
    let cfg = st.engine.config();
    let held = st.engine.graphs(&project, 0, 0).total;
    let graphs = cfg
        .max_graphs_per_project
        .saturating_sub(held)
        .min(cfg.max_graphs.saturating_sub(st.engine.graph_count()));
    let host = st.store.as_ref();
    let edges = host.map_or(0, |h| h.max_edges());
    let backups = host.and_then(|h| h.backups()).map_or(0, |b| {
        b.max_per_project()
            .saturating_sub(b.count(project.as_str()))
    });
    let metadatas = host.and_then(|h| h.schemas()).map_or(0, |s| {
        s.max_per_project()
            .saturating_sub(s.list(project.as_str()).len())
    });
    Ok(json_response(
        StatusCode::OK,
        &json!({"quotas": {"resources": [
            {"type": "graph", "available": graphs, "edge_volume": edges},
            {"type": "backup", "available": backups},
            {"type": "metadata", "available": metadatas},
        ]}}),
    ))
}
