//! CGI (RFC 3875) translation, free of any WebAssembly engine: an HTTP request becomes the
//! guest's environment, and the guest's stdout head becomes an HTTP response head.

mod env;
mod env_pair;
mod response;
mod routing;
pub mod url_path;

pub use env::{CgiRequest, StaticEnv, decoded_path};
pub use env_pair::parse_env_pair;
pub use response::{HeadError, HeadSplit, ResponseKind, parse_response_head, split_head};
pub use routing::{DocumentTree, EntryKind, Routed, ScriptRoute, ScriptRouting};
