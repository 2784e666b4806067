//! The questions auditors ask of the log (misuse: subjects asked about
//! under several cases, officers outside their court, officers' daily
//! volume, documents acknowledged otherwise than sent), as pages with
//! their parameters as form fields. The answers are the API's
//! (`GET /v1/audit/questions/{question}`, `api::audit::QuestionAsked`).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::forms::{filter_link, path_segment};
use super::{Layout, PageError, Signed, record_view};
use crate::api::audit::{QuestionAsked, QuestionParams};
use crate::auth::Role;
use crate::state::AppState;

/// The threshold `officer-volume` is asked with when the form gives none.
const DEFAULT_THRESHOLD: i64 = 50;

/// A question as the console presents it.
#[derive(Debug, Clone, Copy)]
pub struct QuestionInfo {
    pub name: &'static str,
    pub title: &'static str,
    pub explanation: &'static str,
    /// The answer's list, and its columns: (key in each answer, heading).
    pub list: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
    pub threshold: bool,
}

pub const QUESTIONS: [QuestionInfo; 4] = [
    QuestionInfo {
        name: "subjects-in-several-cases",
        title: "同一当事人涉及多个案件 · Subjects asked about under several cases",
        explanation: "Subjects that inquiries, orders or freeze plans named under more than one case number: a subject looked up outside the case that justifies it shows here.",
        list: "subjects",
        columns: &[
            ("subject", "当事人 Subject"),
            ("cases", "案号 Cases"),
            ("requests", "请求数 Requests"),
        ],
        threshold: false,
    },
    QuestionInfo {
        name: "officers-outside-their-court",
        title: "跨法院查询 · Officers asking outside their court",
        explanation: "Officers who asked about subjects under case numbers of a court other than the one their caller acts for (the court code in the case number).",
        list: "requests",
        columns: &[
            ("caller", "调用方 Caller"),
            ("caller_court", "本院 Own court"),
            ("officer", "执行人员 Officer"),
            ("case_number", "案号 Case"),
            ("case_court", "案件法院 Case's court"),
            ("requests", "请求数 Requests"),
        ],
        threshold: false,
    },
    QuestionInfo {
        name: "officer-volume",
        title: "执行人员日请求量 · Officers' daily volume",
        explanation: "Officers with more requests than the threshold on one civil day (UTC+8).",
        list: "officer_days",
        columns: &[
            ("officer", "执行人员 Officer"),
            ("day", "日期 Day"),
            ("requests", "请求数 Requests"),
        ],
        threshold: true,
    },
    QuestionInfo {
        name: "document-mismatches",
        title: "文书回执不符 · Documents acknowledged otherwise than sent",
        explanation: "Control orders whose agency acknowledged other documents, or other digests, than the gateway sent.",
        list: "orders",
        columns: &[
            ("order", "指令 Order"),
            ("caller", "调用方 Caller"),
            ("case_number", "案号 Case"),
            ("agency", "机构 Agency"),
            ("action", "措施 Action"),
            ("sent", "发送 Sent"),
            ("acknowledged", "回执 Acknowledged"),
            ("created_at", "时间 Created"),
        ],
        threshold: false,
    },
];

#[derive(Template, WebTemplate)]
#[template(path = "console/questions.html")]
struct IndexPage {
    layout: Layout,
    questions: &'static [QuestionInfo],
}

/// `GET /console/audit/questions`: the questions, each a link.
pub async fn index(State(state): State<AppState>, signed: Signed) -> Result<Response, PageError> {
    signed.require(Role::Auditor)?;
    record_view(&state, &signed, "console.audit.questions", json!({})).await?;
    Ok(IndexPage {
        layout: Layout::new(
            "滥用排查 Misuse questions",
            "questions",
            Some(signed.view()),
        ),
        questions: &QUESTIONS,
    }
    .into_response())
}

/// The question's form, as the browser sends it (empty fields are none).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    threshold: String,
    #[serde(default)]
    limit: String,
}

/// One cell of an answer: its text and, for a subject or a case, the
/// search of the log it leads to.
#[derive(Debug)]
pub struct Cell {
    pub text: String,
    pub link: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/question.html")]
struct AskPage {
    layout: Layout,
    question: QuestionInfo,
    from: String,
    to: String,
    threshold: String,
    limit: String,
    rows: Vec<Vec<Cell>>,
}

fn number(field: &str, value: &str) -> Result<Option<i64>, PageError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        PageError::bad_request(format!(
            "{field} 须为数字。 {field} must be a whole number."
        ))
        .with_field(field)
    })
}

fn cell(key: &str, value: &Value) -> Cell {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    let link = match key {
        _ if text.is_empty() => None,
        // An order's whole story.
        "order" => Some(format!("/console/audit/timeline/{}", path_segment(&text))),
        "subject" | "case_number" => filter_link(key, &Some(text.clone())),
        _ => None,
    };
    Cell { text, link }
}

/// `GET /console/audit/questions/{question}`: the question's form and its
/// answer.
pub async fn ask(
    State(state): State<AppState>,
    signed: Signed,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<AskQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let user = signed.view();
    signed.require(Role::Auditor)?;
    let name = path.map(|Path(p)| p).unwrap_or_default();
    let Some(info) = QUESTIONS.iter().find(|q| q.name == name).copied() else {
        return Err(
            PageError::not_found(format!("没有这个问题。 There is no question {name:?}."))
                .for_user(user),
        );
    };
    let Query(q) = query.map_err(|r| {
        PageError::bad_request(format!(
            "查询参数无法读取。 The query could not be read: {}",
            r.body_text()
        ))
        .for_user(user.clone())
    })?;
    let fail = |e: PageError| e.for_user(user.clone());
    let mut threshold = number("threshold", &q.threshold).map_err(fail)?;
    if info.threshold {
        threshold = threshold.or(Some(DEFAULT_THRESHOLD));
    }
    let params = QuestionParams {
        from: None,
        to: None,
        threshold,
        limit: number("limit", &q.limit).map_err(fail)?,
    };
    let mut asked =
        QuestionAsked::new(name, params).map_err(|e| PageError::from(e).for_user(user.clone()))?;
    asked.window.from_ms = super::forms::form_time("from", &q.from).map_err(fail)?;
    asked.window.to_ms = super::forms::form_time("to", &q.to).map_err(fail)?;
    record_view(
        &state,
        &signed,
        &format!("console.audit.question.{}", info.name),
        json!({"question": format!("{asked:?}")}),
    )
    .await?;
    let answer = asked
        .answer(&state)
        .await
        .map_err(|e| PageError::from(e).for_user(user.clone()))?;
    let rows = answer[info.list]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    info.columns
                        .iter()
                        .map(|(key, _)| cell(key, &item[*key]))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(AskPage {
        layout: Layout::new(info.title, "questions", Some(user)),
        question: info,
        from: q.from.trim().to_owned(),
        to: q.to.trim().to_owned(),
        threshold: threshold.map(|t| t.to_string()).unwrap_or_default(),
        limit: q.limit.trim().to_owned(),
        rows,
    }
    .into_response())
}
