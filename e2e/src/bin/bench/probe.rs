//! Latency probes from inside a rig host's network namespace, where a container's own address is reachable:
//! the bench runs itself again under `nsenter --net` with `--probe ADDR,ADDR`, which sends `GET /up` to each
//! address in turn (each on a new connection, one at a time) and prints every latency in microseconds as JSON.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::output;

/// The `--probe` mode: `n` rounds of one `GET /up` to each address; prints `[[µs, ...], ...]`, one list an address.
pub fn run(addrs: &[SocketAddr], n: usize) -> Result<()> {
    let mut all = vec![Vec::with_capacity(n); addrs.len()];
    for _ in 0..n {
        for (i, addr) in addrs.iter().enumerate() {
            let t = Instant::now();
            get_up(*addr).with_context(|| format!("GET http://{addr}/up"))?;
            all[i].push(t.elapsed().as_micros() as u64);
        }
    }
    println!("{}", serde_json::to_string(&all)?);
    Ok(())
}

fn get_up(addr: SocketAddr) -> Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET /up HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    ensure!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "answered {answer:?}");
    Ok(())
}

/// Runs the probes in the network namespace `netns`: `n` latencies of each address, in order.
pub async fn latencies<const N: usize>(
    netns: &str,
    addrs: [SocketAddr; N],
    n: usize,
) -> Result<[Vec<Duration>; N]> {
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let me = std::env::current_exe().context("the bench's own path")?;
    let mut command = tokio::process::Command::new("nsenter");
    command
        .arg(format!("--net=/var/run/netns/{netns}"))
        .arg(me)
        .arg("--probe")
        .arg(list.join(","))
        .arg("--n")
        .arg(n.to_string())
        .arg("--out")
        .arg("/dev/null");
    let text = output(&mut command).await?;
    let lists: Vec<Vec<u64>> =
        serde_json::from_str(text.trim()).with_context(|| format!("probe output {text:?}"))?;
    let lists: Vec<Vec<Duration>> =
        lists.into_iter().map(|l| l.into_iter().map(Duration::from_micros).collect()).collect();
    match <[Vec<Duration>; N]>::try_from(lists) {
        Ok(lists) => Ok(lists),
        Err(lists) => bail!("the probe answered {} lists for {N} addresses", lists.len()),
    }
}

/// The `q` quantile (0..=1) of the values, nearest rank; zero for none.
pub fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
