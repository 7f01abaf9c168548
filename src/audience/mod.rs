//! Audiences as first-class objects: rule-made tags, saved audiences with numbered versions,
//! suppression and holdout, and their export to files for campaign tools. The catalog's data lives
//! in the manifest ([`crate::store::catalog`]); each computed set is a small bitmap file; the
//! statements are parsed by [`statement`] and run by [`commands`].

pub mod analytics;
pub mod baskets;
pub mod by_person;
pub mod catalog;
pub mod churn;
pub mod commands;
pub mod deps;
pub mod dml;
pub mod estimate;
pub mod evaluate;
pub mod export;
pub mod lifecycle;
pub mod members;
pub mod model;
pub mod packs;
pub mod persons;
pub mod rfm;
pub mod sql_view;
pub mod statement;
pub mod tables;
