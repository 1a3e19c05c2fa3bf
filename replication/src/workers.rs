//! A pool of simulated workers for a node: each takes the jobs the node
//! hands over, "runs" one for a while, reporting progress, and reports it
//! succeeded through the node; a job whose token or lease goes void is
//! dropped without a report. For demos, the test cluster's processes and
//! benchmarks; an engine runs its own workers instead.

use std::time::Duration;

use graph_lifecycle::{Op, Report};

use crate::jobs::{ClusterJob, ClusterJobs};
use crate::node::Node;

/// Starts `n` worker threads on `jobs`, each job taking `job_time` in
/// three steps; reports go through `node` on `runtime`. The threads end
/// when the job channel closes (the node is gone).
pub fn spawn(
    node: &Node,
    jobs: &ClusterJobs,
    n: usize,
    job_time: Duration,
    runtime: tokio::runtime::Handle,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .filter_map(|i| {
            let node = node.clone();
            let jobs = jobs.clone();
            let rt = runtime.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    while let Ok(job) = jobs.recv() {
                        run(&node, &job, job_time, &rt);
                    }
                })
                .ok()
        })
        .collect()
}

fn run(node: &Node, job: &ClusterJob, job_time: Duration, rt: &tokio::runtime::Handle) {
    let report = |r: Report| {
        let task = &job.job.task;
        let cmd = node.command(&task.key, None, |_| Op::Report {
            job: task.id,
            epoch: task.epoch,
            report: r,
        });
        // One call, retried by the node with the same request id; a
        // refusal (the job was voided meanwhile) is fine.
        let _ = rt.block_on(node.submit(cmd));
    };
    for step in [Report::Started, Report::Progress(50)] {
        if job.is_void() {
            return;
        }
        std::thread::sleep(job_time / 3);
        report(step);
    }
    std::thread::sleep(job_time / 3);
    if !job.is_void() {
        report(Report::Succeeded);
    }
}
