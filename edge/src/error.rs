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
}

impl ApiError {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
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
        let status = http_status(self.code);
        if status.is_server_error() {
            tracing::warn!(code = grpc_code_name(self.code), detail = %self.message, "request failed");
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
