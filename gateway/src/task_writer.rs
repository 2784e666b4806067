//! Group commit for agency task results.
//!
//! Every agency exchange ends with its task's result stored and, when it was
//! the inquiry's last unfinished task, the inquiry completed. One
//! transaction per result would make the database's commit rate the
//! gateway's ceiling; instead the dispatcher's exchanges hand their results
//! to one writer task, which stores whatever has gathered in one
//! transaction (`JobStore::finish_tasks`) and then answers each. A result
//! is acknowledged only after its commit, so nothing acknowledged is lost;
//! the channel is bounded, so a slow database slows the exchanges down
//! instead of filling memory.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{JobStore, TaskResult};

/// Most results one transaction takes.
const MAX_BATCH: usize = 512;

/// What became of one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Stored: the lease was still this gateway's.
    pub stored: bool,
    /// This result's inquiry was completed by the batch (told to one
    /// result of the inquiry only).
    pub completed: bool,
}

type Ack = oneshot::Sender<Result<Written, String>>;

/// The handle exchanges send their results through.
#[derive(Debug, Clone)]
pub struct TaskWriter {
    writers: Arc<Vec<mpsc::Sender<(TaskResult, Ack)>>>,
}

impl TaskWriter {
    /// Starts the writers for `owner`'s leases: as many as the store takes
    /// concurrent writers (one on SQLite, several on PostgreSQL, where a
    /// batch's round trips would otherwise leave the server idle). All the
    /// results of one inquiry go to the same writer: its completion is
    /// checked by that writer only, so two writers never lock the same
    /// inquiries (in different orders, they deadlocked).
    pub fn start(store: Arc<dyn JobStore>, owner: String, capacity: usize) -> Self {
        let count = store.concurrent_writers().max(1);
        let writers = (0..count)
            .map(|_| {
                let (tx, rx) = mpsc::channel((capacity / count).max(1));
                tokio::spawn(writer(store.clone(), owner.clone(), rx));
                tx
            })
            .collect();
        Self {
            writers: Arc::new(writers),
        }
    }

    /// Stores one result and waits for its commit. The error says why it
    /// could not be stored (the task's lease then runs out and the step is
    /// redone).
    pub async fn write(&self, result: TaskResult) -> Result<Written, String> {
        let (ack, done) = oneshot::channel();
        let writer = writer_for(&result.inquiry_id, self.writers.len());
        self.writers[writer]
            .send((result, ack))
            .await
            .map_err(|_| "the task writer has stopped".to_owned())?;
        done.await
            .map_err(|_| "the task writer has stopped".to_owned())?
    }
}

/// The writer of an inquiry's results: the same for every result of it.
fn writer_for(inquiry_id: &str, writers: usize) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(inquiry_id, &mut hasher);
    (std::hash::Hasher::finish(&hasher) % writers.max(1) as u64) as usize
}

async fn writer(
    store: Arc<dyn JobStore>,
    owner: String,
    mut rx: mpsc::Receiver<(TaskResult, Ack)>,
) {
    let mut pending: Vec<(TaskResult, Ack)> = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.recv_many(&mut pending, MAX_BATCH).await == 0 {
            return; // every handle dropped
        }
        let (results, acks): (Vec<TaskResult>, Vec<Ack>) = pending.drain(..).unzip();
        let now = chrono::Utc::now().timestamp_millis();
        match store.finish_tasks(&owner, &results, now).await {
            Ok(done) => {
                let mut completed: HashSet<String> = done.completed.into_iter().collect();
                for ((result, ack), stored) in results.iter().zip(acks).zip(done.stored) {
                    let _ = ack.send(Ok(Written {
                        stored,
                        completed: stored && completed.remove(&result.inquiry_id),
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, results = results.len(), "cannot store task results");
                let message = e.to_string();
                for ack in acks {
                    let _ = ack.send(Err(message.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapters::model::AgencyStatus;

    use crate::store::{InquiryRecord, InquiryStatus, SqliteStore, TaskState, TaskUpdate};

    fn inquiry(id: &str) -> InquiryRecord {
        InquiryRecord {
            id: id.into(),
            caller: "court".into(),
            case_number: "case".into(),
            subject: adapters::model::Subject::Person {
                name: "张三".into(),
                id_number: adapters::ids::IdNumber::parse("360426199101010071")
                    .expect("an identity number"),
            },
            officers: Vec::new(),
            asset_kinds: Vec::new(),
            court: adapters::model::Court {
                code: "甘0503".into(),
                name: "天水市麦积区人民法院".into(),
            },
            warnings: Vec::new(),
            status: InquiryStatus::Running,
            created_at_ms: 0,
            deadline_at_ms: i64::MAX,
            completed_at_ms: None,
            catalog_version: None,
        }
    }

    fn result(inquiry: &str, agency: &str) -> TaskResult {
        TaskResult {
            inquiry_id: inquiry.into(),
            agency: agency.into(),
            update: TaskUpdate {
                state: TaskState::Finished(AgencyStatus::NoRecord),
                detail: None,
                ticket: None,
                due_at_ms: 0,
                sent_at_ms: Some(0),
                latency_ms: Some(1),
                result: None,
            },
        }
    }

    #[tokio::test]
    async fn concurrent_results_are_stored_and_each_completion_told_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Arc::new(SqliteStore::open(&url).await.expect("open"));
        let agencies: Vec<String> = (0..8).map(|i| format!("bank-{i}")).collect();
        for n in 0..50 {
            let id = format!("inq-{n}");
            let tasks: Vec<(String, String)> = agencies
                .iter()
                .map(|a| (a.clone(), format!("Q{n}-{a}")))
                .collect();
            store
                .create_inquiry(&inquiry(&id), &tasks)
                .await
                .expect("create");
        }
        let claimed = store
            .claim_due_tasks("gw", 1, i64::MAX, 1_000, &[])
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 400);
        assert!(claimed.iter().all(|t| t.state == TaskState::Queued));
        let writer = TaskWriter::start(store.clone(), "gw".into(), 64);
        let writes = claimed.iter().map(|t| {
            let writer = writer.clone();
            let r = result(&t.inquiry_id, &t.agency);
            async move { writer.write(r).await }
        });
        let written = futures::future::join_all(writes).await;
        let written: Vec<Written> = written.into_iter().map(|w| w.expect("written")).collect();
        assert!(written.iter().all(|w| w.stored));
        assert_eq!(written.iter().filter(|w| w.completed).count(), 50);
        for n in 0..50 {
            let i = store
                .inquiry(&format!("inq-{n}"))
                .await
                .expect("read")
                .expect("found");
            assert_eq!(i.status, InquiryStatus::Completed);
        }
        // A result whose lease is gone is answered, not stored.
        let again = writer
            .write(result("inq-0", "bank-0"))
            .await
            .expect("written");
        assert_eq!(
            again,
            Written {
                stored: false,
                completed: false
            }
        );
    }
}
