//! A refused or failed page: its status and a sentence saying why, in the
//! console's layout. A 401 or 403 carries the refusal mark the API's
//! refusal layer records (`api/refusals.rs`), naming who was refused.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{Layout, UserView};
use crate::error::{ApiError, Refused};

/// (Boxed: a page's `Result` stays small on the happy path.)
#[derive(Debug, Clone)]
pub struct PageError(Box<Details>);

#[derive(Debug, Clone)]
struct Details {
    status: StatusCode,
    /// The sentence shown.
    message: String,
    /// The input at fault, when one is.
    field: Option<String>,
    /// Who is signed in, for the navigation.
    user: Option<UserView>,
    /// The refusal to record (401, 403).
    refused: Option<Refused>,
}

#[derive(Template, WebTemplate)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    heading: &'static str,
    message: &'a str,
    field: Option<&'a str>,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(Box::new(Details {
            status,
            message: message.into(),
            field: None,
            user: None,
            refused: None,
        }))
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The input at fault, when one is.
    pub fn field(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A role refused a page: recorded as `auth.refused` under the
    /// caller's name.
    pub fn forbidden(user: UserView, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut page = Self::new(StatusCode::FORBIDDEN, message.clone());
        page.0.refused = Some(Refused {
            code: "forbidden",
            message,
            source: Some(user.name.clone()),
        });
        page.0.user = Some(user);
        page
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.0.field = Some(field.into());
        self
    }

    pub fn for_user(mut self, user: UserView) -> Self {
        self.0.user = Some(user);
        self
    }

    /// Names who was refused, for the refusal's row.
    pub fn refused_as(mut self, source: String) -> Self {
        if let Some(refused) = &mut self.0.refused {
            refused.source = Some(source);
        }
        self
    }

    fn heading(&self) -> &'static str {
        match self.0.status {
            StatusCode::BAD_REQUEST => "请求有误 · Bad request",
            StatusCode::UNAUTHORIZED => "未能登录 · Not signed in",
            StatusCode::FORBIDDEN => "无权访问 · Not for your role",
            StatusCode::NOT_FOUND => "未找到 · Not found",
            StatusCode::PAYLOAD_TOO_LARGE => "内容过大 · Too large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "格式不符 · Unsupported form",
            StatusCode::TOO_MANY_REQUESTS => "请求过多 · Too many requests",
            StatusCode::SERVICE_UNAVAILABLE => "暂不可用 · Unavailable",
            s if s.is_client_error() => "请求有误 · Refused",
            _ => "网关出错 · Gateway error",
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        let refused =
            matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN).then(|| Refused {
                code: e.code,
                message: e.message.clone(),
                source: None,
            });
        Self(Box::new(Details {
            status: e.status,
            message: e.message,
            field: e.field,
            user: None,
            refused,
        }))
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<crate::audit::AuditError> for PageError {
    fn from(e: crate::audit::AuditError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let heading = self.heading();
        let details = *self.0;
        let page = ErrorPage {
            layout: Layout::new(heading, "error", details.user),
            status: details.status.as_u16(),
            heading,
            message: &details.message,
            field: details.field.as_deref(),
        };
        let mut response = (details.status, page).into_response();
        if let Some(refused) = details.refused {
            response.extensions_mut().insert(refused);
        }
        response
    }
}
