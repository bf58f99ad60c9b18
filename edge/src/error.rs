//! Errors as browsers get them: JSON `{"error": CODE, "message": …,
//! "requestId": …}` with the HTTP status grpc-gateway uses for the gRPC
//! code. The cause is logged; the client gets a safe message.

use admesh_common::grpc_telemetry::grpc_code_name;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// The id of the request being answered, set by the request middleware.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// An error answer.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: tonic::Code,
    pub message: String,
    /// When HTTP has a closer status than the code's mapping (405, 413).
    pub status: Option<StatusCode>,
}

impl ApiError {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: None,
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// A service's answer as the client sees it: the service's message for
    /// the caller's mistakes (validation names the field), a safe one for
    /// the mesh's own failures, whose real cause goes to the log with the
    /// request id.
    pub fn from_status(status: &tonic::Status) -> Self {
        use tonic::Code;
        let safe = match status.code() {
            Code::Internal | Code::Unknown | Code::DataLoss => Some("internal error"),
            Code::Unavailable => Some("the service is unavailable; retry later"),
            Code::DeadlineExceeded | Code::Cancelled => Some("the service did not answer in time"),
            _ => None,
        };
        match safe {
            Some(message) => {
                tracing::warn!(
                    code = grpc_code_name(status.code()),
                    cause = %status.message(),
                    "upstream call failed"
                );
                // A client-side deadline reads as Cancelled in tonic; to the
                // HTTP caller both are a timeout.
                let code = if status.code() == Code::Cancelled {
                    Code::DeadlineExceeded
                } else {
                    status.code()
                };
                Self::new(code, message)
            }
            None => Self::new(status.code(), status.message()),
        }
    }

    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(tonic::Code::Unimplemented, message)
    }
}

/// The HTTP status for a gRPC code, as grpc-gateway maps it.
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| http_status(self.code));
        if status.is_server_error() {
            tracing::warn!(code = grpc_code_name(self.code), detail = %self.message, "request failed");
        } else {
            // What a caller got wrong (bad input, credentials, limits), with
            // the request id, for whoever answers their support ticket.
            tracing::info!(code = grpc_code_name(self.code), detail = %self.message, "request refused");
        }
        // The body needs the request id, which the request middleware owns:
        // it renders the body, once, from this extension.
        let mut response = status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The JSON error body.
pub fn error_body(code: tonic::Code, message: &str, request_id: &str) -> serde_json::Value {
    serde_json::json!({
        "error": grpc_code_name(code),
        "message": message,
        "requestId": request_id,
    })
}
