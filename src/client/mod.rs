//! The command-line client's pieces that need no server: [`names`] turns plain names into
//! exact pg_dump patterns, and [`output`] writes files so that they appear only once
//! complete.

pub mod names;
pub mod output;
