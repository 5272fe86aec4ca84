//! The subscription state machine.

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Signed up, waiting for the deliberate click.
    Pending,
    /// Confirmed: in the audience.
    Confirmed,
    /// Left this list.
    Unsubscribed,
    /// Withdrew consent (all lists).
    Withdrawn,
}

/// A state name that is not one of ours (a corrupted row).
#[derive(Debug, thiserror::Error)]
#[error("unknown subscription state {0:?}")]
pub struct UnknownState(pub String);

impl SubscriptionState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Pending => "pending",
            SubscriptionState::Confirmed => "confirmed",
            SubscriptionState::Unsubscribed => "unsubscribed",
            SubscriptionState::Withdrawn => "withdrawn",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Result<Self, UnknownState> {
        match value {
            "pending" => Ok(SubscriptionState::Pending),
            "confirmed" => Ok(SubscriptionState::Confirmed),
            "unsubscribed" => Ok(SubscriptionState::Unsubscribed),
            "withdrawn" => Ok(SubscriptionState::Withdrawn),
            other => Err(UnknownState(other.to_owned())),
        }
    }

    /// What a new sign-up does to a subscription in this state.
    pub fn on_signup(self) -> SignupTransition {
        match self {
            SubscriptionState::Confirmed => SignupTransition::AlreadyConfirmed,
            SubscriptionState::Pending => SignupTransition::Reissue,
            // Leaving is final until the person opts in again, deliberately.
            SubscriptionState::Unsubscribed | SubscriptionState::Withdrawn => {
                SignupTransition::Restart
            }
        }
    }
}

/// The effect of a sign-up on an existing subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupTransition {
    /// Nothing changes and nothing is sent.
    AlreadyConfirmed,
    /// Still pending: a fresh token and a fresh email.
    Reissue,
    /// Back to pending, through double opt-in again.
    Restart,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for state in [
            SubscriptionState::Pending,
            SubscriptionState::Confirmed,
            SubscriptionState::Unsubscribed,
            SubscriptionState::Withdrawn,
        ] {
            assert_eq!(SubscriptionState::parse(state.as_str()).unwrap(), state);
        }
        assert!(SubscriptionState::parse("deleted").is_err());
    }

    #[test]
    fn nobody_is_resubscribed_silently() {
        assert_eq!(
            SubscriptionState::Unsubscribed.on_signup(),
            SignupTransition::Restart
        );
        assert_eq!(
            SubscriptionState::Confirmed.on_signup(),
            SignupTransition::AlreadyConfirmed
        );
    }
}
