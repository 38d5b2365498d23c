//! Events per key in tumbling one-minute windows, by event time: payments per user (flagged as
//! card testing) and login attempts per username (flagged as brute force).
//!
//! **Stream time** is the latest payment time seen in a partition. A window `[start, end)` closes
//! when stream time reaches `end + grace`; its result is published then, once. **Late records**:
//! a payment whose window has closed is counted in `stream_late_records_total` and dropped, so a
//! published result never changes. A payment seen twice (its `event_id` is in the window already:
//! a redelivery upstream) is counted once.

use chrono::{DateTime, Utc};
use events::{
    Amount, LoginEvent, LoginEventType, LoginWindowClosed, PaymentProcessed, PaymentStatus,
    PaymentWindowClosed,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Namespace of window result ids: `uuid5(WINDOW_EVENTS, "<user_id>/<window start ms>")`.
const WINDOW_EVENTS: Uuid = Uuid::from_u128(0x2f6c_1d8e_4a7b_4c39_9e05_7a1b_2c3d_4e5f);
/// Namespace of login window ids: `uuid5(LOGIN_WINDOW_EVENTS, "<username>/<window start ms>")`.
const LOGIN_WINDOW_EVENTS: Uuid = Uuid::from_u128(0x6b1d_3e5f_7a9c_4b2d_8e0f_1a3c_5e7b_9d2f);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub size_ms: i64,
    pub grace_ms: i64,
    /// Flagged events (declines, failed logins) in one window that flag the window.
    pub flag_at: u64,
}

/// One event as a window counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub event_id: Uuid,
    pub at_ms: i64,
    /// A decline, a failed login.
    pub flagged: bool,
    pub cents: i64,
}

impl Observation {
    pub fn payment(p: &PaymentProcessed) -> Self {
        Self {
            event_id: p.event_id,
            at_ms: p.occurred_at.timestamp_millis(),
            flagged: p.status == PaymentStatus::PaymentFailed,
            cents: p.amount.cents(),
        }
    }

    /// A login attempt; registrations and lock notices are not attempts.
    pub fn login(e: &LoginEvent) -> Option<Self> {
        let flagged = match e.event_type {
            LoginEventType::IncorrectPassword | LoginEventType::UnknownUser => true,
            LoginEventType::LoginSucceeded => false,
            LoginEventType::NewUserCreated | LoginEventType::AccountLocked => return None,
        };
        Some(Self {
            event_id: e.event_id,
            at_ms: e.occurred_at.timestamp_millis(),
            flagged,
            cents: 0,
        })
    }
}

/// One window's tally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub count: u64,
    pub flagged: u64,
    pub amount_cents: i64,
    /// The events counted, so an event delivered twice is counted once.
    pub event_ids: Vec<Uuid>,
}

/// A user's open windows (by start, ms since the epoch), and the latest payment time seen for
/// the user, from which a partition's stream time is rebuilt after a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserWindows {
    pub windows: BTreeMap<i64, Window>,
    pub latest_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Counted,
    Duplicate,
    /// Its window had closed: dropped.
    Late,
}

impl Rules {
    pub fn start(&self, t_ms: i64) -> i64 {
        t_ms.div_euclid(self.size_ms) * self.size_ms
    }

    /// Stream time at which the window starting at `start` closes.
    pub fn closes_at(&self, start: i64) -> i64 {
        start + self.size_ms + self.grace_ms
    }

    /// Adds an event to its key's windows, where the partition's stream time (before this
    /// event) is `stream_time`.
    pub fn add(&self, user: &mut UserWindows, event: &Observation, stream_time: i64) -> Added {
        let t = event.at_ms;
        let start = self.start(t);
        if user
            .windows
            .get(&start)
            .is_some_and(|w| w.event_ids.contains(&event.event_id))
        {
            return Added::Duplicate;
        }
        if stream_time >= self.closes_at(start) {
            return Added::Late;
        }
        let w = user.windows.entry(start).or_default();
        w.count += 1;
        if event.flagged {
            w.flagged += 1;
        }
        w.amount_cents += event.cents;
        w.event_ids.push(event.event_id);
        user.latest_ms = user.latest_ms.max(t);
        Added::Counted
    }

    /// The starts of `user`'s windows that have closed at `stream_time`.
    pub fn closed(&self, user: &UserWindows, stream_time: i64) -> Vec<i64> {
        user.windows
            .keys()
            .copied()
            .filter(|start| stream_time >= self.closes_at(*start))
            .collect()
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(ms).expect("a window time")
    }

    pub fn result(&self, user_id: u64, start: i64, w: &Window) -> PaymentWindowClosed {
        PaymentWindowClosed {
            event_id: Uuid::new_v5(&WINDOW_EVENTS, format!("{user_id}/{start}").as_bytes()),
            event_type: PaymentWindowClosed::EVENT_TYPE.to_owned(),
            occurred_at: Self::at(start + self.size_ms),
            user_id,
            window_start: Self::at(start),
            window_end: Self::at(start + self.size_ms),
            payments: w.count,
            declined: w.flagged,
            amount: Amount::from_cents(w.amount_cents),
            suspected_card_testing: w.flagged >= self.flag_at,
        }
    }

    pub fn login_result(&self, username: &str, start: i64, w: &Window) -> LoginWindowClosed {
        LoginWindowClosed {
            event_id: Uuid::new_v5(
                &LOGIN_WINDOW_EVENTS,
                format!("{username}/{start}").as_bytes(),
            ),
            event_type: LoginWindowClosed::EVENT_TYPE.to_owned(),
            occurred_at: Self::at(start + self.size_ms),
            username: username.to_owned(),
            window_start: Self::at(start),
            window_end: Self::at(start + self.size_ms),
            attempts: w.count,
            failed: w.flagged,
            suspected_brute_force: w.flagged >= self.flag_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        size_ms: 60_000,
        grace_ms: 10_000,
        flag_at: 3,
    };
    /// 2023-11-14T22:13:00Z, a minute boundary.
    const T0: i64 = 1_699_999_980_000;

    fn payment(at_ms: i64, declined: bool) -> PaymentProcessed {
        PaymentProcessed {
            event_id: Uuid::new_v4(),
            event_type: PaymentProcessed::EVENT_TYPE.into(),
            occurred_at: DateTime::from_timestamp_millis(at_ms).unwrap(),
            order_id: Uuid::new_v4(),
            user_id: 7,
            amount: Amount::from_cents(1_000),
            currency: "USD".into(),
            status: if declined {
                PaymentStatus::PaymentFailed
            } else {
                PaymentStatus::PaymentSuccessful
            },
            reason: None,
            order_created_at: DateTime::from_timestamp_millis(at_ms).unwrap(),
        }
    }

    #[test]
    fn windows_are_tumbling_minutes_including_the_start_excluding_the_end() {
        assert_eq!(RULES.start(T0), T0);
        assert_eq!(RULES.start(T0 + 59_999), T0);
        assert_eq!(RULES.start(T0 + 60_000), T0 + 60_000);
        assert_eq!(RULES.start(-1), -60_000, "before the epoch too");
    }

    #[test]
    fn a_window_closes_at_its_end_plus_grace_and_late_payments_are_dropped() {
        let mut u = UserWindows::default();
        for (at, declined) in [(T0 + 1_000, true), (T0 + 30_000, true), (T0 + 59_999, true)] {
            assert_eq!(
                RULES.add(&mut u, &Observation::payment(&payment(at, declined)), at),
                Added::Counted
            );
        }
        // Stream time moves into the next window, but not past the grace: still open.
        let st = T0 + 69_999;
        assert!(RULES.closed(&u, st).is_empty());
        assert_eq!(
            RULES.add(
                &mut u,
                &Observation::payment(&payment(T0 + 5_000, false)),
                st
            ),
            Added::Counted,
            "within the grace, a late-arriving payment still counts"
        );
        let st = T0 + 70_000;
        assert_eq!(RULES.closed(&u, st), vec![T0]);
        assert_eq!(
            RULES.add(
                &mut u,
                &Observation::payment(&payment(T0 + 6_000, false)),
                st
            ),
            Added::Late
        );
        let result = RULES.result(7, T0, &u.windows[&T0]);
        assert_eq!((result.payments, result.declined), (4, 3));
        assert!(result.suspected_card_testing);
        assert_eq!(result.amount, Amount::from_cents(4_000));
        assert_eq!(
            result.window_end.timestamp_millis() - result.window_start.timestamp_millis(),
            60_000
        );
    }

    #[test]
    fn a_payment_delivered_twice_counts_once_and_results_are_identical() {
        let mut u = UserWindows::default();
        let p = Observation::payment(&payment(T0 + 1_000, true));
        assert_eq!(RULES.add(&mut u, &p, T0), Added::Counted);
        assert_eq!(RULES.add(&mut u, &p, T0), Added::Duplicate);
        assert_eq!(u.windows[&T0].count, 1);
        assert!(!RULES.result(7, T0, &u.windows[&T0]).suspected_card_testing);
        assert_eq!(
            RULES.result(7, T0, &u.windows[&T0]),
            RULES.result(7, T0, &u.windows[&T0].clone())
        );
    }

    #[test]
    fn failed_logins_flag_a_brute_force_window_and_registrations_are_not_attempts() {
        let rules = Rules {
            flag_at: 5,
            ..RULES
        };
        let login = |t: LoginEventType, at: i64| LoginEvent {
            event_id: Uuid::new_v4(),
            event_type: t,
            occurred_at: DateTime::from_timestamp_millis(at).unwrap(),
            username: "eve".into(),
            failed_attempts: None,
            locked_until: None,
        };
        assert_eq!(
            Observation::login(&login(LoginEventType::NewUserCreated, T0)),
            None
        );
        assert_eq!(
            Observation::login(&login(LoginEventType::AccountLocked, T0)),
            None
        );
        let mut u = UserWindows::default();
        for i in 0..5 {
            let o = Observation::login(&login(LoginEventType::IncorrectPassword, T0 + i * 1_000));
            rules.add(&mut u, &o.unwrap(), T0);
        }
        let ok = Observation::login(&login(LoginEventType::LoginSucceeded, T0 + 9_000)).unwrap();
        rules.add(&mut u, &ok, T0);
        let r = rules.login_result("eve", T0, &u.windows[&T0]);
        assert_eq!(
            (r.attempts, r.failed, r.suspected_brute_force),
            (6, 5, true)
        );
        assert_ne!(
            r.event_id,
            rules
                .login_result("eve", T0 + 60_000, &u.windows[&T0])
                .event_id
        );
    }
}
