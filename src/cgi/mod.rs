//! CGI (RFC 3875) translation, free of any WebAssembly engine: an HTTP request becomes the
//! guest's environment, and the guest's stdout head becomes an HTTP response head.

mod env;
mod response;

pub use env::{CgiRequest, StaticEnv};
pub use response::{HeadError, HeadSplit, ResponseKind, parse_response_head, split_head};
