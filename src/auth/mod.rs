//! Bearer-token verification and the permissions a token grants.

mod claims;
mod jwks;
mod keys;
mod mint;
mod topic;
mod verifier;

pub use claims::{Claims, MAX_SUBJECT_LEN, Permissions, Subject, SubjectError};
pub use jwks::is_confidential;
pub use keys::{KeyError, KeySource};
pub use mint::{MintError, MintRequest, mint};
pub use topic::{MAX_TOPIC_LEN, Topic, TopicError, TopicPattern, minimal_cover};
pub use verifier::{AuthError, Verifier, VerifierSettings};
