//! Integration tests: the real application, a real SMTP server, each test
//! on SQLite and on PostgreSQL.

mod helpers;
mod smtp_server;

mod abuse;
mod admin;
mod confirm;
mod dkim;
mod exports;
mod health;
mod leave;
mod ledger;
mod openapi;
mod outbox;
mod signup;
mod templates;
