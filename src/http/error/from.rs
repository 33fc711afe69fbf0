//! The domain's errors as [`ApiError`]s (and the token exchange's as
//! [`OAuthError`]s): which status and code each cause gets, in one place.

use super::{ApiError, OAuthError};
use crate::auth::AuthError;
use crate::broker::BrokerError;
use crate::db::DbError;
use crate::fleet::FleetError;
use crate::hub::{BearerError, IssueTicketError, OpenStreamError, PublishError, RevocationError};
use crate::ticket::IssueError;

impl From<ApiError> for OAuthError {
    /// Failures of the request as a whole (its body, the service) keep their
    /// codes; a body that is not a form is an `invalid_request`.
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidBody(message) | ApiError::InvalidQuery(message) => {
                Self::InvalidRequest(message)
            }
            e => Self::Api(e),
        }
    }
}

impl From<BearerError> for OAuthError {
    fn from(e: BearerError) -> Self {
        match e {
            BearerError::Verify(AuthError::Unavailable(cause)) => {
                Self::Api(ApiError::Unavailable(cause))
            }
            e => Self::InvalidGrant(format!(
                "the subject token was not accepted: {}",
                ApiError::from(e)
            )),
        }
    }
}

impl From<IssueTicketError> for OAuthError {
    fn from(e: IssueTicketError) -> Self {
        match e {
            IssueTicketError::TooManyTopics
            | IssueTicketError::NoOwnTopic
            | IssueTicketError::Forbidden(_) => Self::InvalidScope(e.to_string()),
            IssueTicketError::Store(e) => Self::Api(e.into()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(message) => Self::InvalidToken(message),
            AuthError::Expired => Self::TokenExpired,
            AuthError::Unavailable(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::TooMany { retry_after } => Self::TooManyTickets { retry_after },
            IssueError::Full => Self::Unavailable("the ticket store is full".into()),
            IssueError::Unavailable(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Unavailable(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<BearerError> for ApiError {
    fn from(e: BearerError) -> Self {
        match e {
            BearerError::Verify(e) => e.into(),
            BearerError::Revoked => Self::TokenRevoked,
        }
    }
}

impl From<IssueTicketError> for ApiError {
    fn from(e: IssueTicketError) -> Self {
        match e {
            IssueTicketError::TooManyTopics => Self::InvalidBody(e.to_string()),
            IssueTicketError::NoOwnTopic => Self::InvalidTopic(e.to_string()),
            IssueTicketError::Forbidden(_) => Self::ForbiddenTopic(e.to_string()),
            IssueTicketError::Store(e) => e.into(),
        }
    }
}

impl From<OpenStreamError> for ApiError {
    fn from(e: OpenStreamError) -> Self {
        let retry_after = crate::hub::STREAM_CAP_RETRY;
        match e {
            OpenStreamError::Refused(_) => Self::InvalidTicket,
            OpenStreamError::TooManyStreams => Self::TooManyStreams { retry_after },
            OpenStreamError::InstanceFull => Self::AtCapacity { retry_after },
            OpenStreamError::Broker(e) => e.into(),
            OpenStreamError::Tickets(_) | OpenStreamError::History(_) => Self::unavailable(&e),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::TooLarge { .. } => Self::PayloadTooLarge(e.to_string()),
            PublishError::Forbidden(_) | PublishError::NamespaceClosed(_) => {
                Self::ForbiddenTopic(e.to_string())
            }
            PublishError::Broker(e) => e.into(),
            PublishError::KeyReused => Self::IdempotencyKeyReused(e.to_string()),
            PublishError::KeyInProgress { retry_after } => {
                Self::IdempotencyKeyInProgress { retry_after }
            }
            PublishError::History(_) | PublishError::Idempotency(_) => Self::unavailable(&e),
        }
    }
}

impl From<RevocationError> for ApiError {
    fn from(e: RevocationError) -> Self {
        match e {
            RevocationError::Database(_) => Self::unavailable(&e),
        }
    }
}

impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        Self::unavailable(&e)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        Self::unavailable(&e)
    }
}
