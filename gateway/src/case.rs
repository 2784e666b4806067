//! A case's whole picture, as an officer's case view needs it
//! (`GET /v1/cases/{case_number}`): the caller's inquiries under the case
//! with each agency's status line, the assets they found merged into one
//! entry per asset, the measures (freezes and seals) with what needs
//! renewing, and the freeze plans with what each of their orders controls.
//!
//! Built from the store's rows by [`view`], with no I/O; [`read`] reads
//! them for a caller and builds the view, for the API's handler
//! (`api::cases`) and the officers' case page (`console::cases`) alike, so
//! that both show the same thing from the same reads.
//!
//! Assets: one entry per distinct asset, an asset being the agency that
//! holds it, its kind and the fields that name it for a control order
//! (`AssetRef`: account number, unit number, VIN, securities account and
//! security code, payment account, fund account, company credit code).
//! Each is taken from the newest answer that reported it, whichever of
//! the case's inquiries (running or completed) that answer belongs to, an
//! answer pushed or polled late included.

use std::collections::HashMap;

use adapters::control::{AssetRef, ControlAction};
use adapters::model::{AssetKind, Subject, SubjectKind};
use chrono::NaiveDate;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::inquiry::{AgencyView, Progress, timestamp};
use crate::order::{AssetBody, asset_body};
use crate::state::AppState;
use crate::store::{InquiryRecord, InquiryStatus, OrderRecord, PlanRecord, TaskState, TimedTask};

/// How many of a case's inquiries, measures and plans the view holds at
/// most (the newest); `more_*` says when there are more.
pub const INQUIRIES_SHOWN: usize = 100;
pub const MEASURES_SHOWN: usize = 500;
pub const PLANS_SHOWN: usize = 100;

/// Whom a line is about: the identity number masked (the first four and
/// last two characters shown), an organisation's credit code in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SubjectLine {
    #[schema(inline)]
    pub kind: SubjectKind,
    #[schema(example = "张三")]
    pub name: String,
    /// A person's identity number, masked (`3604************71`), or an
    /// organisation's unified social credit code.
    #[schema(example = "3604************71")]
    pub identifier: String,
}

impl SubjectLine {
    pub fn of(subject: &Subject) -> Self {
        Self {
            kind: subject.kind(),
            name: subject.name().to_owned(),
            identifier: subject.masked_identifier(),
        }
    }
}

/// `GET /v1/cases/{case_number}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseView {
    #[schema(example = "(2024)甘0503执1234号")]
    pub case_number: String,
    /// The civil date (UTC+8) `renewal_due` is judged on, and the warning
    /// window (`orders.expiry_warning_days`).
    #[schema(format = Date)]
    pub today: String,
    pub expiry_warning_days: u32,
    pub summary: CaseSummary,
    /// The case's inquiries made by this caller, newest first (the 100
    /// newest).
    pub inquiries: Vec<CaseInquiry>,
    /// There are older inquiries than those listed; their answers are not
    /// merged into `assets`.
    pub more_inquiries: bool,
    /// The assets found, one entry per asset, by kind, agency and the
    /// fields that name it.
    #[schema(value_type = Vec<crate::api::schema::CaseAssetView>)]
    pub assets: Vec<Value>,
    /// The case's freezes and seals, soonest end first (those without an
    /// end date last); the 500 newest.
    pub measures: Vec<MeasureView>,
    pub more_measures: bool,
    /// The case's freeze plans, newest first (the 100 newest).
    pub plans: Vec<CasePlan>,
    pub more_plans: bool,
}

/// The counts an officer looks at first.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CaseSummary {
    pub inquiries: usize,
    pub inquiries_running: usize,
    pub assets: usize,
    /// Measures in force (for all or part of what was asked).
    pub measures_in_force: usize,
    /// Measures waiting in line behind another authority's.
    pub measures_waiting: usize,
    /// Measures in force or waiting that end within the warning window.
    pub renewal_due: usize,
    pub plans: usize,
}

/// One inquiry of the case.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseInquiry {
    #[schema(example = "inq_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub id: String,
    pub subject: SubjectLine,
    /// `running` or `completed`.
    #[schema(value_type = String)]
    pub status: InquiryStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub deadline_at: String,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    /// The batch the inquiry came from, and its line there.
    pub batch_id: Option<String>,
    pub batch_line: Option<i64>,
    pub progress: Progress,
    /// Each agency's status line, as `GET /v1/inquiries/{id}` has it.
    pub agencies: Vec<AgencyView>,
    /// How many assets its answers reported.
    pub assets_found: usize,
}

/// A freeze or a seal of the case.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeasureView {
    #[schema(example = "ord_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub order_id: String,
    /// `freeze` or `seal`.
    pub action: ControlAction,
    /// `accepted`, `dispatched`, `applied`, `partial`, `waiting`,
    /// `refused`, `failed`, `expired` or `released`.
    pub status: String,
    pub agency: String,
    pub asset_kind: AssetKind,
    pub asset: AssetBody,
    pub subject: SubjectLine,
    pub requested_fen: Option<i64>,
    pub controlled_fen: Option<i64>,
    pub shortfall_fen: Option<i64>,
    /// A freeze: what deductions have taken from it.
    pub deducted_fen: Option<i64>,
    /// A freeze of securities: units asked, in force, and not free.
    pub requested_quantity: Option<i64>,
    pub controlled_quantity: Option<i64>,
    pub shortfall_quantity: Option<i64>,
    pub queue_position: Option<i64>,
    /// The measure's dates as the agency states them (a renewal moves the
    /// end), else as asked.
    #[schema(format = Date)]
    pub start_date: Option<String>,
    #[schema(format = Date)]
    pub end_date: Option<String>,
    /// Days from `today` to the end date (negative once passed).
    pub days_left: Option<i64>,
    /// In force or waiting, and ending before `today` plus
    /// `expiry_warning_days`: renew it before it lapses.
    pub renewal_due: bool,
    /// The freeze plan that made it, if one did.
    pub freeze_plan: Option<String>,
    pub reason: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
}

/// A freeze plan of the case.
#[derive(Debug, Serialize, ToSchema)]
pub struct CasePlan {
    #[schema(example = "fpl_0193c8f0d6a47c21b5e1f0a2b3c4d5e6")]
    pub id: String,
    /// `running`, `completed`, `partial` or `failed`.
    pub status: String,
    /// The inquiry whose accounts it freezes.
    pub inquiry_id: String,
    pub subject: SubjectLine,
    pub amount_fen: i64,
    /// What its freezes control together; never above `amount_fen`.
    pub controlled_fen: i64,
    #[schema(format = Date)]
    pub end_date: String,
    pub detail: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
    /// Its orders (freezes, and releases of freezes that would wait), in
    /// the order made, each with what it controls.
    pub orders: Vec<PlanOrderLine>,
}

/// One order of a plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanOrderLine {
    pub order_id: String,
    pub action: ControlAction,
    pub status: String,
    pub agency: String,
    pub asset_kind: AssetKind,
    pub asset: AssetBody,
    pub requested_fen: Option<i64>,
    pub controlled_fen: Option<i64>,
    pub shortfall_fen: Option<i64>,
    #[schema(format = Date)]
    pub end_date: Option<String>,
}

/// What the view is built from: the store's rows, newest first where the
/// store lists them so (up to one more than shown, to know of more).
pub struct CaseRows {
    /// The inquiries, each with its tasks.
    pub inquiries: Vec<(InquiryRecord, Vec<TimedTask>)>,
    pub measures: Vec<OrderRecord>,
    pub plans: Vec<PlanRecord>,
    /// The orders of the plans shown.
    pub plan_orders: Vec<OrderRecord>,
}

/// A case as `caller` sees it: its own inquiries, measures and plans
/// under `case_number` (a checked case number), read from the store and
/// made into the view with the gateway's today and warning window. `None`
/// when the caller has none under the case: for it the case does not
/// exist.
pub async fn read(
    state: &AppState,
    caller: &str,
    case_number: &str,
) -> Result<Option<CaseView>, ApiError> {
    // One more than shown of each: to know whether there are more.
    let more = |n: usize| n as i64 + 1;
    let store = &state.store;
    let (inquiries, measures, plans) = futures::try_join!(
        store.case_inquiries(caller, case_number, more(INQUIRIES_SHOWN)),
        store.measures_by_case(caller, case_number, more(MEASURES_SHOWN)),
        store.plans_by_case(caller, case_number, more(PLANS_SHOWN)),
    )?;
    if inquiries.is_empty() && measures.is_empty() && plans.is_empty() {
        return Ok(None);
    }
    let plan_ids: Vec<String> = plans
        .iter()
        .take(PLANS_SHOWN)
        .map(|p| p.id.clone())
        .collect();
    let plan_orders = store.orders_of_plans(&plan_ids).await?;
    let rows = CaseRows {
        inquiries,
        measures,
        plans,
        plan_orders,
    };
    view(
        case_number,
        rows,
        state.clock.today(),
        state.config.orders.expiry_warning_days,
    )
    .map(Some)
    .map_err(|e| {
        tracing::error!(error = %e, "a stored answer of the case cannot be read");
        ApiError::internal("the case's stored answers cannot be read")
    })
}

fn date(text: Option<&str>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text?, "%Y-%m-%d").ok()
}

/// One asset found, kept from the newest answer that reported it.
struct Found {
    value: Value,
    at_ms: i64,
    /// The inquiry's creation, then its id: which answer is newer when two
    /// were stored in the same millisecond.
    order: (i64, String),
}

/// The case's view from its rows, `today` and the warning window.
pub fn view(
    case_number: &str,
    mut rows: CaseRows,
    today: NaiveDate,
    warning_days: u32,
) -> Result<CaseView, String> {
    let more_inquiries = rows.inquiries.len() > INQUIRIES_SHOWN;
    rows.inquiries.truncate(INQUIRIES_SHOWN);
    let more_measures = rows.measures.len() > MEASURES_SHOWN;
    rows.measures.truncate(MEASURES_SHOWN);
    let more_plans = rows.plans.len() > PLANS_SHOWN;
    rows.plans.truncate(PLANS_SHOWN);

    // The case's measures on each asset, to show on the asset.
    let mut measures_on: HashMap<(&str, &AssetRef), Vec<&str>> = HashMap::new();
    for m in &rows.measures {
        measures_on
            .entry((&m.agency, &m.asset))
            .or_default()
            .push(&m.id);
    }

    let mut summary = CaseSummary::default();
    let mut inquiries = Vec::with_capacity(rows.inquiries.len());
    let mut found: HashMap<(String, AssetRef), Found> = HashMap::new();
    for (record, tasks) in &rows.inquiries {
        let subject = SubjectLine::of(&record.subject);
        let mut progress = Progress {
            total: tasks.len(),
            ..Progress::default()
        };
        let mut agencies = Vec::with_capacity(tasks.len());
        let mut assets_found = 0;
        for timed in tasks {
            let task = &timed.task;
            let status = task.state.agency_status();
            if !status.is_final() {
                progress.pending += 1;
            } else if status.is_answer() {
                progress.answered += 1;
            } else {
                progress.failed += 1;
            }
            agencies.push(AgencyView {
                agency: task.agency.clone(),
                status: status.as_str().to_owned(),
                detail: task.detail.clone(),
                latency_ms: task.latency_ms,
                request_number: task.request_number.clone(),
            });
            let (TaskState::Finished(_), Some(assets)) = (task.state, &task.result) else {
                continue;
            };
            assets_found += assets.len();
            for asset in assets {
                let key = (task.agency.clone(), AssetRef::of(asset));
                let order = (record.created_at_ms, record.id.clone());
                let newer = found
                    .get(&key)
                    .is_none_or(|seen| (timed.finished_at_ms, &order) > (seen.at_ms, &seen.order));
                if !newer {
                    continue;
                }
                let mut value = serde_json::to_value(asset).map_err(|e| e.to_string())?;
                if let Some(map) = value.as_object_mut() {
                    map.insert("agency".into(), task.agency.clone().into());
                    map.insert("found_at".into(), timestamp(timed.finished_at_ms).into());
                    map.insert("inquiry_id".into(), record.id.clone().into());
                    map.insert(
                        "subject".into(),
                        serde_json::to_value(&subject).map_err(|e| e.to_string())?,
                    );
                }
                found.insert(
                    key,
                    Found {
                        value,
                        at_ms: timed.finished_at_ms,
                        order,
                    },
                );
            }
        }
        summary.inquiries += 1;
        if record.status == InquiryStatus::Running {
            summary.inquiries_running += 1;
        }
        inquiries.push(CaseInquiry {
            id: record.id.clone(),
            subject,
            status: record.status,
            created_at: timestamp(record.created_at_ms),
            deadline_at: timestamp(record.deadline_at_ms),
            completed_at: record.completed_at_ms.map(timestamp),
            batch_id: record.batch_id.clone(),
            batch_line: record.batch_line,
            progress,
            agencies,
            assets_found,
        });
    }

    // By kind (in the model's order), agency, then the naming fields.
    let rank = |k: AssetKind| AssetKind::ALL.iter().position(|x| *x == k);
    let mut assets: Vec<((String, AssetRef), Found)> = found.into_iter().collect();
    assets.sort_by(|((a_agency, a), _), ((b_agency, b), _)| {
        (rank(a.kind()), a_agency, a.fields()).cmp(&(rank(b.kind()), b_agency, b.fields()))
    });
    let assets: Vec<Value> = assets
        .into_iter()
        .map(|((agency, asset), mut f)| {
            let orders: Vec<&str> = measures_on
                .get(&(agency.as_str(), &asset))
                .cloned()
                .unwrap_or_default();
            if let Some(map) = f.value.as_object_mut() {
                map.insert("case_orders".into(), orders.into());
            }
            f.value
        })
        .collect();
    summary.assets = assets.len();

    let horizon = today
        .checked_add_days(chrono::Days::new(u64::from(warning_days)))
        .unwrap_or(today);
    let mut measures: Vec<MeasureView> = rows
        .measures
        .iter()
        .map(|o| measure(o, today, horizon))
        .collect();
    // Soonest end first; without an end last; then the newest first.
    measures.sort_by(|a, b| {
        (a.end_date.is_none(), &a.end_date)
            .cmp(&(b.end_date.is_none(), &b.end_date))
            .then_with(|| b.created_at.cmp(&a.created_at))
            .then_with(|| a.order_id.cmp(&b.order_id))
    });
    for m in &measures {
        match m.status.as_str() {
            "applied" | "partial" => summary.measures_in_force += 1,
            "waiting" => summary.measures_waiting += 1,
            _ => {}
        }
        summary.renewal_due += usize::from(m.renewal_due);
    }

    let mut orders_of: HashMap<&str, Vec<&OrderRecord>> = HashMap::new();
    for o in &rows.plan_orders {
        if let Some(plan) = &o.plan_id {
            orders_of.entry(plan).or_default().push(o);
        }
    }
    let plans: Vec<CasePlan> = rows
        .plans
        .iter()
        .map(|p| CasePlan {
            id: p.id.clone(),
            status: p.status.as_str().to_owned(),
            inquiry_id: p.inquiry_id.clone(),
            subject: SubjectLine::of(&p.subject),
            amount_fen: p.amount_fen,
            controlled_fen: p.controlled_fen,
            end_date: p.end_date.clone(),
            detail: p.detail.clone(),
            created_at: timestamp(p.created_at_ms),
            completed_at: p.completed_at_ms.map(timestamp),
            orders: orders_of
                .get(p.id.as_str())
                .into_iter()
                .flatten()
                .map(|o| plan_order(o))
                .collect(),
        })
        .collect();
    summary.plans = plans.len();

    Ok(CaseView {
        case_number: case_number.to_owned(),
        today: today.format("%Y-%m-%d").to_string(),
        expiry_warning_days: warning_days,
        summary,
        inquiries,
        more_inquiries,
        assets,
        measures,
        more_measures,
        plans,
        more_plans,
    })
}

/// A measure's dates: the agency's, else those asked.
fn measure_dates(o: &OrderRecord) -> (Option<String>, Option<String>) {
    (
        o.measure_start.clone().or_else(|| o.start_date.clone()),
        o.measure_end.clone().or_else(|| o.end_date.clone()),
    )
}

fn measure(o: &OrderRecord, today: NaiveDate, horizon: NaiveDate) -> MeasureView {
    let (start_date, end_date) = measure_dates(o);
    let end = date(end_date.as_deref());
    let live = o.status.is_live();
    MeasureView {
        order_id: o.id.clone(),
        action: o.action,
        status: o.status.as_str().to_owned(),
        agency: o.agency.clone(),
        asset_kind: o.asset.kind(),
        asset: asset_body(&o.asset),
        subject: SubjectLine::of(&o.subject),
        requested_fen: o.amount_fen,
        controlled_fen: o.controlled_fen,
        shortfall_fen: o.shortfall_fen,
        deducted_fen: (o.action == ControlAction::Freeze).then_some(o.deducted_fen),
        requested_quantity: o.quantity,
        controlled_quantity: o.quantity.and(o.controlled_quantity),
        shortfall_quantity: o.quantity.and(o.shortfall_quantity),
        queue_position: o.queue_position,
        start_date,
        days_left: end.map(|e| (e - today).num_days()),
        renewal_due: live && end.is_some_and(|e| e < horizon),
        end_date,
        freeze_plan: o.plan_id.clone(),
        reason: o.reason.clone(),
        created_at: timestamp(o.created_at_ms),
        decided_at: o.decided_at_ms.map(timestamp),
    }
}

fn plan_order(o: &OrderRecord) -> PlanOrderLine {
    let end_date = if o.measure_order == o.id {
        measure_dates(o).1
    } else {
        o.end_date.clone()
    };
    PlanOrderLine {
        order_id: o.id.clone(),
        action: o.action,
        status: o.status.as_str().to_owned(),
        agency: o.agency.clone(),
        asset_kind: o.asset.kind(),
        asset: asset_body(&o.asset),
        requested_fen: o.amount_fen,
        controlled_fen: o.controlled_fen,
        shortfall_fen: o.shortfall_fen,
        end_date,
    }
}

#[cfg(test)]
mod tests {
    use adapters::control::AssetRef;
    use adapters::ids::{CaseNumber, IdNumber};
    use adapters::model::{Asset, AssetKind, BankAccount, Court, Fen, SecuritiesHolding, Subject};

    use super::*;
    use crate::store::{OrderStatus, TaskRecord};

    const CASE: &str = "(2024)甘0503执1234号";

    fn zhang_san() -> Subject {
        Subject::Person {
            name: "张三".into(),
            id_number: IdNumber::parse("360426199101010071").expect("id"),
        }
    }

    fn court() -> Court {
        Court {
            code: "甘0503".into(),
            name: "天水市麦积区人民法院".into(),
        }
    }

    fn inquiry(id: &str, created_at_ms: i64, status: InquiryStatus) -> InquiryRecord {
        InquiryRecord {
            id: id.into(),
            caller: "court".into(),
            case_number: CASE.into(),
            subject: zhang_san(),
            officers: Vec::new(),
            asset_kinds: AssetKind::ALL.to_vec(),
            court: court(),
            warnings: Vec::new(),
            status,
            created_at_ms,
            deadline_at_ms: created_at_ms + 60_000,
            completed_at_ms: None,
            catalog_version: None,
            batch_id: Some("bat_1".into()).filter(|_| id == "inq_old"),
            batch_line: None,
        }
    }

    fn account(number: &str, balance: i64) -> Asset {
        Asset::BankAccount(BankAccount {
            account_number: number.into(),
            account_type: "savings".into(),
            currency: "CNY".into(),
            balance_fen: Fen(balance),
            available_fen: Fen(balance),
            branch: "branch".into(),
            state: None,
            measures: Vec::new(),
        })
    }

    fn holding(code: &str) -> Asset {
        Asset::Securities(SecuritiesHolding {
            securities_account: "A123".into(),
            market: "SH".into(),
            security_code: code.into(),
            security_name: code.into(),
            quantity: 100,
            available_quantity: None,
            custodian: "broker".into(),
            measures: Vec::new(),
        })
    }

    fn task(inquiry: &str, agency: &str, at_ms: i64, found: Option<Vec<Asset>>) -> TimedTask {
        let state = match &found {
            Some(_) => TaskState::Finished(adapters::model::AgencyStatus::Answered),
            None => TaskState::Awaiting,
        };
        TimedTask {
            task: TaskRecord {
                inquiry_id: inquiry.into(),
                agency: agency.into(),
                request_number: format!("Q{inquiry}-{agency}"),
                state,
                detail: None,
                ticket: None,
                latency_ms: Some(5),
                result: found,
            },
            finished_at_ms: at_ms,
        }
    }

    fn order(id: &str, asset: AssetRef, end: &str, status: OrderStatus) -> OrderRecord {
        let new = crate::order::NewOrder {
            case_number: CaseNumber::parse(CASE).expect("case"),
            subject: zhang_san(),
            officers: Vec::new(),
            action: ControlAction::Freeze,
            agency: "bank-b".into(),
            asset,
            amount_fen: Some(100),
            quantity: None,
            start_date: None,
            end_date: date(Some(end)),
            prior_order: None,
            measure_order: None,
            prior_request_number: None,
            documents: Vec::new(),
        };
        let mut o = crate::order::new_record(id, "court", id, "", &court(), &new, None, 1);
        o.status = status;
        o
    }

    fn rows() -> CaseRows {
        CaseRows {
            inquiries: Vec::new(),
            measures: Vec::new(),
            plans: Vec::new(),
            plan_orders: Vec::new(),
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 1).expect("date")
    }

    #[test]
    fn each_asset_comes_once_from_the_newest_answer_that_held_it() -> Result<(), String> {
        let mut r = rows();
        // Newest first, as the store lists them.
        r.inquiries = vec![
            (
                inquiry("inq_new", 2_000, InquiryStatus::Completed),
                vec![
                    task("inq_new", "bank-b", 2_100, Some(vec![account("6217", 500)])),
                    // The same number at another agency is another asset.
                    task("inq_new", "bank-a", 2_200, Some(vec![account("6217", 1)])),
                    task("inq_new", "registry-x", 2_000, None),
                ],
            ),
            (
                inquiry("inq_old", 1_000, InquiryStatus::Running),
                vec![
                    // The older inquiry's answer came last (pushed late): it
                    // wins.
                    task("inq_old", "bank-b", 3_000, Some(vec![account("6217", 700)])),
                    task(
                        "inq_old",
                        "securities-s",
                        1_500,
                        Some(vec![holding("600000"), holding("600001")]),
                    ),
                ],
            ),
        ];
        let v = view(CASE, r, today(), 14)?;
        let line = |agency: &str, field: &str, value: &str| {
            v.assets
                .iter()
                .filter(|a| a["agency"] == agency && a[field] == value)
                .collect::<Vec<_>>()
        };
        assert_eq!(v.assets.len(), 4, "{:#?}", v.assets);
        let b = line("bank-b", "account_number", "6217");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0]["balance_fen"], 700);
        assert_eq!(b[0]["inquiry_id"], "inq_old");
        assert_eq!(b[0]["found_at"], timestamp(3_000));
        assert_eq!(b[0]["subject"]["identifier"], "3604************71");
        assert_eq!(line("bank-a", "account_number", "6217").len(), 1);
        assert_eq!(line("securities-s", "security_code", "600001").len(), 1);
        // Bank accounts first, then securities.
        assert_eq!(v.assets[0]["kind"], "bank_account");
        assert_eq!(v.assets[3]["kind"], "securities");
        assert_eq!(v.inquiries[0].id, "inq_new");
        assert_eq!(v.inquiries[0].progress.pending, 1);
        assert_eq!(v.inquiries[0].assets_found, 2);
        assert_eq!(v.inquiries[1].batch_id.as_deref(), Some("bat_1"));
        assert_eq!(v.summary.inquiries_running, 1);
        assert!(!v.more_inquiries);
        let text = serde_json::to_string(&v).map_err(|e| e.to_string())?;
        assert!(!text.contains("360426199101010071"), "{text}");
        Ok(())
    }

    #[test]
    fn measures_end_soonest_first_and_those_ending_soon_are_due_for_renewal() -> Result<(), String>
    {
        let acct = |n: &str| AssetRef::BankAccount {
            account_number: n.into(),
        };
        let mut r = rows();
        r.measures = vec![
            order("ord_late", acct("1"), "2026-12-31", OrderStatus::Applied),
            order("ord_soon", acct("2"), "2026-03-10", OrderStatus::Partial),
            order("ord_wait", acct("3"), "2026-03-14", OrderStatus::Waiting),
            order("ord_edge", acct("4"), "2026-03-15", OrderStatus::Applied),
            order("ord_gone", acct("5"), "2026-03-02", OrderStatus::Released),
            order("ord_none", acct("6"), "2026-03-02", OrderStatus::Refused),
        ];
        r.measures[5].end_date = None;
        r.inquiries = vec![(
            inquiry("inq_1", 1, InquiryStatus::Completed),
            vec![task("inq_1", "bank-b", 5, Some(vec![account("2", 9)]))],
        )];
        let v = view(CASE, r, today(), 14)?;
        let order: Vec<(&str, bool)> = v
            .measures
            .iter()
            .map(|m| (m.order_id.as_str(), m.renewal_due))
            .collect();
        assert_eq!(
            order,
            [
                ("ord_gone", false),
                ("ord_soon", true),
                ("ord_wait", true),
                ("ord_edge", false),
                ("ord_late", false),
                ("ord_none", false),
            ]
        );
        assert_eq!(v.measures[1].days_left, Some(9));
        assert_eq!(v.measures[1].deducted_fen, Some(0));
        assert_eq!(v.measures[1].asset.account_number.as_deref(), Some("2"));
        assert_eq!(v.summary.renewal_due, 2);
        assert_eq!(v.summary.measures_in_force, 3);
        assert_eq!(v.summary.measures_waiting, 1);
        assert_eq!(v.assets[0]["case_orders"], serde_json::json!(["ord_soon"]));
        Ok(())
    }
}
