//! Group commit for new inquiries.
//!
//! Accepting an inquiry stores it and its tasks before the answer goes
//! back. One transaction per inquiry made that commit the API's cost: on
//! SQLite, four trips to its one connection's thread for every inquiry.
//! Instead the API hands each new inquiry to one writer task, which stores
//! whatever has gathered in one transaction (`JobStore::create_inquiries`)
//! and then answers each. An inquiry is acknowledged only after its commit.
//! When a batch fails, each of its inquiries is tried alone, so one that
//! cannot be stored does not fail the others. The channel is bounded: a
//! slow database slows the API down instead of filling memory.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{JobStore, NewInquiry, StoreError};

/// Most inquiries one transaction takes.
const MAX_BATCH: usize = 256;
/// Most tasks one transaction takes (an inquiry to a whole fleet has
/// thousands); an inquiry with more goes alone.
const MAX_BATCH_TASKS: usize = 16_384;

type Ack = oneshot::Sender<Result<NewInquiry, StoreError>>;

/// The handle the API stores new inquiries through.
#[derive(Debug, Clone)]
pub struct InquiryWriter {
    tx: mpsc::Sender<(NewInquiry, Ack)>,
}

/// The writer task has stopped (the gateway is shutting down).
fn stopped() -> StoreError {
    StoreError::Unavailable("the inquiry writer has stopped".into())
}

impl InquiryWriter {
    pub fn start(store: Arc<dyn JobStore>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(writer(store, rx));
        Self { tx }
    }

    /// Stores the inquiry and its tasks (as `JobStore::create_inquiry_claimed`
    /// does) and waits for the commit; gives the inquiry back.
    pub async fn create(&self, new: NewInquiry) -> Result<NewInquiry, StoreError> {
        let (ack, done) = oneshot::channel();
        self.tx.send((new, ack)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}

async fn writer(store: Arc<dyn JobStore>, mut rx: mpsc::Receiver<(NewInquiry, Ack)>) {
    let mut pending: Vec<(NewInquiry, Ack)> = Vec::with_capacity(MAX_BATCH);
    loop {
        if pending.is_empty() && rx.recv_many(&mut pending, MAX_BATCH).await == 0 {
            return; // every handle dropped
        }
        // The longest run from the front that stays under the task bound
        // (at least one inquiry); the rest waits for the next transaction.
        let mut tasks = 0;
        let take = pending
            .iter()
            .take_while(|(new, _)| {
                tasks += new.tasks.len();
                tasks <= MAX_BATCH_TASKS
            })
            .count()
            .max(1);
        let (batch, acks): (Vec<NewInquiry>, Vec<Ack>) = pending.drain(..take).unzip();
        match store.create_inquiries(&batch).await {
            Ok(()) => {
                for (new, ack) in batch.into_iter().zip(acks) {
                    let _ = ack.send(Ok(new));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(ack) = acks.into_iter().next() {
                    let _ = ack.send(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, inquiries = batch.len(), "a batch of new inquiries failed; storing each alone");
                for (new, ack) in batch.into_iter().zip(acks) {
                    let stored = store.create_inquiries(std::slice::from_ref(&new)).await;
                    let _ = ack.send(stored.map(|()| new));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InquiryRecord, TaskLease};

    fn inquiry(id: &str, agencies: &[&str]) -> NewInquiry {
        NewInquiry {
            record: InquiryRecord {
                id: id.to_owned(),
                caller: "court".into(),
                case_number: "(2024)京0105执1号".into(),
                subject: adapters::model::Subject::Person {
                    name: "张三".into(),
                    id_number: adapters::ids::IdNumber::parse("360426199101010071")
                        .expect("an identity number"),
                },
                officers: Vec::new(),
                asset_kinds: vec![adapters::model::AssetKind::BankAccount],
                court: adapters::model::Court {
                    code: "甘0503".into(),
                    name: "天水市麦积区人民法院".into(),
                },
                warnings: Vec::new(),
                status: crate::store::InquiryStatus::Running,
                created_at_ms: 1_000,
                deadline_at_ms: 61_000,
                completed_at_ms: None,
                catalog_version: None,
            },
            tasks: agencies
                .iter()
                .map(|a| (a.to_string(), format!("{id}-{a}")))
                .collect(),
            lease: Some(TaskLease {
                owner: "gw-test".into(),
                until_ms: 31_000,
                count: 1,
            }),
        }
    }

    async fn store() -> (tempfile::TempDir, Arc<dyn crate::store::Store>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("g.db").display());
        let store = crate::store::open(&url).await.expect("store");
        (dir, store)
    }

    #[tokio::test]
    async fn concurrent_inquiries_are_all_stored_with_their_claims() {
        let (_dir, store) = store().await;
        let writer = InquiryWriter::start(store.clone(), 64);
        let created = futures::future::join_all((0..200).map(|i| {
            let writer = writer.clone();
            async move {
                writer
                    .create(inquiry(&format!("inq-{i}"), &["bank-a", "bank-b"]))
                    .await
            }
        }))
        .await;
        for (i, c) in created.into_iter().enumerate() {
            let back = c.expect("stored");
            assert_eq!(back.record.id, format!("inq-{i}"));
            let tasks = store.tasks(&back.record.id).await.expect("tasks");
            assert_eq!(tasks.len(), 2, "inq-{i}");
        }
        // The first task of each was stored claimed, the second not: a
        // claim round finds only the second ones.
        let claimed = store
            .claim_due_tasks("gw-other", 2_000, 40_000, 1_000, &[])
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 200);
        assert!(claimed.iter().all(|t| t.agency == "bank-b"));
    }

    #[tokio::test]
    async fn one_inquiry_that_cannot_be_stored_does_not_fail_the_others() {
        let (_dir, store) = store().await;
        store
            .create_inquiry(&inquiry("inq-taken", &[]).record, &[])
            .await
            .expect("first");
        // On the test's one-thread runtime the writer runs only once all
        // three are queued: they go in one batch, which fails.
        let writer = InquiryWriter::start(store.clone(), 64);
        let (a, b, c) = tokio::join!(
            writer.create(inquiry("inq-1", &["bank-a"])),
            writer.create(inquiry("inq-taken", &["bank-a"])),
            writer.create(inquiry("inq-2", &["bank-a"])),
        );
        assert!(a.is_ok(), "{a:?}");
        assert!(b.is_err(), "the id is taken");
        assert!(c.is_ok(), "{c:?}");
        assert!(store.inquiry("inq-2").await.expect("read").is_some());
        assert!(store.tasks("inq-taken").await.expect("read").is_empty());
    }
}
