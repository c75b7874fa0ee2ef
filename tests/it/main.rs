//! Integration tests: the real relay on port 0 with temp dirs, talking to fake servers over HTTP.

mod acp;
mod channels;
mod console;
mod digest;
mod email;
mod fence;
mod foundation;
mod hostile;
mod messages;
mod openapi;
mod personal;
mod props;
mod render;
mod replicas;
mod scenarios;
mod structure;
mod support;
mod threads;
mod trust;
mod vendors;
