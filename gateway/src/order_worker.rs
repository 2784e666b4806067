//! The order worker: delivers control orders exactly once, watches waiting
//! measures, marks lapsed ones expired and warns of coming expiries, moves
//! freeze plans on, and delivers callbacks to callers.
//!
//! Exactly once, without trusting memory:
//! 1. an order is claimed from the store with a lease (several gateways can
//!    share one database);
//! 2. before its message goes out, the outbound audit record commits and the
//!    order is marked `query`: from then on, whatever happens (timeout,
//!    crash, garbage reply), the next step asks the agency about the
//!    request number before anything else;
//! 3. the agency answers the state of that request number: never seen (send
//!    it, with the same request number), pending, or decided;
//! 4. a control message is never sent again blindly; agencies deduplicate
//!    by request number besides.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use adapters::agency::china_time_label;
use adapters::control::{
    ControlAction, ControlOutcome, ControlRequest, ControlStatus, DocumentAck, DocumentRef,
};
use adapters::dialect::{Envelope, WireReply, WireRequest};
use chrono::Days;
use tokio::sync::{Notify, Semaphore, watch};

use crate::agencies::{AgencyLink, AgencySets};
use crate::audit::{AuditLog, AuditRecord, Direction, Ticket};
use crate::clock::Clock;
use crate::config::OrderSettings;
use crate::inquiry::officer_labels;
use crate::metrics::recent::ErrorKind;
use crate::notify::Notifier;
use crate::order::{self, stored_request};
use crate::plan;
use crate::resilience::audit::MessageAudit;
use crate::resilience::stack::{Exchanged, exchange};
use crate::resilience::{AgencyCall, Refusal};
use crate::runtime::AgencyRuntime;
use crate::store::{
    Applied, Change, Leased, MeasureEffect, OrderPhase, OrderProgress, OrderRecord, OrderStatus,
    OutboxRecord, SaveOrder, Store,
};
use crate::transport::HttpReply;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What the API needs of the worker: a way to wake it.
#[derive(Debug, Clone, Default)]
pub struct OrderWorkerHandle {
    wake: Arc<Notify>,
}

impl OrderWorkerHandle {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

pub struct OrderWorker {
    pub(crate) owner: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) audit: AuditLog,
    agencies: Arc<AgencySets>,
    pub(crate) settings: OrderSettings,
    pub(crate) clock: Clock,
    pub(crate) notifier: Notifier,
    permits: Arc<Semaphore>,
    handle: OrderWorkerHandle,
    last_sweep_ms: AtomicI64,
    lease_grace_ms: i64,
}

impl OrderWorker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        audit: AuditLog,
        agencies: Arc<AgencySets>,
        settings: OrderSettings,
        clock: Clock,
        notifier: Notifier,
        lease_grace_secs: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            owner: format!("gw-{}", uuid::Uuid::now_v7().simple()),
            store,
            audit,
            agencies,
            permits: Arc::new(Semaphore::new(settings.max_in_flight)),
            settings,
            clock,
            notifier,
            handle: OrderWorkerHandle::default(),
            last_sweep_ms: AtomicI64::new(0),
            lease_grace_ms: lease_grace_secs as i64 * 1000,
        })
    }

    pub fn handle(&self) -> OrderWorkerHandle {
        self.handle.clone()
    }

    /// Runs until `stop` turns true, in the leased-worker loop.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        crate::worker::run(self, stop).await
    }

    /// One pass: the expiry sweep when due, then plans, orders and
    /// outbox deliveries claimed and started.
    async fn claim_round(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        let now = now_ms();
        if now - self.last_sweep_ms.load(Ordering::Relaxed) >= self.settings.expiry_sweep_ms as i64
        {
            self.last_sweep_ms.store(now, Ordering::Relaxed);
            self.sweep_expiries(now).await?;
        }
        // Plans first: the orders they create are claimed below.
        let plans = self
            .store
            .claim_due_plans(&self.owner, now, now + 60_000, 16)
            .await?;
        for p in plans {
            plan::advance(self, p).await;
        }
        let available = self.permits.available_permits();
        if available > 0 {
            let lease_ms = self
                .agencies
                .all_links()
                .iter()
                .map(|a| a.config().limits.timeout_ms)
                .max()
                .unwrap_or(10_000) as i64
                * 2
                + self.lease_grace_ms;
            let claimed = self
                .store
                .claim_due_orders(&self.owner, now, now + lease_ms, available as i64)
                .await?;
            for order in claimed {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                    self.release(&order, now, None).await;
                    continue;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    this.step(order).await;
                    this.handle.wake();
                });
            }
        }
        let deliveries = self
            .store
            .claim_outbox(&self.owner, now, now + 60_000, 32)
            .await?;
        for item in deliveries {
            let this = self.clone();
            tokio::spawn(async move {
                this.notifier.deliver(&this.audit, &this.owner, item).await;
            });
        }
        Ok(())
    }

    /// Marks lapsed measures expired and warns of those about to lapse.
    async fn sweep_expiries(&self, now: i64) -> Result<(), crate::store::StoreError> {
        let today = self.clock.today();
        // Each lapsed measure's callback is made by the journal's
        // notifier, in the transaction that expires it.
        let change = Change::ExpireOrders {
            today: today.format("%Y-%m-%d").to_string(),
        };
        let Applied::Expired(expired) = self.audit.update(change).await? else {
            return Err(crate::store::StoreError::Corrupt(
                "the journal gave an expiry another change's receipt".into(),
            ));
        };
        for o in &expired {
            tracing::info!(order = %o.id, agency = %o.agency, end = ?o.measure_end, "measure lapsed");
            let _ = self
                .audit
                .record(AuditRecord {
                    direction: Some(Direction::Internal),
                    caller: Some(o.caller.clone()),
                    case_number: Some(o.case_number.clone()),
                    subject: Some(o.subject.identifier().to_owned()),
                    agency: Some(o.agency.clone()),
                    action: "order.expired".into(),
                    inquiry_id: Some(o.id.clone()),
                    request_number: Some(o.request_number.clone()),
                    status: Some("expired".into()),
                    ..AuditRecord::default()
                })
                .await;
        }
        let horizon = today
            .checked_add_days(Days::new(u64::from(self.settings.expiry_warning_days)))
            .unwrap_or(today);
        let due = self
            .store
            .orders_to_warn(&horizon.format("%Y-%m-%d").to_string(), 500)
            .await?;
        for o in due {
            let Some(end) = o.measure_end.clone() else {
                continue;
            };
            let mut resource = order::view(&o);
            if let Some(map) = resource.as_object_mut() {
                map.insert("expires_on".into(), end.clone().into());
            }
            let item = self
                .notifier
                .event(&o.caller, "order.expiring", &o.id, &resource, now);
            let warned = Change::MarkWarned {
                id: o.id.clone(),
                end_date: end.clone(),
                notify: item.map(Box::new),
            };
            self.audit.update(warned).await?;
            tracing::info!(order = %o.id, end = %end, "measure ends soon: caller warned");
        }
        Ok(())
    }

    /// One step of one claimed order.
    async fn step(&self, order: OrderRecord) {
        let registry = self.agencies.current();
        let Some(link) = registry.get(&order.agency).cloned() else {
            if order.phase == OrderPhase::Send && order.send_attempts == 0 {
                self.fail(
                    &order,
                    "the agency is no longer configured; nothing was sent",
                )
                .await;
            } else {
                // It may have reached the agency: keep asking once the
                // agency is configured again.
                self.release(
                    &order,
                    now_ms() + self.settings.max_retry_ms as i64,
                    Some("the agency is no longer configured; its answer is still awaited"),
                )
                .await;
            }
            return;
        };
        if let Some(hours) = &link.config().business_hours {
            let at = chrono::Utc::now();
            let opening = hours.next_opening(at);
            if opening > at {
                let detail = format!(
                    "waiting for the agency's business hours ({}); next opening {}",
                    hours.describe(),
                    china_time_label(opening)
                );
                self.release(&order, opening.timestamp_millis(), Some(&detail))
                    .await;
                return;
            }
        }
        let (request, court) = match stored_request(&order) {
            Ok(v) => v,
            Err(e) => {
                self.fail(&order, &e).await;
                return;
            }
        };
        if order.phase == OrderPhase::Send {
            self.send(&link, order, request, court).await;
        } else {
            self.query(&link, order, request).await;
        }
    }

    async fn send(
        &self,
        link: &AgencyLink,
        order: OrderRecord,
        request: ControlRequest,
        court: adapters::model::Court,
    ) {
        let agency = &*link.agency;
        let envelope = Envelope {
            court,
            batch_number: order.request_number.clone(),
            callback_url: None,
        };
        let wire = match agency.dialect.control_request(&envelope, &request) {
            Ok(w) => w,
            Err(e) => {
                self.fail(&order, &e.to_string()).await;
                return;
            }
        };
        let attempts = order.send_attempts + 1;
        // With the outbound record, before the message leaves: the order
        // is marked `query`, so whatever happens next, the agency is asked
        // about the request number before anything is sent again. A lease
        // lost meanwhile sends nothing.
        let mark = {
            let owner = self.owner.clone();
            let id = order.id.clone();
            let lease_ms = agency.config.limits.timeout_ms as i64 + self.settings.retry_ms as i64;
            move |_attempt: u32| Change::MarkSending {
                owner: owner.clone(),
                id: id.clone(),
                send_attempts: attempts,
                query_due_ms: now_ms() + lease_ms,
            }
        };
        let audit = MessageAudit::new(
            self.audit.clone(),
            vec![audit_fields(&order, &request)],
            &format!("order.{}", order.action.as_str()),
            "order.reply",
            wire.body.clone(),
        )
        .with_outbound(Box::new(mark))
        .deferring_replies();
        let sent = OrderRecord {
            phase: OrderPhase::Query,
            status: OrderStatus::Dispatched,
            send_attempts: attempts,
            ..order.clone()
        };
        let action = format!("order.{}", order.action.as_str());
        let outcome = self
            .exchange(&link.runtime, &sent, &action, wire, audit, |reply| {
                agency.dialect.control_reply(&request, reply)
            })
            .await;
        if let Some((outcome, after)) = outcome {
            self.apply(&sent, outcome, after).await;
        }
    }

    async fn query(&self, link: &AgencyLink, order: OrderRecord, request: ControlRequest) {
        let agency = &*link.agency;
        let wire = match agency
            .dialect
            .control_poll_request(&order.request_number, order.ticket.as_deref())
        {
            Ok(w) => w,
            Err(e) => {
                // Cannot ask: the order stays where it is, visibly.
                self.release(
                    &order,
                    now_ms() + self.settings.max_retry_ms as i64,
                    Some(&format!("cannot ask the agency about this order: {e}")),
                )
                .await;
                return;
            }
        };
        let action = match order.phase {
            OrderPhase::Poll => "order.poll",
            OrderPhase::Watch => "order.watch",
            _ => "order.query",
        };
        let audit = MessageAudit::new(
            self.audit.clone(),
            vec![audit_fields(&order, &request)],
            action,
            &format!("{action}_reply"),
            format!("{} {}", wire.method.as_str(), wire.path).into_bytes(),
        )
        .deferring_replies();
        let outcome = self
            .exchange(&link.runtime, &order, action, wire, audit, |reply| {
                agency.dialect.control_poll_reply(&request, reply)
            })
            .await;
        if let Some((outcome, after)) = outcome {
            self.apply(&order, outcome, after).await;
        }
    }

    /// Sends a message through the agency's control stack (the audit layer
    /// records it first and records the reply), and decodes the answer.
    /// None when the stack refused the message, could not record it, or
    /// could not record its answer: the order is given back to be tried
    /// again (a send whose `query` mark committed is asked about next, never
    /// sent blindly), and no answer is used. With the outcome come the
    /// answer's rows given to the journal without waiting: what is made of
    /// the answer is stored with them or after them.
    async fn exchange(
        &self,
        runtime: &AgencyRuntime,
        order: &OrderRecord,
        action: &str,
        wire: WireRequest,
        audit: MessageAudit,
        decode: impl FnOnce(WireReply<'_>) -> Result<ControlOutcome, adapters::dialect::ReplyError>,
    ) -> Option<(Result<ControlOutcome, String>, Vec<Ticket>)> {
        let audit = Arc::new(audit);
        let mut call = AgencyCall::new(
            &order.agency,
            action,
            &order.request_number,
            wire,
            audit.clone(),
        );
        call.order = Some(order.id.clone());
        // The agency's control stack: its concurrency bound (waited for),
        // quota and breaker (an order waits for them, it never fails on
        // them), the audit records, the timeout; never a retry.
        match exchange(runtime.order_stack(), call).await {
            Exchanged::Answered(reply) => {
                let decoded = decode(wire_reply(&reply));
                if matches!(decoded, Err(adapters::dialect::ReplyError::Malformed(_))) {
                    runtime.recorder.error(ErrorKind::Malformed);
                }
                Some((decoded.map_err(|e| e.to_string()), audit.take_recorded()))
            }
            Exchanged::NoAnswer(e) => Some((
                Err(format!("no answer from the agency: {e}")),
                audit.take_recorded(),
            )),
            Exchanged::Later { due_at_ms, refusal } => {
                let detail = matches!(refusal, Some(Refusal::CircuitOpen { .. })).then_some(
                    "circuit open: the agency is asked again once its breaker lets a probe through",
                );
                self.release(order, due_at_ms, detail).await;
                None
            }
        }
    }

    /// Stores what an answer (or its absence) makes of the order.
    /// `after` are the answer's rows given without waiting (`exchange`).
    async fn apply(
        &self,
        order: &OrderRecord,
        outcome: Result<ControlOutcome, String>,
        after: Vec<Ticket>,
    ) {
        let now = now_ms();
        let mut p = OrderProgress::of(order);
        let mut effect = None;
        match outcome {
            Err(detail) => {
                // No usable answer: ask again later. A waiting measure keeps
                // its watch; anything else asks about its request number.
                p.detail = Some(detail);
                if !matches!(order.phase, OrderPhase::Watch | OrderPhase::Poll) {
                    p.phase = OrderPhase::Query;
                }
                p.due_at_ms = now + self.retry_after(order);
            }
            Ok(o) => match o.status {
                ControlStatus::Unknown => {
                    if order.send_attempts >= self.settings.max_send_attempts {
                        p.status = OrderStatus::Failed;
                        p.phase = OrderPhase::Done;
                        p.decided_at_ms = Some(now);
                        p.detail = Some(format!(
                            "the agency has no record of this measure after {} attempts to send \
                             it; last problem: {}",
                            order.send_attempts,
                            order.detail.as_deref().unwrap_or("none recorded")
                        ));
                    } else {
                        // Never received: safe to send, with the same number.
                        p.status = OrderStatus::Accepted;
                        p.phase = OrderPhase::Send;
                        p.detail = Some(
                            "the agency has not received this measure; it is sent (again)".into(),
                        );
                        p.due_at_ms = now
                            + if order.send_attempts == 0 {
                                0
                            } else {
                                self.retry_after(order)
                            };
                    }
                }
                ControlStatus::Pending => {
                    p.status = OrderStatus::Dispatched;
                    p.phase = OrderPhase::Poll;
                    p.ticket = o.ticket.or(p.ticket);
                    p.detail = Some("accepted by the agency; its result comes later".into());
                    p.due_at_ms = now + self.settings.poll_interval_ms as i64;
                }
                status => {
                    let is_measure = order.measure_order == order.id;
                    p.status = OrderStatus::from(status);
                    p.detail = None;
                    p.controlled_fen = o.controlled_fen.map(|f| f.0);
                    p.shortfall_fen = o.shortfall_fen.map(|f| f.0);
                    p.controlled_quantity = o.controlled_quantity;
                    p.shortfall_quantity = o.shortfall_quantity;
                    p.reason = o.reason;
                    p.queue_position = o.queue_position.map(i64::from);
                    if let Some(r) = o.agency_reference {
                        p.agency_reference = Some(r);
                    }
                    let date = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
                    if is_measure {
                        p.measure_start = o.start_date.map(date).or(p.measure_start);
                        p.measure_end = o
                            .end_date
                            .map(date)
                            .or(p.measure_end)
                            .or(order.end_date.clone());
                        // A measure in force keeps a phase only while it
                        // waits in line: then it is looked at again.
                        if status == ControlStatus::Waiting {
                            p.phase = OrderPhase::Watch;
                            p.due_at_ms = now + self.settings.waiting_poll_ms as i64;
                        } else {
                            p.phase = OrderPhase::Done;
                        }
                    } else {
                        p.phase = OrderPhase::Done;
                        if matches!(status, ControlStatus::Applied | ControlStatus::Partial) {
                            effect = effect_of(order, &p, o.end_date.map(date));
                        }
                    }
                    if p.decided_at_ms.is_none() {
                        p.decided_at_ms = Some(now);
                    }
                    if !o.acknowledged_documents.is_empty() {
                        p.documents_mismatch =
                            documents_differ(&order.documents, &o.acknowledged_documents);
                        p.acknowledged_documents = Some(o.acknowledged_documents.clone());
                        if p.documents_mismatch {
                            tracing::warn!(
                                order = %order.id,
                                agency = %order.agency,
                                "the agency acknowledged other documents than were sent"
                            );
                        }
                    }
                }
            },
        }
        let changed = p.status != order.status && p.status.is_decided();
        let mut notify: Vec<OutboxRecord> = if changed {
            let mut shown = order.clone();
            apply_progress(&mut shown, &p, now);
            self.notifier
                .event(
                    &order.caller,
                    "order.updated",
                    &order.id,
                    &order::view(&shown),
                    now,
                )
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        // A release lifts the measure of the freeze or seal it names: that
        // order changes too, and its caller hears of it in the same write.
        if matches!(effect, Some(MeasureEffect::Released)) {
            match self.store.order(&order.measure_order).await {
                Ok(Some(measure)) if !OrderStatus::ENDED.contains(&measure.status) => {
                    let mut shown = measure.clone();
                    shown.status = OrderStatus::Released;
                    shown.phase = OrderPhase::Done;
                    shown.updated_at_ms = now;
                    notify.extend(self.notifier.event(
                        &measure.caller,
                        "order.updated",
                        &measure.id,
                        &order::view(&shown),
                        now,
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, order = %order.id, "cannot read the measure a release lifts; the agency will be asked again");
                    return;
                }
            }
        }
        let save = SaveOrder {
            owner: self.owner.clone(),
            id: order.id.clone(),
            progress: p.clone(),
            effect,
            notify,
        };
        match self.audit.save_order_after(save, after).await {
            Ok(true) => {
                if changed {
                    crate::metrics::count(&crate::metrics::global().orders, p.status.as_str());
                    tracing::info!(
                        order = %order.id,
                        agency = %order.agency,
                        action = order.action.as_str(),
                        status = %p.status,
                        "order decided"
                    );
                }
            }
            Ok(false) => {
                tracing::warn!(order = %order.id, "lease lost before the result was stored; the agency will be asked again")
            }
            Err(e) => {
                tracing::error!(error = %e, order = %order.id, "cannot store an order's result; the agency will be asked again")
            }
        }
    }

    fn retry_after(&self, order: &OrderRecord) -> i64 {
        if order.phase == OrderPhase::Watch {
            return self.settings.waiting_poll_ms as i64;
        }
        let shift = (order.steps - 1).clamp(0, 16) as u32;
        (self.settings.retry_ms.saturating_mul(1 << shift)).min(self.settings.max_retry_ms) as i64
    }

    async fn fail(&self, order: &OrderRecord, detail: &str) {
        tracing::warn!(order = %order.id, detail, "order failed");
        let now = now_ms();
        let mut p = OrderProgress::of(order);
        p.status = OrderStatus::Failed;
        p.phase = OrderPhase::Done;
        p.detail = Some(detail.to_owned());
        p.decided_at_ms = Some(now);
        let mut shown = order.clone();
        apply_progress(&mut shown, &p, now);
        let notify: Vec<OutboxRecord> = self
            .notifier
            .event(
                &order.caller,
                "order.updated",
                &order.id,
                &order::view(&shown),
                now,
            )
            .into_iter()
            .collect();
        let save = SaveOrder {
            owner: self.owner.clone(),
            id: order.id.clone(),
            progress: p,
            effect: None,
            notify,
        };
        if let Err(e) = self.audit.save_order(save).await {
            tracing::error!(error = %e, order = %order.id, "cannot store an order's failure");
        }
    }

    async fn release(&self, order: &OrderRecord, due_at_ms: i64, detail: Option<&str>) {
        let change = Change::Release {
            owner: self.owner.clone(),
            of: Leased::Order {
                id: order.id.clone(),
            },
            due_at_ms,
            detail: detail.map(str::to_owned),
        };
        if let Err(e) = self.audit.update(change).await {
            tracing::error!(error = %e, "cannot release an order; its lease will expire");
        }
    }
}

impl crate::worker::LeasedWork for OrderWorker {
    const NAME: &'static str = "order worker";

    async fn round(self: &Arc<Self>) -> Result<(), crate::store::StoreError> {
        self.claim_round().await
    }

    /// The next order, plan or delivery due, or the next expiry sweep,
    /// whichever comes first.
    async fn next_due_ms(&self) -> Result<Option<i64>, crate::store::StoreError> {
        let sweep =
            self.last_sweep_ms.load(Ordering::Relaxed) + self.settings.expiry_sweep_ms as i64;
        let due = self.store.next_order_work_ms().await.unwrap_or(None);
        Ok(Some(due.map_or(sweep, |d| d.min(sweep))))
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(1_000)
    }

    fn woken(&self) -> &Notify {
        &self.handle.wake
    }
}

/// Whether what the agency acknowledged differs from the documents sent:
/// a document missing, added, or with another digest.
pub fn documents_differ(sent: &[DocumentRef], acknowledged: &[DocumentAck]) -> bool {
    let mut sent: Vec<(String, String)> = sent
        .iter()
        .map(|d| (d.number.clone(), d.sha256.to_ascii_lowercase()))
        .collect();
    let mut acked: Vec<(String, String)> = acknowledged
        .iter()
        .map(|d| (d.number.clone(), d.sha256.to_ascii_lowercase()))
        .collect();
    sent.sort();
    acked.sort();
    sent != acked
}

/// What an applied renewal, release or deduction does to its measure.
fn effect_of(
    order: &OrderRecord,
    p: &OrderProgress,
    answered_end: Option<String>,
) -> Option<MeasureEffect> {
    match order.action {
        ControlAction::Renew | ControlAction::RenewSeal => Some(MeasureEffect::Renewed {
            end_date: answered_end.or(order.end_date.clone())?,
        }),
        ControlAction::Release | ControlAction::ReleaseSeal => Some(MeasureEffect::Released),
        ControlAction::Deduct => Some(MeasureEffect::Deducted {
            amount_fen: p.controlled_fen.or(order.amount_fen)?,
        }),
        ControlAction::Freeze | ControlAction::Seal => None,
    }
}

/// The order as it will read once `p` is stored.
fn apply_progress(o: &mut OrderRecord, p: &OrderProgress, now: i64) {
    o.status = p.status;
    o.phase = p.phase;
    o.controlled_fen = p.controlled_fen;
    o.shortfall_fen = p.shortfall_fen;
    o.controlled_quantity = p.controlled_quantity;
    o.shortfall_quantity = p.shortfall_quantity;
    o.reason = p.reason.clone();
    o.queue_position = p.queue_position;
    o.measure_start = p.measure_start.clone();
    o.measure_end = p.measure_end.clone();
    o.agency_reference = p.agency_reference.clone();
    o.detail = p.detail.clone();
    o.decided_at_ms = p.decided_at_ms;
    o.acknowledged_documents = p.acknowledged_documents.clone();
    o.documents_mismatch = p.documents_mismatch;
    o.updated_at_ms = now;
}

fn wire_reply(reply: &HttpReply) -> WireReply<'_> {
    WireReply {
        status: reply.status,
        content_type: reply.content_type.as_deref(),
        body: &reply.body,
    }
}

fn audit_fields(order: &OrderRecord, request: &ControlRequest) -> AuditRecord {
    AuditRecord {
        caller: Some(order.caller.clone()),
        officers: officer_labels(&request.officers),
        case_number: Some(order.case_number.clone()),
        subject: Some(order.subject.identifier().to_owned()),
        agency: Some(order.agency.clone()),
        inquiry_id: Some(order.id.clone()),
        request_number: Some(order.request_number.clone()),
        ..AuditRecord::default()
    }
}
