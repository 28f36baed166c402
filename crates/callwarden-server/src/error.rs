//! The API's error type and its mapping to gRPC statuses: the one place where that happens.

use callwarden_storage::StorageError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A request field that cannot be used; the message names the field and the value.
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// What the request names does not exist (for this caller).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the state of things forbids it; the message says why.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this (e.g. act under another pseudonym).
    #[error("{0}")]
    PermissionDenied(String),
    /// What the request needs is away; the message says what, and whether to retry.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        Self::Storage(e.into())
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl ToString) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.to_string(),
        }
    }

    /// The same error about a field of the `n`th message of a client stream.
    pub fn in_message(self, n: u64) -> Self {
        match self {
            Self::InvalidArgument { field, message } => Self::InvalidArgument {
                field: format!("message #{n}: {field}"),
                message,
            },
            other => other,
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            ApiError::NotFound(_) => Status::not_found(e.to_string()),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            ApiError::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            ApiError::Unavailable(_) => Status::unavailable(e.to_string()),
            ApiError::Storage(
                StorageError::RuleNotFound(_) | StorageError::IncidentNotFound(_),
            ) => Status::not_found(e.to_string()),
            ApiError::Storage(StorageError::Transition { .. } | StorageError::Refused(_)) => {
                Status::failed_precondition(e.to_string())
            }
            ApiError::Storage(StorageError::AlreadyExists(_)) => {
                Status::already_exists(e.to_string())
            }
            ApiError::Storage(StorageError::RuleAlreadyRemoved(_)) => {
                Status::failed_precondition(e.to_string())
            }
            ApiError::Storage(StorageError::Postgres(_) | StorageError::Redis(_)) => {
                tracing::error!(error = %e, "storage unavailable");
                Status::unavailable("storage is unavailable; retry shortly")
            }
            ApiError::Storage(StorageError::Corrupt(_) | StorageError::Internal(_)) => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
