//! Identity sources: where a request's credentials are recognised.
//!
//! Only the TOML users source exists so far; JWT and media-server accounts come next and will
//! each get a file here.

pub mod users;
