//! Argon2id password hashes (OWASP's parameters: 19 MiB, 2 passes, 1 lane), and a dummy hash that
//! a login for an unknown user is verified against, so that it costs what a known user's does.
//! Both are CPU-bound for tens of milliseconds: callers run them on the blocking pool.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    dummy: String,
}

impl Passwords {
    pub fn new() -> Self {
        let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut this = Self {
            argon,
            dummy: String::new(),
        };
        // A hash of a random password nobody knows, with the same parameters as real ones.
        let random: String = uuid::Uuid::new_v4().to_string();
        this.dummy = this.hash(&random);
        this
    }

    /// The PHC string of `password` with a fresh salt.
    pub fn hash(&self, password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .expect("hashing with valid parameters")
            .to_string()
    }

    /// Whether `password` matches `hash`. A hash that does not parse matches nothing.
    pub fn verify(&self, hash: &str, password: &str) -> bool {
        PasswordHash::new(hash)
            .is_ok_and(|h| self.argon.verify_password(password.as_bytes(), &h).is_ok())
    }

    /// Verifies `password` against the dummy hash: the work of a real check, always false.
    pub fn verify_dummy(&self, password: &str) -> bool {
        self.verify(&self.dummy, password)
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let p = Passwords::new();
        let h = p.hash("Secr3t!pass");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!h.contains("Secr3t!pass"));
        assert!(p.verify(&h, "Secr3t!pass"));
        assert!(!p.verify(&h, "Secr3t!pasS"));
        assert_ne!(h, p.hash("Secr3t!pass"), "salted");
        assert!(!p.verify_dummy("Secr3t!pass"));
        assert!(!p.verify("not a hash", "x"));
    }
}
