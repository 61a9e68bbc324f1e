//! Integration tests: one binary, real components (SQLite files, a real
//! PostgreSQL server, real HTTP on loopback, real Parquet and Iceberg files).

mod access;
mod bounded_dedup;
mod commit_protocol;
mod common;
mod file_source;
mod http_ingest;
mod http_input;
mod iceberg_rest;
mod idempotent_http;
mod kafka_ingest;
mod kafka_util;
mod lake_admin;
mod maintenance;
mod metadata_tables;
mod pg_wire;
mod postgres_catalog;
mod query_scan;
mod readiness;
mod rollback;
mod s3_warehouse;
mod schema_evolution;
mod shared_dedup;
mod slt;
mod sql_read_only;
mod table_pipeline;
mod zones;
mod zones_util;
