//! Integration tests: the real application, a real SMTP server, each test
//! on SQLite and on PostgreSQL.

mod helpers;
mod smtp_server;

mod confirm;
mod health;
mod leave;
mod outbox;
mod signup;
