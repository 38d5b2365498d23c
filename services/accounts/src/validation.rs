//! The seed's rules for usernames and passwords, every failure named. Messages never contain
//! the password, nor any part of it.

use serde::Serialize;

/// One rule a field broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub field: &'static str,
    pub rule: &'static str,
    pub message: &'static str,
}

const fn v(field: &'static str, rule: &'static str, message: &'static str) -> Violation {
    Violation {
        field,
        rule,
        message,
    }
}

/// A username of 4–15 ASCII letters or digits.
pub fn username(name: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    let len = name.chars().count();
    if !(4..=15).contains(&len) {
        out.push(v("username", "length", "must be 4 to 15 characters long"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        out.push(v(
            "username",
            "charset",
            "may contain only letters and digits",
        ));
    }
    out
}

/// A rule that some character must meet: its name, its message, the test.
type CharRule = (&'static str, &'static str, fn(char) -> bool);

/// At least 8 characters, with an upper-case letter, a lower-case letter, a digit and a special
/// character (anything else that is not whitespace).
pub fn password(password: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    if password.chars().count() < 8 {
        out.push(v(
            "password",
            "length",
            "must be at least 8 characters long",
        ));
    }
    if password.chars().count() > 256 {
        out.push(v(
            "password",
            "max_length",
            "must be at most 256 characters long",
        ));
    }
    let rules: [CharRule; 4] = [
        (
            "uppercase",
            "must contain an upper-case letter",
            char::is_uppercase,
        ),
        (
            "lowercase",
            "must contain a lower-case letter",
            char::is_lowercase,
        ),
        ("digit", "must contain a digit", |c| c.is_ascii_digit()),
        ("special", "must contain a special character", |c| {
            !c.is_alphanumeric() && !c.is_whitespace()
        }),
    ];
    for (rule, message, holds) in rules {
        if !password.chars().any(holds) {
            out.push(v("password", rule, message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(violations: &[Violation]) -> Vec<&str> {
        violations.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn usernames_follow_the_seed() {
        assert!(username("alice").is_empty());
        assert!(username("Bob4").is_empty());
        assert!(username("abcdefghijklmno").is_empty(), "15 is the longest");
        assert_eq!(rules(&username("abc")), ["length"]);
        assert_eq!(rules(&username("abcdefghijklmnop")), ["length"]);
        assert_eq!(rules(&username("al ice")), ["charset"]);
        assert_eq!(rules(&username("a_b")), ["length", "charset"]);
        assert_eq!(rules(&username("jörg1")), ["charset"], "ASCII letters only");
    }

    #[test]
    fn passwords_name_every_rule_they_break() {
        assert!(password("Secr3t!pass").is_empty());
        assert_eq!(
            rules(&password("short")),
            ["length", "uppercase", "digit", "special"]
        );
        assert_eq!(rules(&password("alllowercase1!")), ["uppercase"]);
        assert_eq!(rules(&password("ALLUPPERCASE1!")), ["lowercase"]);
        assert_eq!(rules(&password("NoDigitsHere!")), ["digit"]);
        assert_eq!(rules(&password("NoSpecial123")), ["special"]);
        assert_eq!(
            rules(&password("With Space1a")),
            ["special"],
            "a space is not special"
        );
        assert_eq!(
            rules(&password(&format!("Aa1!{}", "x".repeat(300)))),
            ["max_length"]
        );
    }

    #[test]
    fn messages_never_carry_the_password() {
        let secret = "hunter2";
        for violation in password(secret) {
            assert!(!violation.message.contains(secret));
        }
    }
}
