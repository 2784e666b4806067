//! Freeze plans: freeze up to an amount across the accounts an inquiry
//! found, one account after another, never more than the amount.
//!
//! A plan sends one freeze at a time. Each asks only for what is still
//! missing once every earlier freeze has answered with what it actually
//! controlled, so the total controlled can never exceed the amount,
//! whatever the banks answer:
//! - partial: the shortfall moves on to the next account;
//! - refused or failed: the next account is asked for the same amount;
//! - slow or in doubt: the plan waits (the order worker learns the outcome
//!   from the bank before anything else is sent);
//! - waiting in line behind another authority: a waiting freeze controls
//!   nothing now but would take effect later, on top of what the plan froze
//!   elsewhere, so the plan releases it at once and moves on. Should that
//!   release fail, the waiting freeze's amount stays reserved: it is
//!   counted as if controlled, and the plan never asks for it again.
//!
//! Accounts are tried largest available balance first (fewest messages,
//! fewest accounts disturbed) unless `orders.plan_account_order` says
//! otherwise; accounts the inquiry showed with nothing available are
//! skipped. Every step is stored before it acts, so a restart resumes the
//! plan where it was: the orders it creates carry idempotency keys made
//! from the plan and the step, and creating one twice returns the first.

use adapters::control::{AssetRef, ControlAction, DocumentRef};
use adapters::ids::CaseNumber;
use adapters::model::{AssetKind, Court, Officer};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::agencies::AgencyRegistry;
use crate::audit::{AuditRecord, Direction};
use crate::config::PlanAccountOrder;
use crate::input;
use crate::inquiry::{
    OfficerBody, SubjectBody, normalise_officers, timestamp, validate_subject, view as inquiry_view,
};
use crate::order::{
    self, DocumentBody, NewOrder, normalise_documents, parse_date, validate_control_officers,
    validate_documents,
};
use crate::order_worker::OrderWorker;
use crate::rules::BrokenRule;
use crate::store::{
    Change, InquiryRecord, InquiryStatus, OrderRecord, OrderStatus, PlanAccount, PlanAccounts,
    PlanProgress, PlanRecord, PlanStatus, SavePlan, SkippedAccount, TaskRecord,
};

/// The kinds of asset a plan freezes: money, one pool.
pub const MONEY_KINDS: [AssetKind; 3] = [
    AssetKind::BankAccount,
    AssetKind::PaymentAccount,
    AssetKind::ProvidentFund,
];

/// `POST /v1/freeze-plans` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "case_number": "(2024)甘0503执1234号",
    "subject": {"kind": "person", "name": "张三", "id_number": "360426199101010071"},
    "officers": [
        {"name": "李明", "work_card_no": "G620503001", "credential_no": "ZX620503001"},
        {"name": "赵强", "work_card_no": "G620503002", "credential_no": "ZX620503002"}
    ],
    "inquiry": "inq_0193c8f0d6a47c21b5e1f0a2b3c4d5e6",
    "amount_fen": 13000000,
    "end_date": "2027-05-26",
    "documents": [
        {"kind": "ruling", "number": "(2024)甘0503执1234号之二",
         "sha256": "9f2c5b1e0a4d7c3b8e6f1a2d4c5b7e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9"},
        {"kind": "assist_notice", "number": "协冻-2",
         "sha256": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"}
    ]
}))]
pub struct PlanBody {
    #[schema(max_length = 64, example = "(2024)甘0503执1234号")]
    pub case_number: String,
    #[serde(deserialize_with = "input::object")]
    pub subject: SubjectBody,
    #[serde(default, deserialize_with = "input::objects")]
    #[schema(min_items = 1, max_items = 10)]
    pub officers: Vec<OfficerBody>,
    /// The completed inquiry whose accounts the plan freezes.
    #[schema(max_length = 64, example = "inq_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub inquiry: String,
    /// The most the plan freezes in total, in fen.
    #[schema(minimum = 1, maximum = 100000000000000_i64)]
    pub amount_fen: i64,
    #[schema(max_length = 10, format = Date, example = "2027-05-26")]
    pub end_date: String,
    #[serde(default, deserialize_with = "input::objects")]
    #[schema(max_items = 2)]
    pub documents: Vec<DocumentBody>,
}

impl input::Normalise for PlanBody {
    fn normalise(&mut self) -> Result<(), BrokenRule> {
        self.case_number = input::text("case_number", &self.case_number, input::CASE_NUMBER_MAX)?;
        self.subject.normalise("subject")?;
        normalise_officers(&mut self.officers)?;
        self.inquiry = input::text("inquiry", &self.inquiry, input::ID_MAX)?;
        input::amount("amount_fen", self.amount_fen)?;
        self.end_date = input::text("end_date", &self.end_date, 16)?;
        normalise_documents(&mut self.documents)
    }
}

/// A checked plan, ready to store.
pub struct NewPlan {
    pub case_number: CaseNumber,
    pub subject: adapters::model::Subject,
    pub officers: Vec<Officer>,
    pub documents: Vec<DocumentRef>,
    pub amount_fen: i64,
    pub end_date: NaiveDate,
    pub accounts: Vec<PlanAccount>,
    /// Accounts found but not tried, with why.
    pub skipped: Vec<SkippedAccount>,
}

impl PlanBody {
    pub fn validate(
        &self,
        today: NaiveDate,
        min_officers: usize,
        caller: &str,
        inquiry: Option<(&InquiryRecord, &[TaskRecord])>,
        agencies: &AgencyRegistry,
        order_by: PlanAccountOrder,
    ) -> Result<NewPlan, BrokenRule> {
        let case_number =
            CaseNumber::parse(&self.case_number).map_err(BrokenRule::InvalidCaseNumber)?;
        let (subject, _) = validate_subject(&self.subject)?;
        let officers = validate_control_officers(&self.officers, min_officers)?;
        let documents = validate_documents(&self.documents)?;
        if self.amount_fen <= 0 {
            return Err(BrokenRule::AmountNotPositive);
        }
        let end_date = parse_date("end_date", &self.end_date)?;
        if end_date < today {
            return Err(BrokenRule::EndBeforeToday {
                today,
                end: end_date,
            });
        }
        let limit = crate::clock::term_end(
            today,
            crate::rules::kind_rules(AssetKind::BankAccount).term_months,
        )
        .unwrap_or(today);
        if end_date > limit {
            return Err(BrokenRule::TermTooLong {
                action: ControlAction::Freeze,
                kind: AssetKind::BankAccount,
                start: today,
                limit,
                end: end_date,
            });
        }
        let Some((inquiry, tasks)) = inquiry.filter(|(i, _)| i.caller == caller) else {
            return Err(BrokenRule::UnknownInquiry {
                id: self.inquiry.clone(),
            });
        };
        if inquiry.case_number != case_number.as_str() {
            return Err(BrokenRule::InquiryOtherCase {
                inquiry_case: inquiry.case_number.clone(),
                case: case_number.to_string(),
            });
        }
        if inquiry.subject.identifier() != subject.identifier() {
            return Err(BrokenRule::InquiryOtherSubject);
        }
        if inquiry.status != InquiryStatus::Completed {
            return Err(BrokenRule::InquiryRunning);
        }
        let view = inquiry_view(inquiry, tasks)
            .map_err(|e| BrokenRule::Inconsistent(format!("stored inquiry unreadable: {e}")))?;
        let mut accounts = Vec::new();
        let mut skipped = Vec::new();
        for asset in &view.assets {
            // Every money-like kind is one pool: deposits, payment
            // accounts, provident funds.
            let Some(kind) = asset
                .get("kind")
                .and_then(Value::as_str)
                .and_then(AssetKind::parse)
                .filter(|k| MONEY_KINDS.contains(k))
            else {
                continue;
            };
            let text = |k: &str| asset.get(k).and_then(Value::as_str).unwrap_or_default();
            let (agency, account_number) = (
                text("agency"),
                text(adapters::control::AssetRef::field_names(kind)[0]),
            );
            let currency = asset
                .get("currency")
                .and_then(Value::as_str)
                .unwrap_or("CNY");
            // What is not frozen; a platform or centre that states only
            // the balance has that much available.
            let available = asset
                .get("available_fen")
                .and_then(Value::as_i64)
                .or_else(|| asset.get("balance_fen").and_then(Value::as_i64));
            let why_not = match agencies.get(agency) {
                None => Some("the agency is no longer configured"),
                Some(l) if !l.config().enabled => Some("the agency is disabled"),
                Some(l)
                    if !l.agency.dialect.supports(ControlAction::Freeze)
                        || !l.agency.dialect.can_query_control() =>
                {
                    Some("the agency takes no freeze orders through the gateway")
                }
                Some(_) if currency != "CNY" => Some("not a CNY account"),
                Some(_) if account_number.is_empty() => Some("no account number"),
                Some(_) if available.is_none_or(|f| f <= 0) => {
                    Some("nothing available on it when the inquiry answered")
                }
                Some(_) => None,
            };
            match why_not {
                Some(reason) => skipped.push(SkippedAccount {
                    agency: agency.to_owned(),
                    account_number: account_number.to_owned(),
                    kind,
                    reason: reason.to_owned(),
                }),
                None => accounts.push(PlanAccount {
                    agency: agency.to_owned(),
                    account_number: account_number.to_owned(),
                    available_fen: available.unwrap_or(0),
                    kind,
                }),
            }
        }
        if order_by == PlanAccountOrder::LargestAvailableFirst {
            // Stable: equal balances keep the inquiry's order.
            accounts.sort_by_key(|a| std::cmp::Reverse(a.available_fen));
        }
        if accounts.is_empty() {
            return Err(BrokenRule::NoAccounts { skipped });
        }
        Ok(NewPlan {
            case_number,
            subject,
            officers,
            documents,
            amount_fen: self.amount_fen,
            end_date,
            accounts,
            skipped,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub fn new_record(
    id: &str,
    caller: &str,
    key: &str,
    body_sha256: &str,
    court: &Court,
    inquiry_id: &str,
    plan: &NewPlan,
    now_ms: i64,
) -> PlanRecord {
    PlanRecord {
        id: id.to_owned(),
        caller: caller.to_owned(),
        idempotency_key: key.to_owned(),
        body_sha256: body_sha256.to_owned(),
        case_number: plan.case_number.as_str().to_owned(),
        subject: plan.subject.clone(),
        officers: plan.officers.clone(),
        court: court.clone(),
        documents: plan.documents.clone(),
        inquiry_id: inquiry_id.to_owned(),
        amount_fen: plan.amount_fen,
        end_date: plan.end_date.format("%Y-%m-%d").to_string(),
        accounts: PlanAccounts {
            skipped: plan.skipped.clone(),
            tried: plan.accounts.clone(),
        },
        next_index: 0,
        status: PlanStatus::Running,
        controlled_fen: 0,
        detail: None,
        due_at_ms: now_ms,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        completed_at_ms: None,
    }
}

/// The plan as the API shows it.
pub fn view(plan: &PlanRecord, orders: &[OrderRecord]) -> Value {
    let accounts = &plan.accounts;
    json!({
        "id": plan.id,
        "status": plan.status,
        "case_number": plan.case_number,
        "subject": {"kind": plan.subject.kind(), "name": plan.subject.name()},
        "inquiry": plan.inquiry_id,
        "amount_fen": plan.amount_fen,
        "controlled_fen": plan.controlled_fen,
        "end_date": plan.end_date,
        "accounts": accounts.tried,
        "skipped_accounts": accounts.skipped,
        "orders": orders.iter().map(order::view).collect::<Vec<_>>(),
        "detail": plan.detail,
        "created_at": timestamp(plan.created_at_ms),
        "updated_at": timestamp(plan.updated_at_ms),
        "completed_at": plan.completed_at_ms.map(timestamp),
    })
}

fn in_flight(o: &OrderRecord) -> bool {
    !o.status.is_decided()
}

/// One look at a claimed plan: wait for an order in flight, release a
/// waiting freeze, send the next freeze, or finish.
pub async fn advance(worker: &OrderWorker, plan: PlanRecord) {
    let now = chrono::Utc::now().timestamp_millis();
    let orders = match worker.store.orders_of_plan(&plan.id).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, plan = %plan.id, "cannot read a plan's orders");
            return;
        }
    };
    let freezes: Vec<&OrderRecord> = orders
        .iter()
        .filter(|o| o.action == ControlAction::Freeze)
        .collect();
    let releases: Vec<&OrderRecord> = orders
        .iter()
        .filter(|o| o.action == ControlAction::Release)
        .collect();
    let mut progress = PlanProgress {
        next_index: plan.next_index,
        status: PlanStatus::Running,
        controlled_fen: plan.controlled_fen,
        detail: None,
        // Woken by its orders' changes; this is only a safety net.
        due_at_ms: now + 60_000,
        completed_at_ms: None,
    };

    let mut waiting_on = None;
    let mut reserved = 0;
    for f in &freezes {
        if in_flight(f) {
            waiting_on = Some(format!("waiting for {} to answer", f.agency));
            continue;
        }
        if f.status != OrderStatus::Waiting
            && !(f.status == OrderStatus::Released && has_release(&releases, f))
        {
            continue;
        }
        match releases
            .iter()
            .find(|r| r.prior_order.as_deref() == Some(&f.id))
        {
            None if f.status == OrderStatus::Waiting => {
                // Lift it before it can take effect on top of the rest.
                match create_order(
                    worker,
                    &plan,
                    release_of(&plan, f),
                    &format!("release:{}", f.id),
                )
                .await
                {
                    Ok(()) => {
                        waiting_on = Some(format!(
                            "releasing the waiting freeze at {} before going on",
                            f.agency
                        ))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, plan = %plan.id, "cannot create a plan's release");
                        waiting_on = Some("retrying a release".into());
                    }
                }
            }
            None => {}
            Some(r) if in_flight(r) => {
                waiting_on = Some(format!("waiting for the release at {}", f.agency));
            }
            Some(r) if r.status.in_force() => {}
            Some(_) => {
                // The release did not take: the waiting freeze may still take
                // effect, so its amount stays reserved.
                reserved += f.amount_fen.unwrap_or(0);
            }
        }
    }
    let controlled: i64 = freezes
        .iter()
        .filter(|f| f.status.in_force())
        .map(|f| f.controlled_fen.unwrap_or(0))
        .sum();
    progress.controlled_fen = controlled;
    if let Some(why) = waiting_on {
        progress.detail = Some(why);
        save(worker, &plan, &progress, &orders, now).await;
        return;
    }
    let missing = plan.amount_fen - controlled - reserved;
    let accounts = &plan.accounts.tried;
    if missing <= 0 {
        progress.status = PlanStatus::Completed;
        progress.completed_at_ms = Some(now);
    } else if let Some(account) = usize::try_from(plan.next_index)
        .ok()
        .and_then(|i| accounts.get(i))
    {
        let step = plan.next_index;
        match create_order(
            worker,
            &plan,
            freeze_of(&plan, account, missing, worker.clock.today()),
            &step.to_string(),
        )
        .await
        {
            Ok(()) => {
                progress.next_index = step + 1;
                progress.detail = Some(format!(
                    "asking {} to freeze {} on {}",
                    account.agency,
                    adapters::model::Fen(missing),
                    account.account_number
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, plan = %plan.id, "cannot create a plan's freeze");
                progress.due_at_ms = now + 2_000;
                progress.detail = Some("retrying the next freeze".into());
            }
        }
    } else {
        progress.status = if controlled > 0 {
            PlanStatus::Partial
        } else {
            PlanStatus::Failed
        };
        progress.completed_at_ms = Some(now);
        progress.detail = Some(format!(
            "the accounts could not supply {} of the amount",
            adapters::model::Fen(missing)
        ));
    }
    save(worker, &plan, &progress, &orders, now).await;
    worker.handle().wake();
}

fn has_release(releases: &[&OrderRecord], f: &OrderRecord) -> bool {
    releases
        .iter()
        .any(|r| r.prior_order.as_deref() == Some(&f.id))
}

async fn save(
    worker: &OrderWorker,
    plan: &PlanRecord,
    progress: &PlanProgress,
    orders: &[OrderRecord],
    now: i64,
) {
    let finished = progress.status != PlanStatus::Running;
    let notify = if finished {
        let shown = PlanRecord {
            status: progress.status,
            controlled_fen: progress.controlled_fen,
            next_index: progress.next_index,
            detail: progress.detail.clone(),
            completed_at_ms: progress.completed_at_ms,
            updated_at_ms: now,
            ..plan.clone()
        };
        worker.notifier.event(
            &plan.caller,
            "freeze_plan.completed",
            &plan.id,
            &view(&shown, orders),
            now,
        )
    } else {
        None
    };
    let change = Change::SavePlan(Box::new(SavePlan {
        owner: worker.owner.clone(),
        id: plan.id.clone(),
        progress: progress.clone(),
        notify,
    }));
    match worker.audit.update_if(change).await {
        Ok(true) if finished => {
            tracing::info!(plan = %plan.id, status = %progress.status, controlled_fen = progress.controlled_fen, "freeze plan finished");
            let _ = worker
                .audit
                .record(AuditRecord {
                    direction: Some(Direction::Internal),
                    caller: Some(plan.caller.clone()),
                    case_number: Some(plan.case_number.clone()),
                    subject: Some(plan.subject.identifier().to_owned()),
                    action: "freeze_plan.finish".into(),
                    inquiry_id: Some(plan.id.clone()),
                    status: Some(progress.status.to_string()),
                    ..AuditRecord::default()
                })
                .await;
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, plan = %plan.id, "cannot store a plan's progress"),
    }
}

fn base_order(
    plan: &PlanRecord,
    action: ControlAction,
    asset: AssetRef,
) -> Result<NewOrder, String> {
    Ok(NewOrder {
        case_number: CaseNumber::parse(&plan.case_number).map_err(|e| e.to_string())?,
        subject: plan.subject.clone(),
        officers: plan.officers.clone(),
        action,
        agency: String::new(),
        asset,
        amount_fen: None,
        quantity: None,
        start_date: None,
        end_date: None,
        prior_order: None,
        measure_order: None,
        prior_request_number: None,
        documents: plan.documents.clone(),
    })
}

fn freeze_of(
    plan: &PlanRecord,
    account: &PlanAccount,
    amount: i64,
    today: NaiveDate,
) -> Result<NewOrder, String> {
    let asset = AssetRef::build(account.kind, |_| Some(account.account_number.as_str()))
        .map_err(|field| format!("a plan's account lacks its {field}"))?;
    Ok(NewOrder {
        agency: account.agency.clone(),
        amount_fen: Some(amount),
        start_date: Some(today),
        end_date: Some(
            NaiveDate::parse_from_str(&plan.end_date, "%Y-%m-%d").map_err(|e| e.to_string())?,
        ),
        ..base_order(plan, ControlAction::Freeze, asset)?
    })
}

fn release_of(plan: &PlanRecord, freeze: &OrderRecord) -> Result<NewOrder, String> {
    Ok(NewOrder {
        agency: freeze.agency.clone(),
        prior_order: Some(freeze.id.clone()),
        measure_order: Some(freeze.id.clone()),
        prior_request_number: Some(freeze.request_number.clone()),
        ..base_order(plan, ControlAction::Release, freeze.asset.clone())?
    })
}

/// Creates a plan's order under a key made of the plan and the step: a
/// repeated step finds the order it created before.
async fn create_order(
    worker: &OrderWorker,
    plan: &PlanRecord,
    order: Result<NewOrder, String>,
    step: &str,
) -> Result<(), String> {
    let order = order?;
    let key = format!("plan:{}:{step}", plan.id);
    // In the turn of the asset and the key, as the API's orders: a step
    // repeated by another instance (after a lost lease) finds the order
    // and audits nothing, and the API's checks on the asset see this one.
    let mut keys = vec![order::idempotency_turn_key("order", &plan.caller, &key)];
    keys.push(order::asset_turn_key(&order.agency, &order.asset));
    let turn = worker
        .store
        .lock_decision(&keys, order::DECISION_WAIT)
        .await
        .map_err(|e| e.to_string())?;
    if worker
        .store
        .order_by_key(&plan.caller, &key)
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        turn.release().await;
        return Ok(());
    }
    let id = format!("ord_{}", uuid::Uuid::now_v7().simple());
    let now = chrono::Utc::now().timestamp_millis();
    let record = order::new_record(
        &id,
        &plan.caller,
        &key,
        "",
        &plan.court,
        &order,
        Some(&plan.id),
        now,
    );
    // The plan acting for its caller: its row and the order are
    // committed together.
    let row = AuditRecord {
        direction: Some(Direction::Internal),
        caller: Some(plan.caller.clone()),
        officers: crate::inquiry::officer_labels(&order.officers),
        case_number: Some(plan.case_number.clone()),
        subject: Some(plan.subject.identifier().to_owned()),
        agency: Some(record.agency.clone()),
        action: format!("freeze_plan.{}", record.action.as_str()),
        inquiry_id: Some(plan.id.clone()),
        request_number: Some(record.request_number.clone()),
        status: Some("accepted".into()),
        body: serde_json::to_vec(&order::view(&record))
            .ok()
            .map(Into::into),
        ..AuditRecord::default()
    };
    let created = worker
        .audit
        .accept(row, Change::Order(Box::new(record)))
        .await;
    turn.release().await;
    match created {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
