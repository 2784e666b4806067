//! The console's static files (`gateway/static/console/`), compiled into
//! the binary: its style sheet and htmx. Each is served under a name that
//! changes with its content, so browsers may keep it for a year.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::PageError;

const CSS: &[u8] = include_bytes!("../../static/console/console.css");
const HTMX: &[u8] = include_bytes!("../../static/console/htmx-2.0.11.min.js");
const HTMX_FILE: &str = "htmx-2.0.11.min.js";
const HTMX_LICENSE: &[u8] = include_bytes!("../../static/console/htmx-LICENSE.txt");

/// Where pages load htmx from.
pub const HTMX_PATH: &str = "/console/static/htmx-2.0.11.min.js";

/// The style sheet's name: `console-` and the first 12 hex digits of its
/// SHA-256 (a new sheet is a new name, so a year's caching is safe).
static CSS_FILE: LazyLock<String> = LazyLock::new(|| {
    let digest = hex::encode(Sha256::digest(CSS));
    format!("console-{}.css", &digest[..12])
});

static CSS_PATH: LazyLock<String> = LazyLock::new(|| format!("/console/static/{}", *CSS_FILE));

/// Where pages load the style sheet from.
pub fn css_path() -> &'static str {
    CSS_PATH.as_str()
}

/// `GET /console/static/{file}`.
pub async fn serve(Path(file): Path<String>) -> Result<Response, PageError> {
    let (body, content_type) = if file == *CSS_FILE {
        (CSS, "text/css; charset=utf-8")
    } else if file == HTMX_FILE {
        (HTMX, "text/javascript; charset=utf-8")
    } else if file == "htmx-LICENSE.txt" {
        (HTMX_LICENSE, "text/plain; charset=utf-8")
    } else {
        return Err(PageError::not_found(
            "没有这个文件 / No such file (an older page may name a style sheet since replaced).",
        ));
    };
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(response)
}
