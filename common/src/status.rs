//! How storage failures reach callers: UNAVAILABLE (retryable), with the
//! detail in the log rather than in the answer.

/// UNAVAILABLE for a failed SQL or Redis call; logs the cause.
pub fn storage_unavailable(error: anyhow::Error) -> tonic::Status {
    tracing::error!(error = %format!("{error:#}"), "storage call failed");
    tonic::Status::unavailable("storage is unavailable; retry later")
}
