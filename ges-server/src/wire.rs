//! The wire format: the JSON shapes of the GES management API and the
//! tables that map the core's values onto GES's codes and names.
//!
//! Everything here is a pure function of a core value; nothing here
//! decides anything about a graph's lifecycle.

use std::borrow::Cow;

use graph_lifecycle::{GraphInfo, GraphState, TaskInfo, TaskKind, TaskStatus, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The GES status code of a graph state, as the `status` string of a
/// graph object.
///
/// GES's own codes are kept where GES has the state (`200` running, `202`
/// importing, `204` exporting, `205` clearing, `300` faulty for
/// Abnormal). GES has no code for the other four states; they get codes
/// in the `7xx` range, which no GES status uses:
///
/// | state | code |
/// |---|---|
/// | Stopped | `700` |
/// | Starting | `701` |
/// | Stopping | `702` |
/// | Restarting | `703` |
///
/// ```
/// use ges_server::wire::graph_status_code;
/// use graph_lifecycle::GraphState;
/// assert_eq!(graph_status_code(GraphState::Running), "200");
/// assert_eq!(graph_status_code(GraphState::Restarting), "703");
/// ```
pub const fn graph_status_code(state: GraphState) -> &'static str {
    match state {
        GraphState::Running => "200",
        GraphState::Importing => "202",
        GraphState::Exporting => "204",
        GraphState::Clearing => "205",
        GraphState::Abnormal => "300",
        GraphState::Stopped => "700",
        GraphState::Starting => "701",
        GraphState::Stopping => "702",
        GraphState::Restarting => "703",
    }
}

/// The GES name of a task status: `pending`, `running`, `success`, or
/// `failed` (Failed and Cancelled alike; the job's `fail_reason` tells
/// them apart).
pub const fn job_status(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Pending => "pending",
        TaskStatus::Running => "running",
        TaskStatus::Succeeded => "success",
        TaskStatus::Failed | TaskStatus::Cancelled => "failed",
    }
}

/// The statuses a task-center `status` filter value selects, `None` for
/// a value GES does not define. `waiting` is GES's filter name for
/// `pending`; `partiallyFailed` is accepted and matches nothing, since
/// no job of this server fails partly.
pub fn status_filter(value: &str) -> Option<&'static [TaskStatus]> {
    Some(match value {
        "pending" | "waiting" => &[TaskStatus::Pending],
        "running" => &[TaskStatus::Running],
        "success" => &[TaskStatus::Succeeded],
        "failed" => &[TaskStatus::Failed, TaskStatus::Cancelled],
        "partiallyFailed" => &[],
        _ => return None,
    })
}

/// The `job_type` of a task: `StartGraph`, `StopGraph`, `RestartGraph`,
/// `ImportGraph`, `ExportGraph`, `ClearGraph`, or a host task's own kind
/// name.
pub fn job_type(kind: &TaskKind) -> Cow<'_, str> {
    Cow::Borrowed(match kind {
        TaskKind::Start => "StartGraph",
        TaskKind::Stop => "StopGraph",
        TaskKind::Restart => "RestartGraph",
        TaskKind::Import => "ImportGraph",
        TaskKind::Export => "ExportGraph",
        TaskKind::Clear { .. } => "ClearGraph",
        TaskKind::Host(h) => return Cow::Owned(h.as_str().to_owned()),
    })
}

const TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// A timestamp as GES shows times: UTC, `yyyy-MM-ddTHH:mm:ss`, seconds
/// truncated. A time past the year 9999 shows as `9999-12-31T23:59:59`.
///
/// ```
/// use ges_server::wire::format_time;
/// use graph_lifecycle::Timestamp;
/// assert_eq!(format_time(Timestamp::from_millis(1_714_564_800_999)), "2024-05-01T12:00:00");
/// ```
pub fn format_time(t: Timestamp) -> String {
    TimeText::new(t).as_str().to_owned()
}

/// A time as [`format_time`] writes it, held on the stack.
pub(crate) enum TimeText {
    /// `yyyy-MM-ddTHH:mm:ss`.
    Digits([u8; 19]),
    /// What the time crate writes for a year it cannot show in four digits.
    Other(String),
}

impl TimeText {
    pub(crate) fn new(t: Timestamp) -> Self {
        let nanos = i128::from(t.as_millis()) * 1_000_000;
        let Ok(dt) = time::OffsetDateTime::from_unix_timestamp_nanos(nanos) else {
            return Self::Digits(*b"9999-12-31T23:59:59");
        };
        // The digits are written directly: the time crate's formatter walks
        // the format description for every call, and this is on every job
        // and graph shown.
        let mut out = *b"0000-00-00T00:00:00";
        let mut put = |at: usize, width: usize, value: u32| {
            let mut v = value;
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        match u32::try_from(dt.year()) {
            Ok(year) if year <= 9999 => put(0, 4, year),
            _ => return Self::Other(dt.format(TIME_FORMAT).unwrap_or_default()),
        }
        put(5, 2, u32::from(u8::from(dt.month())));
        put(8, 2, u32::from(dt.day()));
        put(11, 2, u32::from(dt.hour()));
        put(14, 2, u32::from(dt.minute()));
        put(17, 2, u32::from(dt.second()));
        Self::Digits(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Digits(d) => std::str::from_utf8(d).unwrap_or_default(),
            Self::Other(s) => s,
        }
    }
}

/// A task-center time bound: `yyyy-MM-dd` (a whole UTC day, as GES
/// documents) or `yyyy-MM-ddTHH:mm:ss` (one UTC second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound {
    /// The first millisecond of the day or second.
    pub start: Timestamp,
    /// The first millisecond after it.
    pub end: Timestamp,
}

/// Parses a task-center `start_time` or `end_time`; `None` for anything
/// else, including times before 1970.
///
/// ```
/// use ges_server::wire::parse_time_bound;
/// let day = parse_time_bound("2024-05-01").unwrap();
/// assert_eq!(day.end.as_millis() - day.start.as_millis(), 86_400_000);
/// assert!(parse_time_bound("2024-05-01T12:00:00").is_some());
/// assert!(parse_time_bound("yesterday").is_none());
/// ```
pub fn parse_time_bound(s: &str) -> Option<TimeBound> {
    let (start, span_ms) = if s.len() == 10 {
        let date = time::Date::parse(s, DATE_FORMAT).ok()?;
        (date.midnight().assume_utc(), 86_400_000)
    } else {
        let dt = time::PrimitiveDateTime::parse(s, TIME_FORMAT).ok()?;
        (dt.assume_utc(), 1_000)
    };
    let ms = u64::try_from(start.unix_timestamp())
        .ok()?
        .checked_mul(1_000)?;
    Some(TimeBound {
        start: Timestamp::from_millis(ms),
        end: Timestamp::from_millis(ms.checked_add(span_ms)?),
    })
}

// ---- response bodies ------------------------------------------------------

/// A job, as `GET .../jobs/{job_id}/status` and the task center show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id (a hyphenated UUID).
    pub job_id: String,
    /// `pending`, `running`, `success` or `failed` ([`job_status`]).
    pub status: String,
    /// [`job_type`].
    pub job_type: String,
    /// The core's short name of the task kind (`import`,
    /// `clear(metadata)`, a host kind).
    pub job_name: String,
    /// The graph's name (its id).
    pub related_graph: String,
    /// When the job was created (UTC, `yyyy-MM-ddTHH:mm:ss`).
    pub begin_time: String,
    /// When it ended; absent while it is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Why it failed or was cancelled; present only when `status` is
    /// `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    /// Progress, 0 to 100.
    pub job_progress: u8,
}

impl Job {
    /// The wire form of a task.
    pub fn from_task(t: &TaskInfo) -> Job {
        let fail_reason = match t.status {
            TaskStatus::Failed | TaskStatus::Cancelled => Some(
                t.reason
                    .as_ref()
                    .map_or_else(|| t.status.name().to_owned(), ToString::to_string),
            ),
            _ => None,
        };
        Job {
            job_id: t.id.to_string(),
            status: job_status(t.status).to_owned(),
            job_type: job_type(&t.kind).into_owned(),
            job_name: t.kind.to_string(),
            related_graph: t.key.graph.to_string(),
            begin_time: format_time(t.created_at),
            end_time: t.ended_at.map(format_time),
            fail_reason,
            job_progress: t.progress,
        }
    }
}

/// A task as [`Job`] shows it, serialized straight from the task: the
/// same JSON, field for field, without building `Job`'s strings.
pub(crate) struct JobView<'a>(pub(crate) &'a TaskInfo);

/// A value serialized as the string its `Display` writes.
struct Shown<'a, T: std::fmt::Display>(&'a T);

impl<T: std::fmt::Display> Serialize for Shown<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

impl Serialize for JobView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let t = self.0;
        let mut out = s.serialize_struct("Job", 9)?;
        out.serialize_field("job_id", &Shown(&t.id))?;
        out.serialize_field("status", job_status(t.status))?;
        out.serialize_field("job_type", &job_type(&t.kind))?;
        out.serialize_field("job_name", &Shown(&t.kind))?;
        out.serialize_field("related_graph", &Shown(&t.key.graph))?;
        out.serialize_field("begin_time", TimeText::new(t.created_at).as_str())?;
        match t.ended_at {
            Some(end) => out.serialize_field("end_time", TimeText::new(end).as_str())?,
            None => out.skip_field("end_time")?,
        }
        match t.status {
            TaskStatus::Failed | TaskStatus::Cancelled => match &t.reason {
                Some(reason) => out.serialize_field("fail_reason", &Shown(reason))?,
                None => out.serialize_field("fail_reason", t.status.name())?,
            },
            _ => out.skip_field("fail_reason")?,
        }
        out.serialize_field("job_progress", &t.progress)?;
        out.end()
    }
}

/// `{"job_count": n, "job_list": [...]}` as [`ListJobsResponse`] shows it,
/// from the tasks.
#[derive(Serialize)]
pub(crate) struct ListJobsView<'a> {
    pub(crate) job_count: usize,
    pub(crate) job_list: Vec<JobView<'a>>,
}

/// `{"job_id": ...}` as [`JobIdResponse`] shows it, from the job's id.
#[derive(Serialize)]
pub(crate) struct JobIdView<'a> {
    #[serde(serialize_with = "shown")]
    pub(crate) job_id: &'a graph_lifecycle::JobId,
}

fn shown<T: std::fmt::Display, S: serde::Serializer>(v: &&T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(*v)
}

/// A graph, as `GET .../graphs/{graph_id}` and the graph list show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    /// The graph's id, which is its name.
    pub id: String,
    /// The graph's name.
    pub name: String,
    /// The GES status code ([`graph_status_code`]).
    pub status: String,
    /// When it was created (UTC, `yyyy-MM-ddTHH:mm:ss`).
    pub created: String,
    /// When a command last changed it.
    pub updated: String,
    /// The core's name of the state (`running`, `restarting`, ...); not a
    /// GES field.
    pub status_name: String,
    /// The graph's epoch: how many forced restarts it went through; not a
    /// GES field.
    pub epoch: u64,
    /// The live lifecycle job, if any; not a GES field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_job_id: Option<String>,
}

impl Graph {
    /// The wire form of a graph summary.
    pub fn from_info(g: &GraphInfo) -> Graph {
        let name = g.key.graph.to_string();
        Graph {
            id: name.clone(),
            name,
            status: graph_status_code(g.state).to_owned(),
            created: format_time(g.created_at),
            updated: format_time(g.updated_at),
            status_name: g.state.name().to_owned(),
            epoch: g.epoch.0,
            active_job_id: g.job.map(|j| j.to_string()),
        }
    }
}

/// `{"graph": {...}}`: the body of `GET .../graphs/{graph_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowGraphResponse {
    /// The graph.
    pub graph: Graph,
}

/// `{"graph_count": n, "graphs": [...]}`: the body of `GET .../graphs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListGraphsResponse {
    /// How many graphs the project has.
    pub graph_count: usize,
    /// The page asked for.
    pub graphs: Vec<Graph>,
}

/// `{"id": ..., "name": ...}`: the body of `POST .../graphs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateGraphResponse {
    /// The new graph's id (its name).
    pub id: String,
    /// Its name.
    pub name: String,
}

/// `{"job_id": ...}`: the body of every call that starts a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdResponse {
    /// The job to poll; empty for a graph deletion, which runs no job.
    pub job_id: String,
}

/// `{"job_count": n, "job_list": [...]}`: the task center's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListJobsResponse {
    /// How many jobs match the filters (before `offset` and `limit`).
    pub job_count: usize,
    /// The page asked for, newest first.
    pub job_list: Vec<Job>,
}

/// `{"error_code": "GES.NNNN", "error_msg": "..."}`: the body of every
/// failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The GES code ([`crate::error::codes`]).
    pub error_code: String,
    /// What went wrong, naming the graph, job and state involved.
    pub error_msg: String,
}

// ---- request bodies -------------------------------------------------------

/// The body of `POST .../graphs`: `{"graph": {"name": ...}}`. Cloud-only
/// fields (VPC, flavor, ...) are accepted and ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateGraphRequest {
    /// The graph to create.
    pub graph: CreateGraphSpec,
}

/// The `graph` object of [`CreateGraphRequest`].
#[derive(Debug, Clone, Deserialize)]
pub struct CreateGraphSpec {
    /// The graph's name, which becomes its id.
    pub name: String,
}

/// The optional body of `POST .../start`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StartGraphRequest {
    /// A backup to start from (handed to the host in the job's payload).
    #[serde(default)]
    pub graph_backup_id: Option<String>,
}

/// The body of `POST .../import-graph`. The fields GES defines are
/// type-checked; the whole body becomes the import job's payload.
#[derive(Debug, Clone, Deserialize)]
pub struct ImportGraphRequest {
    /// Edge data.
    #[serde(default)]
    pub edgeset_path: Option<String>,
    /// Its format.
    #[serde(default)]
    pub edgeset_format: Option<String>,
    /// Vertex data.
    #[serde(default)]
    pub vertexset_path: Option<String>,
    /// Its format.
    #[serde(default)]
    pub vertexset_format: Option<String>,
    /// The schema.
    #[serde(default)]
    pub schema_path: Option<String>,
    /// Where the import logs go.
    #[serde(default)]
    pub log_dir: Option<String>,
    /// How parallel edges are handled.
    #[serde(default)]
    pub parallel_edge: Option<Map<String, Value>>,
    /// The field delimiter.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// The quote character trimmed from fields.
    #[serde(default)]
    pub trim_quote: Option<String>,
    /// Whether the graph goes offline during the import.
    #[serde(default)]
    pub offline: Option<bool>,
}

/// The body of `POST .../export-graph`. As for imports, the whole body
/// becomes the job's payload.
#[derive(Debug, Clone, Deserialize)]
pub struct ExportGraphRequest {
    /// Where the export goes.
    #[serde(default)]
    pub graph_export_path: Option<String>,
    /// The edge file's name.
    #[serde(default)]
    pub edge_set_name: Option<String>,
    /// The vertex file's name.
    #[serde(default)]
    pub vertex_set_name: Option<String>,
    /// The schema file's name.
    #[serde(default)]
    pub schema_name: Option<String>,
    /// Paging of a large export.
    #[serde(default)]
    pub paginate: Option<Map<String, Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_the_time_crate_formats_them() {
        let formatted = |ms: u64| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .ok()
                .and_then(|dt| dt.format(TIME_FORMAT).ok())
                .unwrap_or_else(|| "9999-12-31T23:59:59".to_owned())
        };
        let mut ms: u64 = 0;
        let mut samples = vec![
            0,
            999,
            1_714_564_800_999,
            951_782_400_000,     // 2000-02-29
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            253_402_300_800_000, // past the year 9999
            u64::MAX,
        ];
        for _ in 0..10_000 {
            // Steps of about 289 days and a few seconds, through the years.
            ms = ms.wrapping_add(25_000_000_017);
            samples.push(ms % 253_402_300_800_000);
        }
        for ms in samples {
            assert_eq!(
                format_time(Timestamp::from_millis(ms)),
                formatted(ms),
                "{ms}"
            );
        }
    }

    /// Tasks of every shape: pending, running, ended in each way, a host
    /// task, a failure with a message that needs escaping.
    fn tasks() -> Vec<TaskInfo> {
        use graph_lifecycle::{Engine, GraphKey, HostKind, Report, TaskSpec};
        let (engine, jobs) = Engine::builder().build();
        let key = GraphKey::parse("demo", "g").unwrap();
        engine.create_graph(&key).unwrap();
        let start = engine.start(&key).unwrap();
        let job = jobs.try_recv().unwrap();
        let mut seen = vec![engine.task(&key, start).unwrap()];
        engine.report(&job.task, Report::Started).unwrap();
        engine.report(&job.task, Report::Progress(40)).unwrap();
        seen.push(engine.task(&key, start).unwrap());
        engine.report(&job.task, Report::Succeeded).unwrap();
        seen.push(engine.task(&key, start).unwrap());
        let import = engine.import(&key, b"{}".to_vec()).unwrap();
        let host = engine
            .register_task(&key, TaskSpec::new(HostKind::new("pagerank").unwrap()))
            .unwrap();
        seen.push(engine.task(&key, host.id()).unwrap());
        engine
            .report(
                &host.task,
                Report::Failed("a \"quoted\"\nreason\u{1}".to_owned()),
            )
            .unwrap();
        seen.push(engine.task(&key, host.id()).unwrap());
        let cancelled = engine
            .register_task(&key, TaskSpec::new(HostKind::new("pagerank").unwrap()))
            .unwrap();
        engine.cancel(&key, cancelled.id()).unwrap();
        seen.push(engine.task(&key, cancelled.id()).unwrap());
        let restart = engine.force_restart(&key).unwrap().job;
        seen.push(engine.task(&key, import).unwrap());
        engine.force_restart(&key).unwrap();
        seen.push(engine.task(&key, restart).unwrap());
        seen
    }

    #[test]
    fn a_job_view_is_the_job_serialized() {
        let tasks = tasks();
        for t in &tasks {
            assert_eq!(
                serde_json::to_string(&JobView(t)).unwrap(),
                serde_json::to_string(&Job::from_task(t)).unwrap()
            );
        }
        let list = ListJobsResponse {
            job_count: 9,
            job_list: tasks.iter().map(Job::from_task).collect(),
        };
        let view = ListJobsView {
            job_count: 9,
            job_list: tasks.iter().map(JobView).collect(),
        };
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            serde_json::to_string(&list).unwrap()
        );
        let id = tasks[0].id;
        assert_eq!(
            serde_json::to_string(&JobIdView { job_id: &id }).unwrap(),
            serde_json::to_string(&JobIdResponse {
                job_id: id.to_string()
            })
            .unwrap()
        );
    }
}
