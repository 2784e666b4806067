//! The dispatcher: claims due agency tasks from the store, sends them through
//! the agency's dialect, records everything in the audit log before acting,
//! and stores each agency's outcome.
//!
//! It holds nothing that a restart would lose: a task is claimed with a lease
//! and finished by one store update; if the process dies mid-way the lease
//! runs out and the task is claimed again, with the same request number, which
//! the agency recognises. It never sends a byte whose audit record has not
//! committed, and never uses a reply that has not been recorded: an
//! answer's rows are committed with the results made of it, or before
//! them.
//!
//! Each task is sent with the agency set its inquiry started with (see
//! `agencies`), only during the agency's business hours (outside them the
//! task waits, due again at the next opening, while the inquiry's deadline
//! still runs), through the agency's inquiry stack (`resilience`): its
//! concurrency bound, quota and breaker, the audit records, the timeout,
//! and retries within the deadline and the lease. What the stack refuses
//! keeps its durable meaning here: a quota refusal defers the task, a busy
//! agency gives it back for later, an open breaker is `circuit_open`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use adapters::agency::china_time_label;
use adapters::dialect::{
    Envelope, InquiryRequest, Interaction, ItemOutcome, ReplyError, WireReply,
};
use adapters::model::{AgencyStatus, Court, InquiryOutcome};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tracing::Instrument;

use crate::agencies::{Agency, AgencyLink, AgencySets};
use crate::audit::{AuditLog, AuditRecord, Finished, Ticket};
use crate::config::DispatcherSettings;
use crate::inquiry::{officer_labels, stored_request};
use crate::metrics::AgencyMetrics;
use crate::metrics::recent::ErrorKind;
use crate::notify::Notifier;
use crate::resilience::audit::MessageAudit;
use crate::resilience::stack::{AgencyService, Exchanged, exchange};
use crate::resilience::{AgencyCall, Refusal};
use crate::runtime::AgencyRuntime;
use crate::store::{
    Change, ClaimedTask, InquiryRecord, Leased, Store, TaskLease, TaskResult, TaskState, TaskUpdate,
};
use crate::transport::{HttpReply, TransportError};

/// Why a task waits, when the agency's quota has no room now.
const QUOTA_WAIT: &str = "waiting for the agency's quota (rate_per_second)";
/// How often retired agency sets are checked for inquiries still using them.
const PRUNE_EVERY_MS: i64 = 1_000;
/// How often, at most, inquiries past their deadline are looked for.
const EXPIRE_EVERY_MS: i64 = 100;
/// How often owed completion callbacks are looked for: those of inquiries
/// an agency's push completed, and those a gateway that died, or a store
/// that failed, left unqueued.
const OWED_CALLBACKS_EVERY_MS: i64 = 1_000;
/// An owed callback younger than this is left to the instance that
/// completed the inquiry, which queues it at once.
const OWED_CALLBACK_GRACE_MS: i64 = 2_000;
/// Handed-over inquiries the dispatcher starts together (their tasks for
/// one agency go in one batch where the dialect allows).
const HANDOFF_BATCH: usize = 256;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What the API needs of the dispatcher: a way to wake it, to hand it a
/// new inquiry's tasks, and to hear of completed inquiries.
#[derive(Debug, Clone)]
pub struct DispatcherHandle {
    wake: Arc<Notify>,
    waiters: Arc<Waiters>,
    handoffs: mpsc::UnboundedSender<Handoff>,
    owner: Arc<str>,
    permits: Arc<Semaphore>,
    agencies: Arc<AgencySets>,
    settings: DispatcherSettings,
}

/// A new inquiry's tasks, stored already claimed by this instance
/// (`TaskLease`), for the dispatcher to send at once.
#[derive(Debug)]
struct Handoff {
    inquiry: Arc<InquiryRecord>,
    tasks: Vec<ClaimedTask>,
    lease_until_ms: i64,
    /// Room for one exchange per task, taken when the claim was offered.
    permits: OwnedSemaphorePermit,
}

/// A claim the dispatcher offers on a new inquiry's tasks, with room
/// reserved for sending them.
#[derive(Debug)]
pub struct Offer {
    pub lease: TaskLease,
    permits: OwnedSemaphorePermit,
}

impl DispatcherHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Tells whoever waits for the inquiry that it completed.
    pub fn completed(&self, inquiry_id: &str) {
        self.waiters.completed(inquiry_id);
    }

    /// Wait for an inquiry's completion: take this before creating the
    /// inquiry so its completion cannot be missed.
    pub fn completion(&self, inquiry_id: &str) -> Completion {
        self.waiters.wait_for(inquiry_id)
    }

    /// The claim to take on a new inquiry's tasks as they are stored, so
    /// that this instance sends them at once (`hand_over`): as many as the
    /// dispatcher has room for now. `None` when it has none: the tasks are
    /// stored unclaimed and the next round claims them.
    pub fn offer(&self, tasks: usize, now: i64) -> Option<Offer> {
        let room = self.permits.available_permits().min(tasks);
        let permits = self
            .permits
            .clone()
            .try_acquire_many_owned(u32::try_from(room).ok().filter(|&n| n > 0)?)
            .ok()?;
        Some(Offer {
            lease: TaskLease {
                owner: self.owner.to_string(),
                until_ms: now + lease_ms(&self.agencies, &self.settings),
                count: room,
            },
            permits,
        })
    }

    /// Gives the dispatcher the tasks stored claimed under `offer`; the
    /// rest, if any, are claimed by its next round.
    pub fn hand_over(
        &self,
        inquiry: InquiryRecord,
        tasks: &[(String, String)],
        offer: Option<Offer>,
    ) {
        let all = offer.as_ref().is_some_and(|o| o.lease.count >= tasks.len());
        if let Some(Offer { lease, permits }) = offer {
            let handoff = Handoff {
                tasks: lease.claimed(&inquiry.id, tasks),
                inquiry: Arc::new(inquiry),
                lease_until_ms: lease.until_ms,
                permits,
            };
            // Refused only when the dispatcher has stopped: the lease runs
            // out and the tasks are claimed again.
            let _ = self.handoffs.send(handoff);
        }
        if !all {
            self.wake();
        }
    }
}

/// How long a claim on a task lasts: long enough for every attempt the
/// retry layer may make, and the waits between them; the grace on top.
fn lease_ms(agencies: &AgencySets, settings: &DispatcherSettings) -> i64 {
    let timeout_ms = agencies.max_timeout_ms().unwrap_or(10_000) as i64;
    let attempts = settings.max_attempts.clamp(1, 10);
    let backoff_ms = (settings.retry_base_ms as i64).saturating_mul(1 << attempts);
    timeout_ms * attempts + backoff_ms + settings.lease_grace_secs as i64 * 1000
}

/// Who waits for which inquiry to complete: each completion wakes its own
/// waiters only.
#[derive(Debug, Default)]
struct Waiters(Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>);

impl Waiters {
    fn wait_for(self: &Arc<Self>, inquiry_id: &str) -> Completion {
        let (tx, rx) = oneshot::channel();
        self.lock()
            .entry(inquiry_id.to_owned())
            .or_default()
            .push(tx);
        Completion {
            rx: Some(rx),
            inquiry_id: inquiry_id.to_owned(),
            waiters: self.clone(),
        }
    }

    fn completed(&self, inquiry_id: &str) {
        let waiting = self.lock().remove(inquiry_id);
        for tx in waiting.into_iter().flatten() {
            let _ = tx.send(());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<()>>>> {
        // A panic while holding it cannot leave the map inconsistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A wait for one inquiry's completion; dropping it stops waiting.
#[derive(Debug)]
pub struct Completion {
    rx: Option<oneshot::Receiver<()>>,
    inquiry_id: String,
    waiters: Arc<Waiters>,
}

impl Completion {
    /// Waits until the inquiry completes or `deadline` passes; true when it
    /// completed.
    pub async fn until(&mut self, deadline: tokio::time::Instant) -> bool {
        match self.rx.as_mut() {
            Some(rx) => matches!(tokio::time::timeout_at(deadline, rx).await, Ok(Ok(()))),
            None => false,
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut waiters = self.waiters.lock();
        if let Some(list) = waiters.get_mut(&self.inquiry_id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(&self.inquiry_id);
            }
        }
    }
}

pub struct Dispatcher {
    owner: String,
    store: Arc<dyn Store>,
    audit: AuditLog,
    agencies: Arc<AgencySets>,
    settings: DispatcherSettings,
    permits: Arc<Semaphore>,
    handle: DispatcherHandle,
    /// New inquiries' tasks the API stored claimed, to send at once.
    handoffs: Mutex<Option<mpsc::UnboundedReceiver<Handoff>>>,
    /// Set when a round may find work that the last one left: it had no
    /// room for everything due, or a task was given back, deferred or is
    /// to be polled. The end of an exchange wakes the dispatcher then.
    round_wanted: AtomicBool,
    last_prune_ms: AtomicI64,
    last_expire_ms: AtomicI64,
    last_owed_ms: AtomicI64,
    /// The gateway's own address as agencies reach it, for callbacks.
    public_url: String,
    /// Tells callers of completed inquiries.
    notifier: Notifier,
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        audit: AuditLog,
        agencies: Arc<AgencySets>,
        settings: DispatcherSettings,
        public_url: String,
        notifier: Notifier,
    ) -> Arc<Self> {
        let owner = format!("gw-{}", uuid::Uuid::now_v7().simple());
        let permits = Arc::new(Semaphore::new(settings.max_in_flight));
        let (handoffs, handoffs_rx) = mpsc::unbounded_channel();
        let handle = DispatcherHandle {
            wake: Arc::new(Notify::new()),
            waiters: Arc::default(),
            handoffs,
            owner: owner.as_str().into(),
            permits: permits.clone(),
            agencies: agencies.clone(),
            settings: settings.clone(),
        };
        Arc::new(Self {
            owner,
            store,
            audit,
            agencies,
            permits,
            settings,
            handle,
            handoffs: Mutex::new(Some(handoffs_rx)),
            round_wanted: AtomicBool::new(false),
            last_prune_ms: AtomicI64::new(0),
            last_expire_ms: AtomicI64::new(0),
            last_owed_ms: AtomicI64::new(0),
            public_url,
            notifier,
        })
    }

    pub fn handle(&self) -> DispatcherHandle {
        self.handle.clone()
    }

    /// Runs until `stop` turns true: the leased-worker loop, and beside it
    /// the tasks the API hands over.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let handoffs = self
            .handoffs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = handoffs {
            tokio::spawn(self.clone().take_handoffs(rx, stop.clone()));
        }
        crate::worker::run(self, stop).await
    }

    /// Starts the tasks the API handed over, as they come; those that
    /// arrive together are batched per agency like a round's.
    async fn take_handoffs(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Handoff>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut arrived = Vec::with_capacity(HANDOFF_BATCH);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut arrived, HANDOFF_BATCH) => if n == 0 { return },
                _ = stop.changed() => return,
            }
            let mut inquiries = HashMap::with_capacity(arrived.len());
            let mut tasks = Vec::new();
            let mut lease_until_ms = i64::MAX;
            let mut permits: Option<OwnedSemaphorePermit> = None;
            for handoff in arrived.drain(..) {
                lease_until_ms = lease_until_ms.min(handoff.lease_until_ms);
                tasks.extend(handoff.tasks);
                inquiries.insert(handoff.inquiry.id.clone(), handoff.inquiry);
                match permits.as_mut() {
                    Some(p) => p.merge(handoff.permits),
                    None => permits = Some(handoff.permits),
                }
            }
            if let Err(e) = self
                .dispatch(tasks, inquiries, lease_until_ms, permits)
                .await
            {
                // Its tasks stay claimed until the lease runs out, then a
                // round claims them again.
                tracing::warn!(error = %e, "cannot start handed-over tasks; they are claimed again when their lease ends");
            }
        }
    }

    /// One pass: time out overdue inquiries, claim what is due, start it.
    async fn claim_round(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        let now = now_ms();
        if now - self.last_expire_ms.load(Ordering::Relaxed) >= EXPIRE_EVERY_MS {
            self.last_expire_ms.store(now, Ordering::Relaxed);
            let overdue = self.store.overdue_inquiries(now).await?;
            if !overdue.is_empty() {
                match self.audit.time_out(overdue).await {
                    Ok(completed) => {
                        for inquiry_id in completed {
                            self.completed(&inquiry_id).await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot time out overdue inquiries; the next round tries again")
                    }
                }
            }
        }
        if now - self.last_owed_ms.load(Ordering::Relaxed) >= OWED_CALLBACKS_EVERY_MS {
            self.last_owed_ms.store(now, Ordering::Relaxed);
            self.queue_owed_callbacks(now).await;
        }
        self.prune_retired_sets(now).await;
        let available = self.permits.available_permits();
        if available == 0 {
            self.round_wanted.store(true, Ordering::Release);
            return Ok(());
        }
        let lease_until_ms = now + lease_ms(&self.agencies, &self.settings);
        let busy = self.busy_agencies();
        let claimed = self
            .store
            .claim_due_tasks(&self.owner, now, lease_until_ms, available as i64, &busy)
            .await?;
        if claimed.len() >= available || !busy.is_empty() {
            // More may be due than there was room for.
            self.round_wanted.store(true, Ordering::Release);
        }
        self.dispatch(claimed, HashMap::new(), lease_until_ms, None)
            .await
    }

    /// Starts claimed tasks: those of one agency together, in batches as
    /// large as its dialect takes. `inquiries` holds the inquiries already
    /// at hand; the others are read from the store. `reserved` is room
    /// already taken for them (one permit a task), else each exchange
    /// takes its own.
    async fn dispatch(
        self: &Arc<Self>,
        claimed: Vec<ClaimedTask>,
        mut inquiries: HashMap<String, Arc<InquiryRecord>>,
        lease_until_ms: i64,
        mut reserved: Option<OwnedSemaphorePermit>,
    ) -> Result<(), crate::store::StoreError> {
        if claimed.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        // Per (agency-set version, agency): the link and its queued tasks.
        type Sends = Vec<(ClaimedTask, Arc<InquiryRecord>)>;
        let mut sends: HashMap<(String, String), (Arc<AgencyLink>, Sends)> = HashMap::new();
        for task in claimed {
            let inquiry = match inquiries.get(&task.inquiry_id) {
                Some(i) => i.clone(),
                None => match self.store.inquiry(&task.inquiry_id).await? {
                    Some(i) => {
                        let i = Arc::new(i);
                        inquiries.insert(task.inquiry_id.clone(), i.clone());
                        i
                    }
                    None => continue,
                },
            };
            let registry = self
                .agencies
                .for_version(inquiry.catalog_version.as_deref());
            let Some(link) = registry.get(&task.agency).cloned() else {
                self.finish(
                    None,
                    &task,
                    failed(AgencyStatus::Error, "the agency is no longer configured"),
                )
                .await;
                continue;
            };
            if let Some(hours) = &link.config().business_hours {
                let at =
                    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now).unwrap_or_default();
                let opening = hours.next_opening(at);
                if opening > at {
                    let detail = format!(
                        "waiting for the agency's business hours ({}); next opening {}",
                        hours.describe(),
                        china_time_label(opening)
                    );
                    self.defer(&task, opening.timestamp_millis(), &detail).await;
                    continue;
                }
            }
            if task.state == TaskState::Polling {
                let permit = reserved.as_mut().and_then(|p| p.split(1));
                self.start(link, vec![(task, inquiry)], lease_until_ms, permit);
            } else {
                sends
                    .entry((registry.version().to_owned(), task.agency.clone()))
                    .or_insert_with(|| (link, Vec::new()))
                    .1
                    .push((task, inquiry));
            }
        }
        for (_, (link, mut tasks)) in sends {
            let size = link.agency.dialect.max_batch().max(1);
            while !tasks.is_empty() {
                let rest = tasks.split_off(size.min(tasks.len()));
                let permit = reserved.as_mut().and_then(|p| p.split(1));
                self.start(
                    link.clone(),
                    std::mem::replace(&mut tasks, rest),
                    lease_until_ms,
                    permit,
                );
            }
        }
        Ok(())
    }

    /// Agencies at their concurrency bound: their tasks stay unclaimed until
    /// an exchange with them ends (which wakes the dispatcher).
    fn busy_agencies(&self) -> Vec<String> {
        let mut busy: Vec<String> = self
            .agencies
            .all_links()
            .iter()
            .filter(|a| a.runtime.is_busy())
            .map(|a| a.id().to_owned())
            .collect();
        busy.sort();
        busy.dedup();
        busy
    }

    /// Drops retired agency sets that no running inquiry uses any more.
    async fn prune_retired_sets(&self, now: i64) {
        if now - self.last_prune_ms.load(Ordering::Relaxed) < PRUNE_EVERY_MS {
            return;
        }
        self.last_prune_ms.store(now, Ordering::Relaxed);
        let candidates = self.agencies.unheld_retired();
        if candidates.is_empty() {
            return;
        }
        match self.store.running_catalog_versions().await {
            Ok(in_use) => {
                let in_use: HashSet<String> = in_use.into_iter().collect();
                let dropped = self.agencies.prune(&candidates, &in_use);
                if dropped > 0 {
                    tracing::info!(dropped, "retired agency sets no longer in use dropped");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot tell which agency sets are in use"),
        }
    }

    fn start(
        self: &Arc<Self>,
        link: Arc<AgencyLink>,
        batch: Vec<(ClaimedTask, Arc<InquiryRecord>)>,
        lease_until_ms: i64,
        reserved: Option<OwnedSemaphorePermit>,
    ) {
        let this = self.clone();
        // The agency's own bound is its stack's (busy: the tasks are given
        // back); this is the dispatcher's bound across agencies.
        let permit = match reserved {
            Some(p) => Ok(p),
            None => self.permits.clone().try_acquire_owned(),
        };
        let Ok(permit) = permit else {
            // No room: give the tasks back; they are due again at once, and
            // claimed when there is room.
            tokio::spawn(async move {
                for (task, _) in batch {
                    this.release(&task, now_ms()).await;
                }
                this.handle.wake();
            });
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let agency = &link;
            if batch
                .first()
                .is_some_and(|(t, _)| t.state == TaskState::Queued)
            {
                this.send_batch(agency, batch, lease_until_ms).await;
            } else {
                for (task, inquiry) in batch {
                    let span = task_span(&task);
                    this.poll(agency, task, inquiry, lease_until_ms)
                        .instrument(span)
                        .await;
                }
            }
            // A round only when one may find something: most exchanges
            // end with every task answered.
            if this.round_wanted.swap(false, Ordering::AcqRel) {
                this.handle.wake();
            }
        });
    }

    /// The agency's inquiry stack (its runtime's): retried within
    /// `dispatcher.max_attempts` with a backoff from `dispatcher.retry_base_ms`.
    fn stack(&self, link: &AgencyLink) -> AgencyService {
        link.runtime.inquiry_stack()
    }

    /// The message's deadline, retries and retry window: retries stay
    /// within the deadline and within the lease (an attempt must be able to
    /// end before the lease does).
    fn bound(
        &self,
        call: &mut AgencyCall,
        agency: &Agency,
        deadline_ms: i64,
        retries: i64,
        lease_until_ms: i64,
    ) {
        let timeout_ms = agency.config.limits.timeout_ms as i64;
        call.deadline = instant_at(deadline_ms);
        call.retries = retries.clamp(0, i64::from(u32::MAX)) as u32;
        call.retry_until = instant_at(deadline_ms.min(lease_until_ms - timeout_ms));
    }

    async fn send_batch(
        &self,
        link: &AgencyLink,
        batch: Vec<(ClaimedTask, Arc<InquiryRecord>)>,
        lease_until_ms: i64,
    ) {
        let agency = &*link.agency;
        let mut items: Vec<(ClaimedTask, Arc<InquiryRecord>, InquiryRequest)> = Vec::new();
        let mut court: Option<Court> = None;
        for (task, inquiry) in batch {
            match stored_request(&inquiry, &task.request_number) {
                Ok((request, c)) => {
                    court.get_or_insert(c);
                    items.push((task, inquiry, request));
                }
                Err(e) => {
                    self.finish(Some(&*link.runtime), &task, failed(AgencyStatus::Error, &e))
                        .await
                }
            }
        }
        let Some(court) = court else { return };
        let envelope = Envelope {
            court,
            batch_number: format!("P{}", uuid::Uuid::now_v7().simple()),
            callback_url: Some(format!(
                "{}/v1/callbacks/{}",
                self.public_url.trim_end_matches('/'),
                agency.config.id
            )),
        };
        let requests: Vec<InquiryRequest> = items.iter().map(|(_, _, r)| r.clone()).collect();
        let wire = match agency.dialect.inquiry_request(&envelope, &requests) {
            Ok(w) => w,
            Err(e) => {
                for (task, _, _) in &items {
                    self.finish(
                        Some(&*link.runtime),
                        task,
                        failed(AgencyStatus::Error, &e.to_string()),
                    )
                    .await;
                }
                return;
            }
        };
        // Audit before dispatch: the audit layer commits every item's
        // outbound record before each attempt leaves.
        // The answer's rows are committed with the results made of it.
        let audit = Arc::new(
            MessageAudit::new(
                self.audit.clone(),
                items
                    .iter()
                    .map(|(task, inquiry, request)| agency_record(agency, inquiry, task, request))
                    .collect(),
                "inquiry.send",
                "inquiry.reply",
                wire.body.clone(),
            )
            .deferring_replies(),
        );
        let mut call = AgencyCall::new(
            &agency.config.id,
            "inquiry.send",
            &envelope.batch_number,
            wire,
            audit.clone(),
        );
        call.items = items.len();
        if let [(_, inquiry, _)] = items.as_slice() {
            call.inquiry = Some(inquiry.id.clone());
        }
        let deadline = items
            .iter()
            .map(|(_, i, _)| i.deadline_at_ms)
            .min()
            .unwrap_or(i64::MAX);
        // The store's claim count bounds retries across restarts: a task
        // claimed again after a crash has fewer left.
        let retries = items
            .iter()
            .map(|(t, _, _)| self.settings.max_attempts - t.attempts)
            .min()
            .unwrap_or(0);
        self.bound(&mut call, agency, deadline, retries, lease_until_ms);
        let sent_at = now_ms();
        let result = match exchange(self.stack(link), call).await {
            Exchanged::Answered(reply) => Ok(reply),
            Exchanged::NoAnswer(e) => Err(e),
            Exchanged::Later {
                due_at_ms,
                refusal: Some(refusal),
            } => {
                for (task, inquiry, _) in &items {
                    let span = task_span(task);
                    self.send_refused(task, inquiry, refusal, due_at_ms, link)
                        .instrument(span)
                        .await;
                }
                return;
            }
            Exchanged::Later {
                due_at_ms,
                refusal: None,
            } => {
                for (task, _, _) in &items {
                    self.release(task, due_at_ms).await;
                }
                return;
            }
        };
        let outcomes: Vec<Result<InquiryOutcome, Failure>> = match &result {
            Err(e) => items.iter().map(|_| Err(transport_failure(e))).collect(),
            Ok(reply) => match agency.dialect.inquiry_reply(&requests, wire_reply(reply)) {
                Err(e) => items.iter().map(|_| Err(reply_failure(&e))).collect(),
                Ok(per_item) => per_item
                    .into_iter()
                    .map(|ItemOutcome { outcome, .. }| outcome.map_err(|e| reply_failure(&e)))
                    .collect(),
            },
        };
        if result.is_ok() && outcomes.iter().any(unreadable) {
            link.runtime.recorder.error(ErrorKind::Malformed);
        }
        let latency = result.as_ref().map(|r| r.latency.as_millis() as i64).ok();
        let recorded = audit.take_recorded();
        for ((task, _, _), outcome) in items.iter().zip(outcomes) {
            let update = update_for(agency, outcome, Some(sent_at), latency, now_ms());
            self.finish_after(Some(&*link.runtime), task, update, recorded.clone())
                .instrument(task_span(task))
                .await;
        }
    }

    /// What a refusal by the agency's stack makes of a task to send: a
    /// quota refusal waits for the quota (`rate_limited` past the
    /// deadline), an open breaker is `circuit_open`, a busy agency gives
    /// the task back for later.
    async fn send_refused(
        &self,
        task: &ClaimedTask,
        inquiry: &InquiryRecord,
        refusal: Refusal,
        due: i64,
        link: &AgencyLink,
    ) {
        let runtime = Some(&*link.runtime);
        match refusal {
            Refusal::RateLimited { .. } => {
                if due >= inquiry.deadline_at_ms {
                    let detail =
                        "the agency's quota (rate_per_second) left no room before the deadline";
                    self.finish(runtime, task, failed(AgencyStatus::RateLimited, detail))
                        .await;
                } else {
                    self.defer(task, due, QUOTA_WAIT).await;
                }
            }
            Refusal::CircuitOpen { retry_in } => {
                let detail = match retry_in {
                    Some(d) => format!(
                        "circuit open: the agency failed {} times in a row; asked again in {} s",
                        link.config().limits.breaker_failures,
                        d.as_secs() + 1
                    ),
                    None => "circuit open: a probe to the agency is under way".to_owned(),
                };
                self.finish(runtime, task, failed(AgencyStatus::CircuitOpen, &detail))
                    .await;
            }
            Refusal::Busy => self.release(task, due).await,
        }
    }

    async fn poll(
        &self,
        link: &AgencyLink,
        task: ClaimedTask,
        inquiry: Arc<InquiryRecord>,
        lease_until_ms: i64,
    ) {
        let agency = &*link.agency;
        let wire = match agency
            .dialect
            .poll_request(&task.request_number, task.ticket.as_deref())
        {
            Ok(w) => w,
            Err(e) => {
                let failure = failed(AgencyStatus::Error, &e.to_string());
                self.finish(Some(&*link.runtime), &task, failure).await;
                return;
            }
        };
        let request = match stored_request(&inquiry, &task.request_number) {
            Ok((r, _)) => r,
            Err(e) => {
                let failure = failed(AgencyStatus::Error, &e);
                self.finish(Some(&*link.runtime), &task, failure).await;
                return;
            }
        };
        let audit = Arc::new(
            MessageAudit::new(
                self.audit.clone(),
                vec![agency_record(agency, &inquiry, &task, &request)],
                "inquiry.poll",
                "inquiry.poll_reply",
                format!("{} {}", wire.method.as_str(), wire.path).into_bytes(),
            )
            .deferring_replies(),
        );
        let mut call = AgencyCall::new(
            &agency.config.id,
            "inquiry.poll",
            &task.request_number,
            wire,
            audit.clone(),
        );
        call.inquiry = Some(inquiry.id.clone());
        // A poll is a fresh read each time: its own retries.
        let retries = self.settings.max_attempts - 1;
        self.bound(
            &mut call,
            agency,
            inquiry.deadline_at_ms,
            retries,
            lease_until_ms,
        );
        let result = match exchange(self.stack(link), call).await {
            Exchanged::Answered(reply) => Ok(reply),
            Exchanged::NoAnswer(e) => Err(e),
            // The agency holds the request: ask again once it may be asked.
            Exchanged::Later {
                due_at_ms,
                refusal: Some(Refusal::RateLimited { .. }),
            } => {
                self.defer(&task, due_at_ms, QUOTA_WAIT).await;
                return;
            }
            Exchanged::Later {
                due_at_ms,
                refusal: Some(Refusal::CircuitOpen { .. }),
            } => {
                self.defer(
                    &task,
                    due_at_ms,
                    "circuit open: the result is fetched once the agency may be asked again",
                )
                .await;
                return;
            }
            Exchanged::Later { due_at_ms, .. } => {
                self.release(&task, due_at_ms).await;
                return;
            }
        };
        let outcome = match &result {
            Err(e) => Err(transport_failure(e)),
            Ok(reply) => agency
                .dialect
                .poll_reply(&task.request_number, wire_reply(reply))
                .map_err(|e| reply_failure(&e)),
        };
        if result.is_ok() && unreadable(&outcome) {
            link.runtime.recorder.error(ErrorKind::Malformed);
        }
        let now = now_ms();
        let latency = task.sent_at_ms.map(|s| now - s);
        let update = update_for(agency, outcome, task.sent_at_ms, latency, now);
        self.finish_after(Some(&*link.runtime), &task, update, audit.take_recorded())
            .await;
    }

    /// Stores a step's result and completes the inquiry when this was its
    /// last unfinished task. The outcome is counted in the agency's
    /// metrics and its runtime's recorder (none for an agency no longer
    /// configured: its metrics only).
    async fn finish(
        &self,
        runtime: Option<&AgencyRuntime>,
        task: &ClaimedTask,
        update: TaskUpdate,
    ) {
        self.finish_after(runtime, task, update, Vec::new()).await
    }

    /// As `finish`, for a result made of an answer whose rows were given to
    /// the journal without waiting (`recorded`): it is stored with them or
    /// after them, and not at all when they could not be recorded.
    async fn finish_after(
        &self,
        runtime: Option<&AgencyRuntime>,
        task: &ClaimedTask,
        update: TaskUpdate,
        recorded: Vec<Ticket>,
    ) {
        if let TaskState::Finished(status) = update.state {
            match runtime {
                Some(runtime) => {
                    runtime.metrics.outcome(status, update.latency_ms);
                    if status == AgencyStatus::Refused {
                        runtime.recorder.error(ErrorKind::Refused);
                    }
                }
                None => AgencyMetrics::of(&task.agency).outcome(status, update.latency_ms),
            }
        }
        if matches!(update.state, TaskState::Polling | TaskState::Queued) {
            // Due again later: the next round must know.
            self.round_wanted.store(true, Ordering::Release);
        }
        let result = TaskResult {
            inquiry_id: task.inquiry_id.clone(),
            agency: task.agency.clone(),
            update,
        };
        match self.audit.finish_after(&self.owner, result, recorded).await {
            Ok(Finished {
                stored: true,
                completed,
            }) => {
                if completed {
                    self.completed(&task.inquiry_id).await;
                }
            }
            Ok(Finished { stored: false, .. }) => tracing::warn!(
                agency = %task.agency,
                inquiry = %task.inquiry_id,
                "lease lost before the result was stored; another claimant will redo the step"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot store a task's result; its lease will expire and the step will be redone")
            }
        }
    }

    /// Puts a task back to wait until `due_at_ms`, saying why.
    async fn defer(&self, task: &ClaimedTask, due_at_ms: i64, detail: &str) {
        self.give_back(task, due_at_ms, Some(detail)).await;
    }

    async fn release(&self, task: &ClaimedTask, due_at_ms: i64) {
        self.give_back(task, due_at_ms, None).await;
    }

    async fn give_back(&self, task: &ClaimedTask, due_at_ms: i64, detail: Option<&str>) {
        self.round_wanted.store(true, Ordering::Release);
        let change = Change::Release {
            owner: self.owner.clone(),
            of: Leased::Task {
                inquiry_id: task.inquiry_id.clone(),
                agency: task.agency.clone(),
            },
            due_at_ms,
            detail: detail.map(str::to_owned),
        };
        if let Err(e) = self.audit.update(change).await {
            tracing::error!(error = %e, "cannot give a task back; its lease will expire");
        }
    }

    /// Tells whoever waits that the inquiry is complete (its caller's
    /// callback was queued by the transaction that completed it).
    async fn completed(&self, inquiry_id: &str) {
        crate::metrics::global().inquiries_completed.inc();
        self.handle.completed(inquiry_id);
    }
}

impl crate::worker::LeasedWork for Dispatcher {
    const NAME: &'static str = "dispatcher";

    async fn round(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        self.claim_round().await
    }

    /// Work that cannot start (no permit left, globally or at its agency)
    /// waits for an exchange to end, which wakes the loop. So does work
    /// the last round left for want of room (`round_wanted`): then more is
    /// due now, and the store is not asked when (a question that reads
    /// every unfinished task, tens of thousands while a large batch runs).
    async fn next_due_ms(&self) -> Result<Option<i64>, crate::store::StoreError> {
        if self.permits.available_permits() == 0 || self.round_wanted.load(Ordering::Acquire) {
            return Ok(None);
        }
        self.store.next_due_ms(&self.busy_agencies()).await
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(self.settings.idle_tick_ms)
    }

    fn woken(&self) -> &Notify {
        &self.handle.wake
    }
}

impl Dispatcher {
    /// Queues the completion callbacks still owed, and clears those of
    /// callers that take none. The journal queues each in the transaction
    /// that completes its inquiry; owed ones are left by a completion whose
    /// callback could not be made then, or by a gateway of an older
    /// version.
    async fn queue_owed_callbacks(&self, now: i64) {
        let callers = self.notifier.callers();
        let drop = Change::DropUnwantedCallbacks {
            callers: callers.clone(),
        };
        if let Err(e) = self.audit.update(drop).await {
            tracing::warn!(error = %e, "cannot clear callbacks nobody takes; retrying");
            return;
        }
        if callers.is_empty() {
            return;
        }
        let owed = match self
            .store
            .inquiries_owing_callbacks(&callers, now - OWED_CALLBACK_GRACE_MS, 100)
            .await
        {
            Ok(owed) => owed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for owed callbacks; retrying");
                return;
            }
        };
        for inquiry_id in owed {
            if let Err(e) = self.queue_callback(&inquiry_id, now).await {
                tracing::warn!(error = %e, inquiry = %inquiry_id, "cannot queue an owed completion callback; retrying");
                return;
            }
        }
    }

    /// Builds the inquiry's `inquiry.completed` callback as it stands and
    /// queues it, unless another instance did.
    async fn queue_callback(
        &self,
        inquiry_id: &str,
        now: i64,
    ) -> Result<(), crate::store::StoreError> {
        let Some(record) = self.store.inquiry(inquiry_id).await? else {
            return Ok(());
        };
        if !self.notifier.takes_callbacks(&record.caller) {
            return Ok(());
        }
        let tasks = self.store.tasks(inquiry_id).await?;
        let view = crate::inquiry::view(&record, &tasks)
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
        let resource = serde_json::to_value(&view)
            .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
        if let Some(item) = self.notifier.event(
            &record.caller,
            "inquiry.completed",
            inquiry_id,
            &resource,
            now,
        ) {
            let owed = Change::QueueOwed {
                inquiry_id: inquiry_id.to_owned(),
                item: Box::new(item),
            };
            self.audit.update(owed).await?;
        }
        Ok(())
    }
}

/// What an agency's answer (or failure) makes of its task.
pub fn update_for(
    agency: &Agency,
    outcome: Result<InquiryOutcome, Failure>,
    sent_at_ms: Option<i64>,
    latency_ms: Option<i64>,
    now: i64,
) -> TaskUpdate {
    let base = TaskUpdate {
        state: TaskState::Queued,
        detail: None,
        ticket: None,
        due_at_ms: now,
        sent_at_ms,
        latency_ms,
        result: None,
    };
    match outcome {
        Ok(InquiryOutcome::Answered { assets }) => TaskUpdate {
            state: TaskState::Finished(AgencyStatus::Answered),
            result: Some(assets),
            ..base
        },
        Ok(InquiryOutcome::NoRecord) => TaskUpdate {
            state: TaskState::Finished(AgencyStatus::NoRecord),
            ..base
        },
        Ok(InquiryOutcome::Refused { reason }) => TaskUpdate {
            state: TaskState::Finished(AgencyStatus::Refused),
            detail: Some(reason),
            ..base
        },
        Ok(InquiryOutcome::Pending { ticket })
            if agency.dialect.interaction() == Interaction::Callback =>
        {
            TaskUpdate {
                state: TaskState::Awaiting,
                detail: Some("accepted by the agency; waiting for it to push its result".into()),
                ticket,
                latency_ms: None,
                ..base
            }
        }
        Ok(InquiryOutcome::Pending { ticket }) => TaskUpdate {
            state: TaskState::Polling,
            detail: Some("accepted by the agency; waiting for its result".into()),
            ticket,
            due_at_ms: now + agency.config.poll_interval_ms as i64,
            latency_ms: None,
            ..base
        },
        Err(Failure { status, detail }) => TaskUpdate {
            state: TaskState::Finished(status),
            detail: Some(detail),
            ..base
        },
    }
}

/// Whether an answer's outcome is that its dialect could not read it.
fn unreadable(outcome: &Result<InquiryOutcome, Failure>) -> bool {
    matches!(outcome, Err(f) if f.status == AgencyStatus::BadReply)
}

/// A failed step: the agency status it leaves and why.
pub struct Failure {
    pub status: AgencyStatus,
    pub detail: String,
}

fn failed(status: AgencyStatus, detail: &str) -> TaskUpdate {
    TaskUpdate {
        state: TaskState::Finished(status),
        detail: Some(detail.to_owned()),
        ticket: None,
        due_at_ms: now_ms(),
        sent_at_ms: None,
        latency_ms: None,
        result: None,
    }
}

fn transport_failure(e: &TransportError) -> Failure {
    let status = match e {
        TransportError::Timeout(_) => AgencyStatus::Timeout,
        TransportError::TooLarge(_) => AgencyStatus::BadReply,
        TransportError::Connect(_) | TransportError::Http(_) => AgencyStatus::Error,
    };
    Failure {
        status,
        detail: e.to_string(),
    }
}

pub fn reply_failure(e: &ReplyError) -> Failure {
    let status = match e {
        ReplyError::Agency { status: 429, .. } => AgencyStatus::RateLimited,
        ReplyError::Agency { .. } => AgencyStatus::Error,
        ReplyError::Malformed(_) => AgencyStatus::BadReply,
    };
    Failure {
        status,
        detail: e.to_string(),
    }
}

fn wire_reply(reply: &HttpReply) -> WireReply<'_> {
    WireReply {
        status: reply.status,
        content_type: reply.content_type.as_deref(),
        body: &reply.body,
    }
}

/// The audit fields every record about one agency task shares.
fn agency_record(
    agency: &Agency,
    inquiry: &InquiryRecord,
    task: &ClaimedTask,
    request: &InquiryRequest,
) -> AuditRecord {
    AuditRecord {
        agency: Some(agency.config.id.clone()),
        caller: Some(inquiry.caller.clone()),
        officers: officer_labels(&request.officers),
        case_number: Some(inquiry.case_number.clone()),
        subject: Some(inquiry.subject.identifier().to_owned()),
        inquiry_id: Some(inquiry.id.clone()),
        request_number: Some(task.request_number.clone()),
        ..AuditRecord::default()
    }
}

/// The span of one task's step: the inquiry, the agency, the request
/// number (never the subject). Debug level: one per agency call.
fn task_span(task: &ClaimedTask) -> tracing::Span {
    tracing::debug_span!(
        "inquiry",
        inquiry = %task.inquiry_id,
        agency = %task.agency,
        request_number = %task.request_number,
    )
}

/// The instant of a unix-ms time (None: too far off to say).
fn instant_at(at_ms: i64) -> Option<tokio::time::Instant> {
    let wait = Duration::from_millis((at_ms - now_ms()).max(0) as u64);
    tokio::time::Instant::now().checked_add(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_completion_wakes_the_waiters_of_that_inquiry_only() {
        let waiters = Arc::new(Waiters::default());
        let mut first = waiters.wait_for("inq-1");
        let mut also_first = waiters.wait_for("inq-1");
        let mut second = waiters.wait_for("inq-2");
        waiters.completed("inq-1");
        assert!(first.until(soon()).await);
        assert!(also_first.until(soon()).await);
        let now = tokio::time::Instant::now();
        assert!(!second.until(now + Duration::from_millis(20)).await);
        assert_eq!(waiters.lock().len(), 1, "only inq-2 still waited for");
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_nothing_behind() {
        let waiters = Arc::new(Waiters::default());
        let kept = waiters.wait_for("inq-1");
        drop(waiters.wait_for("inq-1"));
        assert_eq!(waiters.lock().get("inq-1").map(Vec::len), Some(1));
        drop(kept);
        assert!(waiters.lock().is_empty());
        // A completion nobody waits for is no error.
        waiters.completed("inq-1");
    }
}
