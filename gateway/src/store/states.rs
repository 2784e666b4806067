//! Where things stand: the states of tasks, inquiries, orders and plans,
//! each spelled in its column in one place (`as_str`, and `TryFrom<Text>`
//! to read it back). The spellings are the stored data's and the API's:
//! they never change.

use std::borrow::Cow;
use std::fmt;

use adapters::control::ControlStatus;
use adapters::model::AgencyStatus;
use serde::{Serialize, Serializer};
use sqlx::error::BoxDynError;

use super::columns::Text;
use super::shared::Arg;

/// How a state is read from and written to its column.
macro_rules! column_text {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl TryFrom<Text> for $name {
            type Error = BoxDynError;

            fn try_from(text: Text) -> Result<Self, Self::Error> {
                let text = text.0.unwrap_or_default();
                $name::parse(&text)
                    .ok_or_else(|| format!("{text:?} is no {}", stringify!($name)).into())
            }
        }

        impl From<$name> for Arg<'_> {
            fn from(state: $name) -> Self {
                Arg::Text(Some(Cow::Borrowed(state.as_str())))
            }
        }
    };
}

/// An enum of states, each with its column text.
macro_rules! states {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        column_text!($name);
    };
}

/// A task's place in its life: waiting to be sent, waiting to be polled
/// or pushed, or finished with the agency's status (its column holds that
/// status's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Queued,
    Polling,
    /// Sent; the agency will push its result to the callback endpoint.
    Awaiting,
    Finished(AgencyStatus),
}

impl TaskState {
    /// The states of a task still to finish.
    pub const UNFINISHED: [TaskState; 3] =
        [TaskState::Queued, TaskState::Polling, TaskState::Awaiting];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Polling => "polling",
            TaskState::Awaiting => "awaiting",
            TaskState::Finished(status) => status.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "queued" => TaskState::Queued,
            "polling" => TaskState::Polling,
            "awaiting" => TaskState::Awaiting,
            other => TaskState::Finished(AgencyStatus::parse(other)?),
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(self, TaskState::Finished(_))
    }

    /// The agency's status as the API shows it.
    pub fn agency_status(self) -> AgencyStatus {
        match self {
            TaskState::Queued | TaskState::Polling | TaskState::Awaiting => AgencyStatus::Pending,
            TaskState::Finished(status) => status,
        }
    }
}

column_text!(TaskState);

states! {
    /// An inquiry runs until every agency answered or its deadline passed.
    pub enum InquiryStatus {
        #[default]
        Running = "running",
        Completed = "completed",
    }
}

states! {
    /// What the order worker does with an order next (`orders`).
    pub enum OrderPhase {
        /// Never sent, or the agency said it has never seen the request
        /// number.
        #[default]
        Send = "send",
        /// A send may have reached the agency: ask it before anything else.
        Query = "query",
        /// Accepted; the result comes later.
        Poll = "poll",
        /// Waiting in line behind another authority's measure.
        Watch = "watch",
        Done = "done",
    }
}

states! {
    /// Where an order stands, as its caller sees it.
    pub enum OrderStatus {
        /// Stored, not sent yet.
        #[default]
        Accepted = "accepted",
        /// Sent (or perhaps sent); the agency has not decided.
        Dispatched = "dispatched",
        Applied = "applied",
        Partial = "partial",
        Waiting = "waiting",
        Refused = "refused",
        Released = "released",
        Expired = "expired",
        Failed = "failed",
    }
}

impl OrderStatus {
    /// Statuses in which a measure stands (in force or waiting in line),
    /// and so can still lapse.
    pub const LIVE: [OrderStatus; 3] = [
        OrderStatus::Applied,
        OrderStatus::Partial,
        OrderStatus::Waiting,
    ];

    /// Statuses after which a measure stands no more.
    pub const ENDED: [OrderStatus; 4] = [
        OrderStatus::Released,
        OrderStatus::Expired,
        OrderStatus::Refused,
        OrderStatus::Failed,
    ];

    pub fn is_live(self) -> bool {
        OrderStatus::LIVE.contains(&self)
    }

    /// In force (for all or part of what was asked).
    pub fn in_force(self) -> bool {
        matches!(self, OrderStatus::Applied | OrderStatus::Partial)
    }

    /// Final for its caller (a waiting measure may still be promoted, an
    /// applied one released or expired: those change later, and each change
    /// is reported).
    pub fn is_decided(self) -> bool {
        !matches!(self, OrderStatus::Accepted | OrderStatus::Dispatched)
    }
}

/// The order status an agency's answer gives.
impl From<ControlStatus> for OrderStatus {
    fn from(status: ControlStatus) -> Self {
        match status {
            ControlStatus::Applied => OrderStatus::Applied,
            ControlStatus::Partial => OrderStatus::Partial,
            ControlStatus::Waiting => OrderStatus::Waiting,
            ControlStatus::Refused => OrderStatus::Refused,
            ControlStatus::Released => OrderStatus::Released,
            ControlStatus::Lapsed => OrderStatus::Expired,
            ControlStatus::Pending | ControlStatus::Unknown => OrderStatus::Dispatched,
        }
    }
}

states! {
    /// A freeze plan runs until it froze the amount or ran out of accounts.
    pub enum PlanStatus {
        #[default]
        Running = "running",
        Completed = "completed",
        /// Finished with less than the amount frozen.
        Partial = "partial",
        /// Finished with nothing frozen.
        Failed = "failed",
    }
}

/// `('a', 'b')`: states as a statement lists them.
pub fn sql_list<T: fmt::Display>(states: &[T]) -> String {
    let names: Vec<String> = states.iter().map(|s| format!("'{s}'")).collect();
    format!("({})", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spellings<T: fmt::Display>(all: &[T]) -> Vec<String> {
        all.iter().map(T::to_string).collect()
    }

    /// The spellings are the stored data's: a database written by any
    /// earlier version reads back, and is written as before.
    #[test]
    fn states_are_spelled_as_stored_and_read_back() {
        assert_eq!(
            spellings(OrderStatus::ALL),
            [
                "accepted",
                "dispatched",
                "applied",
                "partial",
                "waiting",
                "refused",
                "released",
                "expired",
                "failed"
            ]
        );
        assert_eq!(
            spellings(OrderPhase::ALL),
            ["send", "query", "poll", "watch", "done"]
        );
        assert_eq!(
            spellings(PlanStatus::ALL),
            ["running", "completed", "partial", "failed"]
        );
        assert_eq!(spellings(InquiryStatus::ALL), ["running", "completed"]);
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(*s));
        }
        for p in OrderPhase::ALL {
            assert_eq!(OrderPhase::parse(p.as_str()), Some(*p));
        }
        let tasks = [
            "queued",
            "polling",
            "awaiting",
            "answered",
            "no_record",
            "refused",
            "timeout",
            "circuit_open",
            "rate_limited",
            "bad_reply",
            "error",
        ];
        for text in tasks {
            let state = TaskState::parse(text).expect(text);
            assert_eq!(state.as_str(), text);
            assert_eq!(state.is_finished(), !TaskState::UNFINISHED.contains(&state));
        }
        assert!(OrderStatus::try_from(Text(Some("lapsed".into()))).is_err());
        assert!(TaskState::try_from(Text(None)).is_err());
        assert_eq!(
            sql_list(&OrderStatus::LIVE),
            "('applied', 'partial', 'waiting')"
        );
    }
}
