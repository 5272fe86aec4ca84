//! Integration tests: the real application, a real SMTP server, each test
//! on SQLite and on PostgreSQL.

mod browser_driver;
mod helpers;
mod smtp_server;
mod webhook_receiver;

mod abuse;
mod admin;
mod browser;
mod confirm;
mod dkim;
mod exports;
mod group_commit;
mod health;
mod leave;
mod ledger;
mod openapi;
mod outbox;
mod signup;
mod templates;
mod webhooks;
