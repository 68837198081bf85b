//! The data plane's errors: the one table of `obleth_core::error`, which the admin API and
//! the metrics endpoint answer from too.

pub use obleth_core::error::{ApiError, ErrorCode, Source};
