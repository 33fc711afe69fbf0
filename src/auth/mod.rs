//! Bearer-token verification and the permissions a token grants.

mod breaker;
mod cache;
mod claims;
mod credential;
mod introspection;
mod jwks;
mod jwt;
mod keys;
mod mint;
mod registered;
mod remote;
mod topic;
mod verified;
mod verifier;
mod webhook;

pub use claims::{Claims, MAX_SUBJECT_LEN, Permissions, Subject, SubjectError};
pub use credential::Credential;
pub use introspection::IntrospectionSettings;
pub use jwks::is_confidential;
pub use keys::{KeyError, KeySource};
pub use mint::{MintError, MintRequest, mint};
pub use remote::UPSTREAM_TIMEOUT;
pub use topic::{MAX_TOPIC_LEN, Topic, TopicError, TopicPattern, TopicPrefix, minimal_cover};
pub use verifier::{AuthError, LEEWAY, Verifier, VerifierSettings, Verify};
pub use webhook::WebhookSettings;
