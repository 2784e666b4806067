//! What one agency remembers while it runs: every request number it has
//! received (the request log), the answer it gave to each (so a repeated
//! request number gets the same answer, and a registry the same ticket), and
//! the faults currently injected, with their generator and tally. Answers
//! are kept dialect-neutral (the accounts or units as they stood when the
//! answer was given, control measures included) and rendered by the dialect
//! on every reply, which is deterministic, so a repeat is byte-for-byte the
//! first answer. A registry
//! also remembers which request numbers it has scheduled a result push for,
//! and logs every push attempt. The control ledger (measures placed, money
//! moved, the mock's clock) is kept here too, under the same lock.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::bank_book::Account;
use crate::control::ControlBook;
use crate::fault_layer::{FaultEngine, Faults};
use crate::further_book::{
    EquityHolding, FundAccount, FurtherFound, PaymentAccount, SecuritiesHolding, Vehicle,
};
use crate::registry_book::Unit;

/// What an agency found for a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The subject's holdings as they stood when answered, never empty.
    Found(Found),
    NotFound,
    Refused(String),
}

/// Holdings as an answer shows them: a snapshot, so that a repeated request
/// number gets the very answer it got the first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    Accounts(Vec<Account>),
    Units(Vec<Unit>),
    /// Records of a further kind of asset.
    Further(FurtherFound),
}

impl Found {
    pub fn accounts(&self) -> &[Account] {
        match self {
            Self::Accounts(accounts) => accounts,
            Self::Units(_) | Self::Further(_) => &[],
        }
    }

    pub fn units(&self) -> &[Unit] {
        match self {
            Self::Units(units) => units,
            Self::Accounts(_) | Self::Further(_) => &[],
        }
    }

    pub fn vehicles(&self) -> &[Vehicle] {
        self.further().map_or(&[], FurtherFound::vehicles)
    }

    pub fn securities(&self) -> &[SecuritiesHolding] {
        self.further().map_or(&[], FurtherFound::securities)
    }

    pub fn payment_accounts(&self) -> &[PaymentAccount] {
        self.further().map_or(&[], FurtherFound::payment_accounts)
    }

    pub fn fund_accounts(&self) -> &[FundAccount] {
        self.further().map_or(&[], FurtherFound::fund_accounts)
    }

    pub fn equity(&self) -> &[EquityHolding] {
        self.further().map_or(&[], FurtherFound::equity)
    }

    fn further(&self) -> Option<&FurtherFound> {
        match self {
            Self::Further(found) => Some(found),
            Self::Accounts(_) | Self::Units(_) => None,
        }
    }
}

/// A registry's receipt for a submission: the result shows from `ready_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub number: String,
    pub ready_at: tokio::time::Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub holder_id: String,
    pub answered_at: DateTime<FixedOffset>,
    pub outcome: Outcome,
    pub ticket: Option<Ticket>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RequestKind {
    Inquiry,
    Poll,
    /// A control order (freeze, renew, release, deduct; seal, renew seal,
    /// release seal), first time or repeated.
    Control,
    /// A question about a control order's current state (a bank's status
    /// query, a registry's control poll).
    ControlQuery,
    /// Not received but sent: one attempt of a registry to push a result to
    /// the submission's callback address (`HDDZ`).
    Callback,
}

/// How one callback attempt ended: the HTTP status answered, or why there
/// was no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallbackOutcome {
    Status(u16),
    Error(String),
}

/// One request number as received, once per kind of message: a retry
/// raises `count` rather than adding an entry. Callback attempts are the
/// exception: each is an entry of its own (`received_at` is when it was
/// made) with its outcome in `callback_status` or `callback_error`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RequestRecord {
    pub request_number: String,
    pub kind: RequestKind,
    pub received_at: DateTime<Utc>,
    pub last_received_at: DateTime<Utc>,
    pub count: u32,
    pub holder_id: Option<String>,
    /// Which attempt of the push this was, from 1 (callbacks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_attempt: Option<u32>,
    /// The HTTP status the callback address answered (callbacks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_status: Option<u16>,
    /// Why the callback address gave no answer (callbacks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_error: Option<String>,
}

#[derive(Debug)]
pub(crate) struct AgencyState {
    pub faults: Faults,
    /// The fault generator, the rate limit's window and the tally of
    /// injected faults.
    pub engine: FaultEngine,
    requests: Vec<RequestRecord>,
    request_index: HashMap<(String, RequestKind), usize>,
    answers: HashMap<String, Answer>,
    /// Request numbers whose result push is scheduled or done.
    callbacks: HashSet<String>,
    tickets_issued: u64,
    /// Control measures, moved money and the mock's clock.
    pub control: ControlBook,
}

impl AgencyState {
    pub fn new(faults: Faults, seed: u64) -> Self {
        Self {
            faults,
            engine: FaultEngine::new(seed),
            requests: Vec::new(),
            request_index: HashMap::new(),
            answers: HashMap::new(),
            callbacks: HashSet::new(),
            tickets_issued: 0,
            control: ControlBook::default(),
        }
    }

    pub fn record(&mut self, request_number: &str, kind: RequestKind, holder_id: Option<&str>) {
        let now = Utc::now();
        let key = (request_number.to_owned(), kind);
        if let Some(&i) = self.request_index.get(&key)
            && let Some(r) = self.requests.get_mut(i)
        {
            r.count += 1;
            r.last_received_at = now;
            return;
        }
        self.request_index.insert(key, self.requests.len());
        self.requests.push(RequestRecord {
            request_number: request_number.to_owned(),
            kind,
            received_at: now,
            last_received_at: now,
            count: 1,
            holder_id: holder_id.map(str::to_owned),
            callback_attempt: None,
            callback_status: None,
            callback_error: None,
        });
    }

    /// Logs one attempt to push a result, made at `at`, always as a new entry.
    pub fn record_callback(
        &mut self,
        request_number: &str,
        holder_id: &str,
        attempt: u32,
        at: DateTime<Utc>,
        outcome: CallbackOutcome,
    ) {
        let (callback_status, callback_error) = match outcome {
            CallbackOutcome::Status(status) => (Some(status), None),
            CallbackOutcome::Error(error) => (None, Some(error)),
        };
        self.requests.push(RequestRecord {
            request_number: request_number.to_owned(),
            kind: RequestKind::Callback,
            received_at: at,
            last_received_at: at,
            count: 1,
            holder_id: Some(holder_id.to_owned()),
            callback_attempt: Some(attempt),
            callback_status,
            callback_error,
        });
    }

    /// Claims the result push of a request number: true the first time,
    /// false when a push is already scheduled or done.
    pub fn claim_callback(&mut self, request_number: &str) -> bool {
        self.callbacks.insert(request_number.to_owned())
    }

    pub fn requests(&self) -> &[RequestRecord] {
        &self.requests
    }

    pub fn answer(&self, request_number: &str) -> Option<&Answer> {
        self.answers.get(request_number)
    }

    pub fn remember(&mut self, request_number: &str, answer: Answer) {
        self.answers.insert(request_number.to_owned(), answer);
    }

    /// The next registry ticket number: the day (UTC+8) and a serial.
    pub fn next_ticket_number(&mut self, today: &str) -> String {
        self.tickets_issued += 1;
        format!("{today}{:05}", self.tickets_issued)
    }
}
