//! Ranks joined over TCP through rank 0: the rendezvous of every multi-rank run (rank 0 hands
//! out a payload, NCCL's unique id on GPUs) and the collective of CPU ranks, which sum their
//! buffers at rank 0 in rank order (a star: the few ranks of a CPU run, not a ring of GPUs).

use super::HostCollective;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 4] = b"MLFS";
const VERSION: u32 = 1;
/// Largest rendezvous payload accepted (an NCCL id is 128 bytes).
const MAX_PAYLOAD: usize = 64 * 1024;

/// One rank's connections: rank 0 holds one stream per other rank (index = rank − 1); the
/// others hold their stream to rank 0.
pub struct TcpRank {
    rank: usize,
    world: usize,
    peers: Vec<TcpStream>,
}

/// Rank 0: waits on `listener` for ranks 1 .. world − 1 (until `timeout`), then sends each of
/// them `payload`.
pub fn accept_ranks(
    listener: &TcpListener,
    world: usize,
    payload: &[u8],
    timeout: Duration,
) -> Result<TcpRank> {
    if payload.len() > MAX_PAYLOAD {
        bail!(
            "a rendezvous payload of {} bytes is too large",
            payload.len()
        );
    }
    let deadline = Instant::now() + timeout;
    listener.set_nonblocking(true)?;
    let mut peers: Vec<Option<TcpStream>> = (1..world).map(|_| None).collect();
    while peers.iter().any(Option::is_none) {
        match listener.accept() {
            Ok((mut stream, from)) => {
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                let (rank, their_world) = read_hello(&mut stream)
                    .with_context(|| format!("a rank connecting from {from}"))?;
                if their_world != world {
                    bail!("rank {rank} (from {from}) was started with world size {their_world}, rank 0 with {world}");
                }
                if rank == 0 || rank >= world {
                    bail!("a process from {from} says it is rank {rank} of {world}");
                }
                if peers[rank - 1].is_some() {
                    bail!("two processes say they are rank {rank} (the second from {from})");
                }
                stream.set_read_timeout(None)?;
                peers[rank - 1] = Some(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<String> = peers
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.is_none())
                        .map(|(i, _)| (i + 1).to_string())
                        .collect();
                    bail!(
                        "ranks {} did not join within {} s",
                        missing.join(", "),
                        timeout.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).context("waiting for the other ranks"),
        }
    }
    let mut peers: Vec<TcpStream> = peers.into_iter().flatten().collect();
    for p in &mut peers {
        p.set_nodelay(true)?;
        p.write_all(MAGIC)?;
        p.write_all(&(payload.len() as u32).to_le_bytes())?;
        p.write_all(payload)?;
    }
    Ok(TcpRank {
        rank: 0,
        world,
        peers,
    })
}

/// Rank `rank` > 0: connects to rank 0 at `address` (retrying until `timeout`: rank 0 may not
/// listen yet) and returns the connection with rank 0's payload.
pub fn join_rank0(
    address: &dyn Fn() -> Result<Option<SocketAddr>>,
    rank: usize,
    world: usize,
    timeout: Duration,
) -> Result<(TcpRank, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("no address published yet");
    let mut stream = loop {
        if let Some(addr) = address()? {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => break s,
                Err(e) => last_error = format!("{addr}: {e}"),
            }
        }
        if Instant::now() > deadline {
            bail!(
                "rank {rank} could not reach rank 0 within {} s ({last_error})",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stream.set_nodelay(true)?;
    stream.write_all(MAGIC)?;
    for v in [VERSION, rank as u32, world as u32] {
        stream.write_all(&v.to_le_bytes())?;
    }
    // Rank 0 answers once every rank has joined, however long the slowest takes to start.
    let remaining = deadline.saturating_duration_since(Instant::now());
    stream.set_read_timeout(Some(remaining.max(Duration::from_secs(30))))?;
    let mut magic = [0u8; 4];
    stream
        .read_exact(&mut magic)
        .context("waiting for rank 0 to accept every rank")?;
    if &magic != MAGIC {
        bail!("rank 0's address answered with something that is not mlfs-studio");
    }
    let len = read_u32(&mut stream)? as usize;
    if len > MAX_PAYLOAD {
        bail!("rank 0 sent a rendezvous payload of {len} bytes");
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    stream.set_read_timeout(None)?;
    Ok((
        TcpRank {
            rank,
            world,
            peers: vec![stream],
        },
        payload,
    ))
}

fn read_hello(stream: &mut TcpStream) -> Result<(usize, usize)> {
    let mut magic = [0u8; 4];
    stream.read_exact(&mut magic)?;
    if &magic != MAGIC {
        bail!("not an mlfs-studio rank");
    }
    let version = read_u32(stream)?;
    if version != VERSION {
        bail!("protocol version {version}, this binary speaks {VERSION}");
    }
    Ok((read_u32(stream)? as usize, read_u32(stream)? as usize))
}

fn read_u32(stream: &mut TcpStream) -> Result<u32> {
    let mut b = [0u8; 4];
    stream.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn send_values(stream: &mut TcpStream, values: &[f32]) -> Result<()> {
    let mut bytes = Vec::with_capacity(8 + values.len() * 4);
    bytes.extend_from_slice(&(values.len() as u64).to_le_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    stream.write_all(&bytes)?;
    Ok(())
}

/// Reads a buffer that must hold `expected` values (a peer's length is never trusted to size
/// an allocation).
fn receive_values(stream: &mut TcpStream, expected: usize) -> Result<Vec<f32>> {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len != expected as u64 {
        bail!("a rank sent {len} values where {expected} were expected (do the ranks run the same configuration?)");
    }
    let mut bytes = vec![0u8; expected * 4];
    stream.read_exact(&mut bytes)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

impl HostCollective for TcpRank {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn sum_in_place(&mut self, values: &mut Vec<f32>) -> Result<()> {
        let n = values.len();
        if self.rank == 0 {
            for (i, peer) in self.peers.iter_mut().enumerate() {
                let theirs = receive_values(peer, n)
                    .with_context(|| format!("receiving rank {}'s sum (did it stop?)", i + 1))?;
                for (a, b) in values.iter_mut().zip(theirs) {
                    *a += b;
                }
            }
            for (i, peer) in self.peers.iter_mut().enumerate() {
                send_values(peer, values)
                    .with_context(|| format!("sending the sum to rank {}", i + 1))?;
            }
        } else {
            let rank0 = self.peers.first_mut().context("no connection to rank 0")?;
            send_values(rank0, values).context("sending to rank 0 (did it stop?)")?;
            *values = receive_values(rank0, n).context("receiving the sum from rank 0")?;
        }
        Ok(())
    }
    fn transport(&self) -> &'static str {
        "TCP through rank 0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ranks_sum_over_loopback_and_get_the_payload() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let timeout = Duration::from_secs(20);
        let followers: Vec<_> = (1..3)
            .map(|rank| {
                std::thread::spawn(move || {
                    let (mut r, payload) =
                        join_rank0(&|| Ok(Some(addr)), rank, 3, timeout).unwrap();
                    let mut v = vec![rank as f32, 10.0 * rank as f32];
                    r.sum_in_place(&mut v).unwrap();
                    (payload, v)
                })
            })
            .collect();
        let mut r0 = accept_ranks(&listener, 3, b"id", timeout).unwrap();
        let mut v = vec![0.5, 0.25];
        r0.sum_in_place(&mut v).unwrap();
        assert_eq!(v, vec![3.5, 30.25]);
        for f in followers {
            let (payload, v) = f.join().unwrap();
            assert_eq!(payload, b"id");
            assert_eq!(v, vec![3.5, 30.25]);
        }
    }

    #[test]
    fn a_wrong_length_or_rank_is_an_error_not_an_allocation() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(MAGIC).unwrap();
            for v in [VERSION, 1, 2] {
                s.write_all(&v.to_le_bytes()).unwrap();
            }
            let mut answer = [0u8; 10];
            s.read_exact(&mut answer).unwrap();
            // A hostile length: a terabyte of values.
            s.write_all(&(1u64 << 38).to_le_bytes()).unwrap();
        });
        let mut r0 = accept_ranks(&listener, 2, b"ok", Duration::from_secs(20)).unwrap();
        let err = r0.sum_in_place(&mut vec![1.0; 4]).unwrap_err();
        assert!(
            format!("{err:#}").contains("values where 4 were expected"),
            "{err:#}"
        );
        t.join().unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let _ = join_rank0(&|| Ok(Some(addr)), 5, 2, Duration::from_secs(5));
        });
        let err = accept_ranks(&listener, 2, b"", Duration::from_secs(20))
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("rank 5 of 2"), "{err:#}");
        t.join().unwrap();
    }
}
