//! Integration tests of the simulator over HTTP, against `Simulator::start` on 127.0.0.1:0.

mod auth;
mod binary;
mod common;
mod control;
mod endpoints;
mod events;
mod faults;
mod seed;
