//! A self-hosted proof-of-work challenge for the hosted form (the ALTCHA
//! protocol: find `number` with SHA-256(salt || number) = challenge), signed
//! with a server key so no state is kept until a solution is spent.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a challenge may be solved and spent.
pub const CHALLENGE_TTL_SECS: i64 = 600;

/// What the form's script receives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Challenge {
    pub algorithm: String,
    pub challenge: String,
    pub maxnumber: u64,
    pub salt: String,
    pub signature: String,
}

/// What the form sends back (base64 of this JSON in the `altcha` field).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Solution {
    pub algorithm: String,
    pub challenge: String,
    pub number: u64,
    pub salt: String,
    pub signature: String,
}

/// Why a solution was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    #[error("the proof-of-work field is missing or malformed")]
    Malformed,
    #[error("the proof of work is not valid")]
    Invalid,
    #[error("the proof of work has expired")]
    Expired,
    #[error("the proof of work was already used")]
    Replayed,
}

/// Issues and checks challenges; remembers spent ones until they expire.
pub struct ProofOfWork {
    key: Vec<u8>,
    spent: Mutex<HashMap<String, DateTime<Utc>>>,
}

fn sha256_hex(input: &str) -> String {
    hex::encode(Sha256::digest(input.as_bytes()))
}

impl ProofOfWork {
    /// A checker keyed with `key`.
    pub fn new(key: Vec<u8>) -> Self {
        ProofOfWork {
            key,
            spent: Mutex::new(HashMap::new()),
        }
    }

    fn sign(&self, challenge: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"assent-pow-v1\0");
        mac.update(challenge.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A new challenge whose answer lies in `0..=maxnumber`.
    pub fn issue(&self, maxnumber: u64, now: DateTime<Utc>) -> Challenge {
        let mut bytes = [0u8; 12];
        rand::rng().fill_bytes(&mut bytes);
        let expires = now.timestamp() + CHALLENGE_TTL_SECS;
        let salt = format!("{}?expires={expires}", hex::encode(bytes));
        let number = rand::rng().random_range(0..=maxnumber);
        let challenge = sha256_hex(&format!("{salt}{number}"));
        Challenge {
            algorithm: "SHA-256".to_owned(),
            signature: self.sign(&challenge),
            challenge,
            maxnumber,
            salt,
        }
    }

    /// Checks and spends a solution (the `altcha` field's value).
    pub fn verify(&self, field: &str, now: DateTime<Utc>) -> Result<(), PowError> {
        let json = STANDARD
            .decode(field.trim())
            .map_err(|_| PowError::Malformed)?;
        let solution: Solution = serde_json::from_slice(&json).map_err(|_| PowError::Malformed)?;
        if solution.algorithm != "SHA-256" {
            return Err(PowError::Invalid);
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"assent-pow-v1\0");
        mac.update(solution.challenge.as_bytes());
        let signature = hex::decode(&solution.signature).map_err(|_| PowError::Invalid)?;
        mac.verify_slice(&signature)
            .map_err(|_| PowError::Invalid)?;
        if sha256_hex(&format!("{}{}", solution.salt, solution.number)) != solution.challenge {
            return Err(PowError::Invalid);
        }
        let expires = solution
            .salt
            .split_once("?expires=")
            .and_then(|(_, t)| t.parse::<i64>().ok())
            .ok_or(PowError::Invalid)?;
        if now.timestamp() > expires {
            return Err(PowError::Expired);
        }
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        spent.retain(|_, until| *until > now);
        let until = DateTime::from_timestamp(expires, 0).unwrap_or(now);
        if spent.insert(solution.challenge, until).is_some() {
            return Err(PowError::Replayed);
        }
        Ok(())
    }
}

/// Solves a challenge by brute force (what the form's script does; tests
/// and non-browser clients use it).
pub fn solve(challenge: &Challenge) -> Option<String> {
    (0..=challenge.maxnumber)
        .find(|n| sha256_hex(&format!("{}{n}", challenge.salt)) == challenge.challenge)
        .map(|number| {
            let solution = Solution {
                algorithm: challenge.algorithm.clone(),
                challenge: challenge.challenge.clone(),
                number,
                salt: challenge.salt.clone(),
                signature: challenge.signature.clone(),
            };
            STANDARD.encode(serde_json::to_vec(&solution).unwrap_or_default())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_solve_verify_and_no_replay() {
        let pow = ProofOfWork::new(vec![7; 32]);
        let now = Utc::now();
        let challenge = pow.issue(2_000, now);
        let answer = solve(&challenge).unwrap();
        assert_eq!(pow.verify(&answer, now), Ok(()));
        assert_eq!(pow.verify(&answer, now), Err(PowError::Replayed));
        let late = pow.issue(2_000, now);
        let answer = solve(&late).unwrap();
        assert_eq!(
            pow.verify(
                &answer,
                now + chrono::Duration::seconds(CHALLENGE_TTL_SECS + 1)
            ),
            Err(PowError::Expired)
        );
        let other = ProofOfWork::new(vec![8; 32]);
        let forged = solve(&other.issue(100, now)).unwrap();
        assert_eq!(pow.verify(&forged, now), Err(PowError::Invalid));
        assert_eq!(pow.verify("not base64!", now), Err(PowError::Malformed));
    }
}
