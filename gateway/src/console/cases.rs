//! The officers' pages: a case opened by its number, and the case's whole
//! picture (`case::read`, the very reads and view `GET /v1/cases/{case}`
//! answers with): its inquiries with each agency's status line, the
//! assets found (one entry per asset, every kind with its own fields), the
//! freezes and seals standing with those due for renewal marked, and the
//! freeze plans with what each of their orders controls.
//!
//! Read-only: orders are placed by the enforcement system through the
//! API. For the enforcement role only, and only what the caller made
//! under the case, as the API scopes it; identity numbers masked as the
//! API masks them.
//!
//! While anything of the case is still under way (an inquiry running, a
//! plan running, an order not yet decided), the case's part of the page
//! asks again every two seconds for itself (`/live`, swapped in place by
//! htmx) and stops once nothing is; without JavaScript the page reloads
//! itself (a `<noscript>` refresh) until then. Every page and every
//! refresh is a read of the case and is recorded as one.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::forms::{local_time, path_segment, query_error};
use super::{Layout, PageError, Signed, record_view};
use crate::api::extract::case_filter;
use crate::auth::Role;
use crate::case::{self, CaseView, SubjectLine};
use crate::state::AppState;

/// How often the case's part of the page asks for itself while something
/// is under way, in seconds (htmx; and the reload without JavaScript).
const REFRESH_SECONDS: u32 = 2;

impl Layout {
    /// Whether the navigation shows the officers' pages.
    pub fn enforcement(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.role == Role::Enforcement)
    }
}

/// The open-a-case form, as the browser sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenQuery {
    case_number: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/cases.html")]
struct CasesPage {
    layout: Layout,
}

/// `GET /console/cases`: the form that opens a case by its number; given
/// a number (`?case_number=`), the way to its page. An empty or malformed
/// number is a 4xx page naming the field and what is wrong with it.
pub async fn open(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<OpenQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Enforcement)?;
    let Query(q) = query.map_err(|r| query_error(r).for_user(user.clone()))?;
    let Some(raw) = q.case_number else {
        record_view(&state, &signed, "console.cases", json!({})).await?;
        return Ok(CasesPage {
            layout: Layout::new("案件 Cases", "cases", Some(user)),
        }
        .into_response());
    };
    let number = case_number(&raw).map_err(|e| e.for_user(user))?;
    record_view(
        &state,
        &signed,
        "console.cases",
        json!({"case_number": number}),
    )
    .await?;
    Ok(Redirect::to(&case_url(&number)).into_response())
}

/// A case number from the form or the path, checked as the API checks it.
fn case_number(raw: &str) -> Result<String, PageError> {
    if raw.trim().is_empty() {
        return Err(PageError::bad_request(
            "请输入案号，例如 (2024)甘0503执1234号。 Enter a case number, such as (2024)甘0503执1234号.",
        )
        .with_field("case_number"));
    }
    let number = case_filter(Some(raw.trim())).map_err(|e| {
        PageError::new(
            e.status,
            format!(
                "“{}”不是有效的案号（应如 (2024)甘0503执1234号）。 Not a case number: {}.",
                raw.trim(),
                e.message
            ),
        )
        .with_field("case_number")
    })?;
    Ok(number.as_str().to_owned())
}

/// A case's page, the number percent-encoded (UTF-8).
pub fn case_url(number: &str) -> String {
    format!("/console/cases/{}", path_segment(number))
}

#[derive(Template, WebTemplate)]
#[template(path = "console/case.html")]
struct CasePage {
    layout: Layout,
    live: Live,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/case_live.html")]
struct CaseLive {
    live: Live,
}

/// `GET /console/cases/{case_number}`: the case's whole picture.
pub async fn case(
    State(state): State<AppState>,
    signed: Signed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    let live = read(&state, &signed, path, false)
        .await
        .map_err(|e| e.for_user(user.clone()))?;
    Ok(CasePage {
        layout: Layout::new(
            format!("案件 Case {}", live.case_number),
            "cases",
            Some(user),
        ),
        live,
    }
    .into_response())
}

/// `GET /console/cases/{case_number}/live`: the case's part of the page
/// alone, which the page swaps in for its own while something is under
/// way.
pub async fn live(
    State(state): State<AppState>,
    signed: Signed,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    let live = read(&state, &signed, path, true)
        .await
        .map_err(|e| e.for_user(user))?;
    Ok(CaseLive { live }.into_response())
}

/// The case for the signed-in officer, recorded as a read
/// (`console.case.read`, with the case number; `refresh` for the page's
/// own refreshes). A case the caller has nothing under is a 404 page
/// saying so (recorded too: the question was asked).
async fn read(
    state: &AppState,
    signed: &Signed,
    path: Result<Path<String>, PathRejection>,
    refresh: bool,
) -> Result<Live, PageError> {
    signed.require(Role::Enforcement)?;
    let raw = path.map_err(|r| {
        PageError::bad_request(format!(
            "路径中的案号无法读取。 The case number in the address cannot be read: {}",
            r.body_text()
        ))
        .with_field("case_number")
    })?;
    let number = case_number(&raw.0)?;
    let view = case::read(state, &signed.caller.name, &number).await?;
    record_view(
        state,
        signed,
        "console.case.read",
        json!({"case_number": number, "found": view.is_some(), "refresh": refresh}),
    )
    .await?;
    let Some(view) = view else {
        return Err(PageError::not_found(format!(
            "您在案件 {number} 下没有任何查询、控制指令或冻结方案的记录。 \
             Nothing is recorded under case {number} for {}: no inquiry, order or freeze plan.",
            signed.caller.name
        )));
    };
    Ok(Live::of(&view))
}

/// The case's part of the page: everything but the layout.
#[derive(Debug)]
pub struct Live {
    pub case_number: String,
    /// The page's own address, and the address of this part alone.
    pub url: String,
    pub live_url: String,
    /// Something is under way: the part asks for itself again.
    pub polling: bool,
    pub refresh_seconds: u32,
    pub today: String,
    pub warning_days: u32,
    pub summary: case::CaseSummary,
    pub inquiries: Vec<InquiryLine>,
    pub more_inquiries: bool,
    pub asset_groups: Vec<AssetGroup>,
    pub measures: Vec<MeasureLine>,
    pub more_measures: bool,
    pub plans: Vec<PlanLine>,
    pub more_plans: bool,
    pub read_at: String,
}

#[derive(Debug)]
pub struct InquiryLine {
    pub id: String,
    pub subject: String,
    pub status: String,
    pub status_label: &'static str,
    pub running: bool,
    pub created_at: String,
    pub deadline_at: String,
    pub completed_at: Option<String>,
    /// The batch and its line, as `bat_… · 第 3 行 line 3`.
    pub batch: Option<String>,
    pub progress: String,
    pub agencies: Vec<AgencyLine>,
    pub assets_found: usize,
}

#[derive(Debug)]
pub struct AgencyLine {
    pub agency: String,
    pub status: String,
    pub label: &'static str,
    /// `answered`, `pending` or `failed`: how the line is marked.
    pub class: &'static str,
    pub detail: String,
    pub latency: String,
}

/// The assets of one kind, as a table with that kind's own columns.
#[derive(Debug)]
pub struct AssetGroup {
    pub kind: String,
    pub label: &'static str,
    /// The kind's fields any of its assets has, in the kind's order.
    pub columns: Vec<&'static str>,
    pub assets: Vec<AssetLine>,
}

#[derive(Debug)]
pub struct AssetLine {
    pub agency: String,
    /// The fields that name it for a control order.
    pub name: String,
    /// Its value of each of the group's columns (empty where it has none).
    pub cells: Vec<String>,
    /// Fields the page does not know by name, as `key: value`.
    pub extra: Vec<String>,
    /// The measures standing on it as the agency reported them.
    pub standing: Vec<String>,
    /// The case's own orders on it.
    pub case_orders: Vec<String>,
    pub found_at: String,
    pub inquiry_id: String,
    pub subject: String,
}

#[derive(Debug)]
pub struct MeasureLine {
    pub order_id: String,
    pub action: &'static str,
    pub status: String,
    pub status_label: &'static str,
    pub agency: String,
    pub kind: &'static str,
    pub asset: String,
    pub subject: String,
    /// What it controls, as `label: value` lines (amounts, units, queue).
    pub amounts: Vec<(&'static str, String)>,
    pub start_date: String,
    pub end_date: String,
    pub days_left: String,
    pub renewal_due: bool,
    pub plan: Option<String>,
    pub reason: String,
}

#[derive(Debug)]
pub struct PlanLine {
    pub id: String,
    pub status: String,
    pub status_label: &'static str,
    pub inquiry_id: String,
    pub subject: String,
    pub amount: String,
    pub controlled: String,
    pub end_date: String,
    pub detail: String,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub orders: Vec<PlanOrderLine>,
}

#[derive(Debug)]
pub struct PlanOrderLine {
    pub order_id: String,
    pub action: &'static str,
    pub status: String,
    pub status_label: &'static str,
    pub agency: String,
    pub kind: &'static str,
    pub asset: String,
    pub requested: String,
    pub controlled: String,
    pub shortfall: String,
    pub end_date: String,
}

impl Live {
    fn of(v: &CaseView) -> Self {
        let url = case_url(&v.case_number);
        let inquiries: Vec<InquiryLine> = v.inquiries.iter().map(inquiry_line).collect();
        let measures: Vec<MeasureLine> = v.measures.iter().map(measure_line).collect();
        let plans: Vec<PlanLine> = v.plans.iter().map(plan_line).collect();
        let polling = v.summary.inquiries_running > 0
            || plans.iter().any(|p| p.status == "running")
            || measures.iter().any(|m| undecided(&m.status))
            || plans
                .iter()
                .flat_map(|p| &p.orders)
                .any(|o| undecided(&o.status));
        Self {
            case_number: v.case_number.clone(),
            live_url: format!("{url}/live"),
            url,
            polling,
            refresh_seconds: REFRESH_SECONDS,
            today: v.today.clone(),
            warning_days: v.expiry_warning_days,
            summary: case::CaseSummary {
                inquiries: v.summary.inquiries,
                inquiries_running: v.summary.inquiries_running,
                assets: v.summary.assets,
                measures_in_force: v.summary.measures_in_force,
                measures_waiting: v.summary.measures_waiting,
                renewal_due: v.summary.renewal_due,
                plans: v.summary.plans,
            },
            inquiries,
            more_inquiries: v.more_inquiries,
            asset_groups: asset_groups(&v.assets),
            measures,
            more_measures: v.more_measures,
            plans,
            more_plans: v.more_plans,
            read_at: local_time(chrono::Utc::now().timestamp_millis()),
        }
    }
}

/// An order the gateway is still placing.
fn undecided(status: &str) -> bool {
    matches!(status, "accepted" | "dispatched")
}

fn subject(s: &SubjectLine) -> String {
    format!("{} {}", s.name, s.identifier)
}

/// A stored timestamp (RFC 3339) as a person in China reads it.
fn local(ts: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| local_time(t.timestamp_millis()))
        .unwrap_or_else(|_| ts.to_owned())
}

/// An amount in fen as yuan: `¥1,234.56`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    let digits = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}¥{grouped}.{:02}", abs % 100)
}

fn opt_yuan(fen: Option<i64>) -> String {
    fen.map(yuan).unwrap_or_default()
}

fn inquiry_line(i: &case::CaseInquiry) -> InquiryLine {
    let status = i.status.as_str().to_owned();
    let p = &i.progress;
    InquiryLine {
        id: i.id.clone(),
        subject: subject(&i.subject),
        status_label: match status.as_str() {
            "running" => "进行中 running",
            "completed" => "已完成 completed",
            _ => "",
        },
        running: status == "running",
        status,
        created_at: local(&i.created_at),
        deadline_at: local(&i.deadline_at),
        completed_at: i.completed_at.as_deref().map(local),
        batch: i.batch_id.as_ref().map(|b| match i.batch_line {
            Some(line) => format!("{b} · 第 {line} 行 line {line}"),
            None => b.clone(),
        }),
        progress: format!(
            "{} 个机构：{} 已答复，{} 失败，{} 等待。 {} agencies: {} answered, {} failed, {} pending.",
            p.total, p.answered, p.failed, p.pending, p.total, p.answered, p.failed, p.pending
        ),
        agencies: i
            .agencies
            .iter()
            .map(|a| AgencyLine {
                agency: a.agency.clone(),
                label: agency_status_label(&a.status),
                class: match a.status.as_str() {
                    "answered" | "no_record" => "answered",
                    "pending" => "pending",
                    _ => "failed",
                },
                status: a.status.clone(),
                detail: a.detail.clone().unwrap_or_default(),
                latency: a.latency_ms.map(|l| format!("{l} ms")).unwrap_or_default(),
            })
            .collect(),
        assets_found: i.assets_found,
    }
}

fn agency_status_label(status: &str) -> &'static str {
    match status {
        "answered" => "已答复 answered",
        "no_record" => "无记录 no record",
        "pending" => "等待答复 pending",
        "refused" => "拒绝 refused",
        "timeout" => "超时 timed out",
        "circuit_open" => "熔断中 circuit open",
        "rate_limited" => "限流 rate limited",
        "bad_reply" => "答复有误 bad reply",
        "error" => "出错 error",
        _ => "",
    }
}

fn order_status_label(status: &str) -> &'static str {
    match status {
        "accepted" => "已受理 accepted",
        "dispatched" => "已发送 dispatched",
        "applied" => "已生效 applied",
        "partial" => "部分生效 partial",
        "waiting" => "轮候 waiting",
        "refused" => "被拒 refused",
        "failed" => "失败 failed",
        "expired" => "已到期 expired",
        "released" => "已解除 released",
        _ => "",
    }
}

fn plan_status_label(status: &str) -> &'static str {
    match status {
        "running" => "进行中 running",
        "completed" => "已完成 completed",
        "partial" => "部分完成 partial",
        "failed" => "失败 failed",
        _ => "",
    }
}

fn action_label(action: adapters::control::ControlAction) -> &'static str {
    use adapters::control::ControlAction as A;
    match action {
        A::Freeze => "冻结 freeze",
        A::Renew => "续冻 renew",
        A::Release => "解冻 release",
        A::Deduct => "扣划 deduct",
        A::Seal => "查封 seal",
        A::RenewSeal => "续封 renew seal",
        A::ReleaseSeal => "解封 release seal",
    }
}

/// The kinds of asset in the model's order, as the page names them.
const KINDS: [(&str, &str); 7] = [
    ("bank_account", "银行存款 Deposits"),
    ("real_estate", "不动产 Real estate"),
    ("vehicle", "车辆 Vehicles"),
    ("securities", "证券 Securities"),
    ("payment_account", "网络支付账户 Payment accounts"),
    ("provident_fund", "住房公积金 Provident funds"),
    ("equity", "股权 Equity"),
];

fn kind_label(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("其他 Other", |(_, l)| l)
}

/// How a field's value is shown.
#[derive(Clone, Copy)]
enum Show {
    Text,
    Fen,
    YesNo,
    Owners,
}

/// Each kind's own fields, in the order shown: the JSON key, its label.
fn kind_fields(kind: &str) -> &'static [(&'static str, &'static str, Show)] {
    use Show::{Fen, Owners, Text, YesNo};
    match kind {
        "bank_account" => &[
            ("account_type", "账户类型 Type", Text),
            ("currency", "币种 Currency", Text),
            ("balance_fen", "余额 Balance", Fen),
            ("available_fen", "可用 Available", Fen),
            ("branch", "开户行 Branch", Text),
            ("state", "状态 State", Text),
        ],
        "real_estate" => &[
            ("certificate_number", "不动产权证号 Certificate", Text),
            ("location", "坐落 Location", Text),
            ("area_m2", "面积(m²) Area", Text),
            ("use", "用途 Use", Text),
            ("owners", "权利人 Owners", Owners),
            ("mortgaged", "抵押 Mortgaged", YesNo),
        ],
        "vehicle" => &[
            ("plate_number", "号牌 Plate", Text),
            ("plate_type", "号牌种类 Plate type", Text),
            ("make_model", "品牌型号 Make", Text),
            ("first_registered", "初次登记 First registered", Text),
            ("state", "状态 State", Text),
            ("mortgaged", "抵押 Mortgaged", YesNo),
        ],
        "securities" => &[
            ("market", "市场 Market", Text),
            ("security_name", "证券名称 Security", Text),
            ("quantity", "数量 Quantity", Text),
            ("available_quantity", "可用数量 Available", Text),
            ("custodian", "托管 Custodian", Text),
        ],
        "payment_account" => &[
            ("holder", "户名 Holder", Text),
            ("balance_fen", "余额 Balance", Fen),
            ("available_fen", "可用 Available", Fen),
            ("fund_balance_fen", "理财余额 In funds", Fen),
        ],
        "provident_fund" => &[
            ("balance_fen", "余额 Balance", Fen),
            ("available_fen", "可用 Available", Fen),
            ("state", "状态 State", Text),
            ("withdrawable", "可提取 Withdrawable", YesNo),
        ],
        "equity" => &[
            ("company_name", "公司 Company", Text),
            ("subscribed_capital_fen", "认缴出资 Subscribed", Fen),
            ("paid_in_capital_fen", "实缴出资 Paid in", Fen),
            ("share_ratio", "持股比例 Share", Text),
        ],
        _ => &[],
    }
}

/// The fields that name an asset for a control order, by kind.
fn naming_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "bank_account" => &["account_number"],
        "real_estate" => &["unit_number"],
        "vehicle" => &["vin"],
        "securities" => &["securities_account", "security_code"],
        "payment_account" => &["payment_account"],
        "provident_fund" => &["fund_account"],
        "equity" => &["company_credit_code"],
        _ => &[],
    }
}

/// What the case view adds to each asset, not the asset's own fields.
const ENTRY_KEYS: [&str; 7] = [
    "kind",
    "agency",
    "found_at",
    "inquiry_id",
    "subject",
    "case_orders",
    "measures",
];

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn shown(v: &Value, how: Show) -> String {
    match (how, v) {
        (Show::Fen, Value::Number(n)) => n.as_i64().map(yuan).unwrap_or_else(|| n.to_string()),
        (Show::YesNo, Value::Bool(b)) => if *b { "是 yes" } else { "否 no" }.to_owned(),
        (Show::Owners, Value::Array(owners)) => owners
            .iter()
            .map(|o| match o["share"].as_str() {
                Some(share) => format!("{} ({share})", text(&o["name"])),
                None => text(&o["name"]),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => text(v),
    }
}

/// The case's assets by kind (in the view's order), each kind with its
/// own columns; any field the page does not know by name still shown.
fn asset_groups(assets: &[Value]) -> Vec<AssetGroup> {
    let mut by_kind: Vec<(&str, Vec<&Value>)> = Vec::new();
    for a in assets {
        let kind = a["kind"].as_str().unwrap_or_default();
        match by_kind.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, list)) => list.push(a),
            None => by_kind.push((kind, vec![a])),
        }
    }
    by_kind
        .into_iter()
        .map(|(kind, list)| {
            let known: Vec<&(&str, &str, Show)> = kind_fields(kind)
                .iter()
                .filter(|(key, _, _)| list.iter().any(|a| !a[*key].is_null()))
                .collect();
            AssetGroup {
                kind: kind.to_owned(),
                label: kind_label(kind),
                columns: known.iter().map(|(_, label, _)| *label).collect(),
                assets: list.iter().map(|a| asset_line(kind, &known, a)).collect(),
            }
        })
        .collect()
}

fn asset_line(kind: &str, columns: &[&(&str, &str, Show)], a: &Value) -> AssetLine {
    let naming = naming_fields(kind);
    let known = kind_fields(kind);
    let extra = a
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, value)| {
            !value.is_null()
                && !ENTRY_KEYS.contains(&key.as_str())
                && !naming.contains(&key.as_str())
                && !known.iter().any(|(k, _, _)| k == key)
        })
        .map(|(key, value)| format!("{key}: {}", text(value)))
        .collect();
    let standing = a["measures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut line = text(&m["authority"]);
            if m["waiting"] == true {
                line.push_str(" · 轮候 waiting");
            }
            if let Some(fen) = m["amount_fen"].as_i64() {
                line.push_str(&format!(" · {}", yuan(fen)));
            }
            if let Some(end) = m["end_date"].as_str() {
                line.push_str(&format!(" · 至 until {end}"));
            }
            line
        })
        .collect();
    AssetLine {
        agency: text(&a["agency"]),
        name: naming
            .iter()
            .map(|k| text(&a[*k]))
            .collect::<Vec<_>>()
            .join(" · "),
        cells: columns
            .iter()
            .map(|(key, _, how)| shown(&a[*key], *how))
            .collect(),
        extra,
        standing,
        case_orders: a["case_orders"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect(),
        found_at: a["found_at"].as_str().map(local).unwrap_or_default(),
        inquiry_id: text(&a["inquiry_id"]),
        subject: format!(
            "{} {}",
            text(&a["subject"]["name"]),
            text(&a["subject"]["identifier"])
        ),
    }
}

/// An asset named in an order: its naming fields' values.
fn asset_text(asset: &crate::order::AssetBody) -> String {
    serde_json::to_value(asset)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|m| m.values().map(text).collect::<Vec<_>>().join(" · "))
        .unwrap_or_default()
}

fn measure_line(m: &case::MeasureView) -> MeasureLine {
    let mut amounts = Vec::new();
    for (label, fen) in [
        ("申请 Asked", m.requested_fen),
        ("已控制 Controlled", m.controlled_fen),
        ("不足 Short", m.shortfall_fen),
        ("已扣划 Deducted", m.deducted_fen.filter(|f| *f > 0)),
    ] {
        if let Some(fen) = fen {
            amounts.push((label, yuan(fen)));
        }
    }
    for (label, units) in [
        ("申请数量 Units asked", m.requested_quantity),
        ("已控制数量 Units controlled", m.controlled_quantity),
        ("不足数量 Units short", m.shortfall_quantity),
        ("轮候位次 Queue position", m.queue_position),
    ] {
        if let Some(n) = units {
            amounts.push((label, n.to_string()));
        }
    }
    let status = m.status.clone();
    MeasureLine {
        order_id: m.order_id.clone(),
        action: action_label(m.action),
        status_label: order_status_label(&status),
        status,
        agency: m.agency.clone(),
        kind: kind_label(m.asset_kind.as_str()),
        asset: asset_text(&m.asset),
        subject: subject(&m.subject),
        amounts,
        start_date: m.start_date.clone().unwrap_or_default(),
        end_date: m.end_date.clone().unwrap_or_default(),
        days_left: m
            .days_left
            .map(|d| {
                if d < 0 {
                    format!("已过 {} 天 {} days ago", -d, -d)
                } else {
                    format!("剩 {d} 天 {d} days left")
                }
            })
            .unwrap_or_default(),
        renewal_due: m.renewal_due,
        plan: m.freeze_plan.clone(),
        reason: m.reason.clone().unwrap_or_default(),
    }
}

fn plan_line(p: &case::CasePlan) -> PlanLine {
    PlanLine {
        id: p.id.clone(),
        status_label: plan_status_label(&p.status),
        status: p.status.clone(),
        inquiry_id: p.inquiry_id.clone(),
        subject: subject(&p.subject),
        amount: yuan(p.amount_fen),
        controlled: yuan(p.controlled_fen),
        end_date: p.end_date.clone(),
        detail: p.detail.clone().unwrap_or_default(),
        created_at: local(&p.created_at),
        completed_at: p.completed_at.as_deref().map(local),
        orders: p
            .orders
            .iter()
            .map(|o| PlanOrderLine {
                order_id: o.order_id.clone(),
                action: action_label(o.action),
                status_label: order_status_label(&o.status),
                status: o.status.clone(),
                agency: o.agency.clone(),
                kind: kind_label(o.asset_kind.as_str()),
                asset: asset_text(&o.asset),
                requested: opt_yuan(o.requested_fen),
                controlled: opt_yuan(o.controlled_fen),
                shortfall: opt_yuan(o.shortfall_fen),
                end_date: o.end_date.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_shown_in_yuan_with_thousands_grouped() {
        assert_eq!(yuan(0), "¥0.00");
        assert_eq!(yuan(5), "¥0.05");
        assert_eq!(yuan(100_000), "¥1,000.00");
        assert_eq!(yuan(123_456_789), "¥1,234,567.89");
        assert_eq!(yuan(-1_050), "-¥10.50");
    }

    #[test]
    fn case_numbers_are_checked_and_empty_ones_named() {
        assert_eq!(
            case_number(" (2024)甘0503执1234号 ").ok().as_deref(),
            Some("(2024)甘0503执1234号")
        );
        let empty = case_number("  ").err();
        assert_eq!(empty.as_ref().map(|e| e.status().as_u16()), Some(400));
        assert_eq!(empty.as_ref().and_then(|e| e.field()), Some("case_number"));
        let bad = case_number("not-a-case").err();
        assert!(bad.as_ref().is_some_and(|e| e.status().is_client_error()));
        assert_eq!(bad.as_ref().and_then(|e| e.field()), Some("case_number"));
        assert_eq!(
            case_url("(2024)甘0503执1234号"),
            "/console/cases/%282024%29%E7%94%980503%E6%89%A71234%E5%8F%B7"
        );
    }

    #[test]
    fn each_kind_of_asset_shows_its_own_fields() {
        let assets = vec![
            json!({"kind": "bank_account", "agency": "bank-b", "account_number": "6217",
                   "account_type": "savings", "currency": "CNY", "balance_fen": 123_456,
                   "available_fen": 100, "branch": "麦积支行", "measures": [],
                   "found_at": "2026-03-01T00:00:00Z", "inquiry_id": "inq_1",
                   "subject": {"kind": "person", "name": "张三", "identifier": "3604************71"},
                   "case_orders": ["ord_1"]}),
            json!({"kind": "real_estate", "agency": "registry-x", "unit_number": "620503001",
                   "certificate_number": "甘(2020)1号", "location": "麦积区", "area_m2": 89.5,
                   "use": "住宅", "owners": [{"name": "张三", "share": "1/2"}], "mortgaged": true,
                   "measures": [{"authority": "某法院", "document_number": "X", "waiting": true}],
                   "new_field": "kept"}),
        ];
        let groups = asset_groups(&assets);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].label, "银行存款 Deposits");
        // The bank account's columns, its state left out: it has none.
        assert_eq!(
            groups[0].columns,
            [
                "账户类型 Type",
                "币种 Currency",
                "余额 Balance",
                "可用 Available",
                "开户行 Branch"
            ]
        );
        let account = &groups[0].assets[0];
        assert_eq!(account.name, "6217");
        assert_eq!(account.cells[2], "¥1,234.56");
        assert_eq!(account.case_orders, ["ord_1"]);
        assert_eq!(account.found_at, "2026-03-01 08:00:00");
        assert_eq!(account.subject, "张三 3604************71");
        let unit = &groups[1].assets[0];
        let cell = |label: &str| {
            groups[1]
                .columns
                .iter()
                .position(|c| *c == label)
                .map(|i| unit.cells[i].as_str())
        };
        assert_eq!(cell("权利人 Owners"), Some("张三 (1/2)"));
        assert_eq!(cell("抵押 Mortgaged"), Some("是 yes"));
        assert_eq!(cell("面积(m²) Area"), Some("89.5"));
        assert_eq!(unit.extra, ["new_field: kept"]);
        assert_eq!(unit.standing, ["某法院 · 轮候 waiting"]);
    }
}
