//! The accounts service's events, on `login-events`, keyed by username.

use crate::{Event, ValidationError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginEventType {
    NewUserCreated,
    LoginSucceeded,
    IncorrectPassword,
    UnknownUser,
    AccountLocked,
}

impl LoginEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewUserCreated => "new_user_created",
            Self::LoginSucceeded => "login_succeeded",
            Self::IncorrectPassword => "incorrect_password",
            Self::UnknownUser => "unknown_user",
            Self::AccountLocked => "account_locked",
        }
    }
}

/// One registration or login outcome. Never carries a password or a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginEvent {
    pub event_id: Uuid,
    pub event_type: LoginEventType,
    pub occurred_at: DateTime<Utc>,
    pub username: String,
    /// Failed attempts in a row, with `incorrect_password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<u32>,
    /// Until when logins are refused, with `account_locked`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<DateTime<Utc>>,
}

impl Event for LoginEvent {
    const EVENT_TYPES: &'static [&'static str] = &[
        "new_user_created",
        "login_succeeded",
        "incorrect_password",
        "unknown_user",
        "account_locked",
    ];

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    fn event_type(&self) -> &str {
        self.event_type.as_str()
    }
}
