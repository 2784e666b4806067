//! The `Dialect` abstraction: how one message format turns requests into
//! bytes for an agency and the agency's bytes back into the asset model.
//!
//! A dialect does no I/O. The gateway gets a `WireRequest` from it, records
//! the exact bytes in the audit log, sends them, records the reply, and only
//! then hands the reply back here to decode. A reply the dialect cannot map is
//! a `ReplyError`, which the gateway shows as `bad_reply` (or `error` for an
//! agency's own error answer): never a panic.

use std::fmt;

use crate::control::{ControlAction, ControlOutcome, ControlRequest};
use crate::ids::CaseNumber;
use crate::model::{Court, InquiryOutcome, Officer, Subject};

/// How an agency interacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// The reply to the request carries the result.
    Synchronous,
    /// The reply carries a ticket; the result is fetched later by polling.
    SubmitThenPoll,
    /// The reply acknowledges; the agency pushes the result to the
    /// gateway's callback endpoint.
    Callback,
}

/// One subject to ask one agency about.
#[derive(Debug, Clone)]
pub struct InquiryRequest {
    /// Stable across retries and restarts: the agency deduplicates by it.
    pub request_number: String,
    pub case_number: CaseNumber,
    pub subject: Subject,
    pub officers: Vec<Officer>,
}

/// What every message of one batch shares.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub court: Court,
    /// Batch number, for dialects that number their batches.
    pub batch_number: String,
    /// Where the agency pushes results (callback dialects).
    pub callback_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// An HTTP request ready to send: the path is appended to the agency's base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireRequest {
    pub method: HttpMethod,
    pub path: String,
    pub content_type: Option<String>,
    /// The bytes as rendered and encoded: the same buffer is audited and
    /// sent (clones share it).
    pub body: bytes::Bytes,
    /// The dialect's further headers (name, value), shared by every message
    /// of the operation.
    pub headers: std::sync::Arc<[(String, String)]>,
}

/// The agency's HTTP answer, as received.
#[derive(Debug, Clone, Copy)]
pub struct WireReply<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// Why a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the {dialect} message: {reason}")]
pub struct EncodeError {
    pub dialect: String,
    pub reason: String,
}

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The agency answered with its own error (HTTP status, error body).
    #[error("the agency answered HTTP {status}: {detail}")]
    Agency { status: u16, detail: String },
    /// The reply does not decode or does not map into the model.
    #[error("unreadable reply: {0}")]
    Malformed(String),
}

/// Longest text of a `ReplyError` made from a reply, in characters. The
/// gateway stores and shows it; a hostile agency must not make it as long as
/// its reply by putting megabytes where a code or a name belongs.
pub const MAX_ERROR_CHARS: usize = 400;

impl ReplyError {
    pub fn malformed(what: impl fmt::Display) -> Self {
        ReplyError::Malformed(what.to_string())
    }

    /// The same error with its text cut to `MAX_ERROR_CHARS` characters.
    pub fn clamped(self) -> Self {
        let cut = |text: String| match text.char_indices().nth(MAX_ERROR_CHARS) {
            None => text,
            Some((end, _)) => format!("{}…", &text[..end]),
        };
        match self {
            ReplyError::Malformed(m) => ReplyError::Malformed(cut(m)),
            ReplyError::Agency { status, detail } => ReplyError::Agency {
                status,
                detail: cut(detail),
            },
        }
    }
}

/// The outcome for one request number of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOutcome {
    pub request_number: String,
    pub outcome: Result<InquiryOutcome, ReplyError>,
}

/// A message format spoken by one or more agencies.
pub trait Dialect: Send + Sync + fmt::Debug {
    /// The dialect's name as agency files refer to it, e.g. `court-bank-xml`.
    fn name(&self) -> &str;

    fn interaction(&self) -> Interaction;

    /// How many subjects one message may carry.
    fn max_batch(&self) -> usize;

    /// Builds the inquiry message for a batch of `items` (at most `max_batch`).
    fn inquiry_request(
        &self,
        envelope: &Envelope,
        items: &[InquiryRequest],
    ) -> Result<WireRequest, EncodeError>;

    /// Decodes the reply to an inquiry message. `Err` means the whole reply is
    /// unusable; otherwise one outcome per item, in the order of `items`
    /// (an item the reply does not mention gets a `Malformed` outcome).
    fn inquiry_reply(
        &self,
        items: &[InquiryRequest],
        reply: WireReply<'_>,
    ) -> Result<Vec<ItemOutcome>, ReplyError>;

    /// Builds the poll for a pending request (submit-then-poll dialects).
    fn poll_request(
        &self,
        request_number: &str,
        ticket: Option<&str>,
    ) -> Result<WireRequest, EncodeError> {
        let _ = (request_number, ticket);
        Err(EncodeError {
            dialect: self.name().to_owned(),
            reason: "this dialect answers synchronously and cannot be polled".into(),
        })
    }

    /// Decodes the answer to a poll: still pending, or the final outcome.
    fn poll_reply(
        &self,
        request_number: &str,
        reply: WireReply<'_>,
    ) -> Result<InquiryOutcome, ReplyError> {
        let _ = (request_number, reply);
        Err(ReplyError::Malformed(format!(
            "the {} dialect has no poll replies",
            self.name()
        )))
    }

    /// Decodes a result the agency pushed: one outcome per request number it
    /// names (callback dialects).
    fn callback(&self, reply: WireReply<'_>) -> Result<Vec<ItemOutcome>, ReplyError> {
        let _ = reply;
        Err(ReplyError::Malformed(format!(
            "the {} dialect takes no callbacks",
            self.name()
        )))
    }

    /// Whether the dialect carries this control action at all.
    fn supports(&self, action: ControlAction) -> bool {
        let _ = action;
        false
    }

    /// Builds the message of one control measure.
    fn control_request(
        &self,
        envelope: &Envelope,
        request: &ControlRequest,
    ) -> Result<WireRequest, EncodeError> {
        let _ = envelope;
        Err(EncodeError {
            dialect: self.name().to_owned(),
            reason: format!("this dialect does not carry {}", request.action.as_str()),
        })
    }

    /// Whether the agency can be asked about a control request number
    /// (`control_poll_request`): for the result of a measure it answers
    /// later, for a waiting measure's promotion, and, after a crash or a
    /// timeout, to learn whether it ever received the measure before
    /// sending it again.
    fn can_query_control(&self) -> bool {
        false
    }

    /// Builds the request for a control measure's state by its request
    /// number (agencies that answer control measures later, and status
    /// queries).
    fn control_poll_request(
        &self,
        request_number: &str,
        ticket: Option<&str>,
    ) -> Result<WireRequest, EncodeError> {
        let _ = (request_number, ticket);
        Err(EncodeError {
            dialect: self.name().to_owned(),
            reason: "this dialect answers control measures at once".into(),
        })
    }

    /// Decodes the answer to a control-result poll.
    fn control_poll_reply(
        &self,
        request: &ControlRequest,
        reply: WireReply<'_>,
    ) -> Result<ControlOutcome, ReplyError> {
        let _ = (request, reply);
        Err(ReplyError::Malformed(format!(
            "the {} dialect has no control polls",
            self.name()
        )))
    }

    /// Decodes the agency's answer to a control measure.
    fn control_reply(
        &self,
        request: &ControlRequest,
        reply: WireReply<'_>,
    ) -> Result<ControlOutcome, ReplyError> {
        let _ = (request, reply);
        Err(ReplyError::Malformed(format!(
            "the {} dialect has no control replies",
            self.name()
        )))
    }
}

/// Matches decoded outcomes to the batch's items, in the items' order. The
/// agency may answer in any order; an item it leaves out is a bad reply.
pub(crate) fn match_items(
    items: &[InquiryRequest],
    mut decoded: Vec<(String, Result<InquiryOutcome, ReplyError>)>,
) -> Vec<ItemOutcome> {
    items
        .iter()
        .map(|item| {
            let outcome = match decoded
                .iter()
                .position(|(rn, _)| *rn == item.request_number)
            {
                Some(i) => decoded.swap_remove(i).1,
                None => Err(ReplyError::Malformed(
                    "the reply does not mention this request number".into(),
                )),
            };
            ItemOutcome {
                request_number: item.request_number.clone(),
                outcome,
            }
        })
        .collect()
}

/// Turns a non-success HTTP answer into the agency's error, with a short
/// excerpt of its body for the status detail.
pub(crate) fn agency_error(reply: WireReply<'_>) -> ReplyError {
    // 200 characters take at most 800 bytes: no need to decode the rest.
    let head = &reply.body[..reply.body.len().min(800)];
    let excerpt: String = String::from_utf8_lossy(head).chars().take(200).collect();
    ReplyError::Agency {
        status: reply.status,
        detail: excerpt,
    }
}
