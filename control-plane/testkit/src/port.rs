//! Free TCP ports on the loopback interface.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

/// Ports already handed out by this process; never handed out twice, so two
/// servers started by parallel tests of one process cannot collide.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Binds `127.0.0.1:0`, releases the socket and returns the port the kernel
/// chose.
///
/// The port is free at that moment, but not reserved: another process may
/// take it, and a child being spawned by another thread of this process
/// holds a copy of the socket until it `exec`s (close-on-exec only closes it
/// then). So the port is confirmed re-bindable before it is returned, and
/// callers that start a server on it should still retry with a new port if
/// the bind fails (`Postgres::start` and `Nats::start` do).
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener
                .local_addr()
                .expect("local address of a bound listener")
                .port()
        };
        if !seen.insert(port) {
            continue;
        }
        if rebindable(port) {
            return port;
        }
    }
    panic!("free_port: found no port that stayed free (100 attempts)")
}

/// Waits briefly for transient copies of our socket (children between fork
/// and exec) to go away: true once `port` can be bound again.
fn rebindable(port: u16) -> bool {
    for _ in 0..20 {
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}
