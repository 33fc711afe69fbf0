//! The command connection behind [`super::RedisLink::run`]: one Redis
//! (a `ConnectionManager`) or a Redis Cluster (the `redis` crate's async
//! cluster client, which follows `MOVED`/`ASK` and failovers itself).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SlotAddr};
use redis::{Arg, Cmd, Pipeline, RedisFuture, Value};

/// A connection to one Redis or to a Redis Cluster; cheap to clone.
#[derive(Clone)]
pub enum RedisConnection {
    /// One Redis node.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let split = matches!(self, Self::Cluster(_))
            && !pipeline.is_transaction()
            && !on_one_slot(pipeline);
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            // The cluster client sends a pipeline to one node; one whose
            // commands live on several slots goes a command at a time, in
            // order (a plain pipeline is not atomic on one node either).
            Self::Cluster(c) => {
                if split {
                    Box::pin(async move {
                        let mut answers = Vec::with_capacity(count);
                        for cmd in pipeline.cmd_iter() {
                            answers.push(c.req_packed_command(cmd).await?);
                        }
                        Ok(answers)
                    })
                } else {
                    c.req_packed_commands(pipeline, offset, count)
                }
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Whether every command of `pipeline` provably goes to one cluster slot:
/// each names its keys where this knows to look (the first argument, or
/// those of `EVAL`/`EVALSHA`, or all of a `DEL`/`UNLINK`) and they share a
/// slot. Anything else (`SCRIPT LOAD`, which goes to every node; a keyless
/// command) is not, and is sent on its own.
fn on_one_slot(pipeline: &Pipeline) -> bool {
    let mut slot = None;
    for cmd in pipeline.cmd_iter() {
        let args: Vec<&[u8]> = cmd
            .args_iter()
            .filter_map(|arg| match arg {
                Arg::Simple(bytes) => Some(bytes),
                _ => None,
            })
            .collect();
        let Some(name) = args.first() else {
            return false;
        };
        let keys: &[&[u8]] =
            if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL") {
                let count = args
                    .get(2)
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                args.get(3..3 + count).unwrap_or(&[])
            } else if name.eq_ignore_ascii_case(b"DEL") || name.eq_ignore_ascii_case(b"UNLINK") {
                &args[1..]
            } else if name.eq_ignore_ascii_case(b"SCRIPT") {
                &[]
            } else {
                args.get(1..2).unwrap_or(&[])
            };
        if keys.is_empty() {
            return false;
        }
        for key in keys {
            let route = Route::with_key(key, SlotAddr::Master);
            match slot {
                None => slot = Some(route),
                Some(first) if first != route => return false,
                Some(_) => {}
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_on_one_slot_stay_whole_others_are_split() {
        let mut same = redis::pipe();
        same.zadd("{tickets}", "a", 1)
            .zadd("{tickets}:subject:alice", "a", 1);
        assert!(on_one_slot(&same));
        let mut across = redis::pipe();
        across
            .cmd("GETDEL")
            .arg("ticket:ab")
            .zrem("{tickets}", "ab");
        assert!(!on_one_slot(&across));
        let mut load = redis::pipe();
        load.cmd("SCRIPT").arg("LOAD").arg("return 1");
        assert!(!on_one_slot(&load), "a script is loaded on every node");
        let mut script = redis::pipe();
        script
            .cmd("EVALSHA")
            .arg("abc")
            .arg(2)
            .arg("{tickets}")
            .arg("{tickets}:subject:bob")
            .arg("ARGV");
        assert!(on_one_slot(&script));
        script.cmd("SET").arg("ticket:ab").arg("x");
        assert!(!on_one_slot(&script));
    }
}
