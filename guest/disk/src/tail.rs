//! The in-memory tail: the newest batches, as they arrived, bounded in
//! bytes. Readers that keep up are served from here without a syscall.

use std::collections::VecDeque;
use std::mem::size_of;

use crate::events::{Batch, Budget, Run};

/// Bytes charged per batch beyond its columns: the chunk itself and the
/// allocator's share of its three buffers, so that a quiet command
/// appending one short line per batch is bounded too.
const CHUNK_OVERHEAD: u64 = (size_of::<Chunk>() + 3 * 16) as u64;

/// One appended batch.
pub struct Chunk {
    pub first_eid: u64,
    /// Text bytes logged before this batch.
    pub text_offset: u64,
    pub batch: Batch,
}

impl Chunk {
    /// Eid after its last line.
    pub fn end_eid(&self) -> u64 {
        self.first_eid + self.batch.len() as u64
    }

    /// Text offset after its last line.
    pub fn text_end(&self) -> u64 {
        self.text_offset + self.batch.text.len() as u64
    }

    /// Memory the chunk holds.
    fn charge(&self) -> u64 {
        let b = &self.batch;
        (b.text.capacity() + 4 * b.lens.capacity() + size_of::<Run>() * b.runs.capacity()) as u64
            + CHUNK_OVERHEAD
    }
}

/// The newest batches, oldest first.
pub struct Tail {
    chunks: VecDeque<Chunk>,
    bytes: u64,
    limit: u64,
    /// Bytes charged to every chunk ever pushed: a clock of memory use.
    pushed: u64,
}

impl Tail {
    pub fn new(limit: u64) -> Tail {
        Tail {
            chunks: VecDeque::new(),
            bytes: 0,
            limit,
            pushed: 0,
        }
    }

    pub fn push(&mut self, chunk: Chunk) {
        self.bytes += chunk.charge();
        self.pushed += chunk.charge();
        self.chunks.push_back(chunk);
    }

    /// Removes the oldest chunk if the tail is over its bound. The newest
    /// chunk always stays, so that there is one even when a single batch is
    /// larger than the bound.
    pub fn pop_excess(&mut self) -> Option<Chunk> {
        if self.bytes <= self.limit || self.chunks.len() <= 1 {
            return None;
        }
        let chunk = self.chunks.pop_front()?;
        self.bytes -= chunk.charge();
        Some(chunk)
    }

    /// Eid of the oldest line held, if any.
    pub fn first_eid(&self) -> Option<u64> {
        self.chunks.front().map(|c| c.first_eid)
    }

    /// Text offset of the oldest line held, if any.
    pub fn first_text_offset(&self) -> Option<u64> {
        self.chunks.front().map(|c| c.text_offset)
    }

    /// The chunks from the first that holds lines at or after `eid`.
    pub fn chunks_from(&self, eid: u64) -> impl Iterator<Item = &Chunk> {
        let first = self.chunks.partition_point(|c| c.end_eid() <= eid);
        self.chunks.range(first..)
    }

    /// Bytes charged to every chunk ever pushed.
    pub fn pushed_bytes(&self) -> u64 {
        self.pushed
    }

    /// Memory held now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends lines from `want` (held here) to `out`, within `budget`.
    /// `text_offset` is the text offset of `want` when the caller knows it
    /// (it saves summing the lengths before it). Returns the eid and text
    /// offset after the last line copied.
    pub fn read(
        &self,
        want: u64,
        known_offset: Option<u64>,
        budget: &mut Budget,
        out: &mut Batch,
    ) -> (u64, u64) {
        let mut next = (want, known_offset);
        for chunk in self.chunks_from(want) {
            let from = next.0.saturating_sub(chunk.first_eid) as usize;
            let lens = &chunk.batch.lens;
            let start = next
                .1
                .and_then(|offset| offset.checked_sub(chunk.text_offset))
                .map(|start| start as usize)
                .filter(|&start| start <= chunk.batch.text.len())
                .unwrap_or_else(|| lens[..from].iter().map(|&l| l as usize).sum());
            let (taken, text) = budget.take_lines(lens[from..].iter().copied());
            let to = from + taken;
            let end = start + text as usize;
            out.lens.extend_from_slice(&lens[from..to]);
            // The lengths were checked against the text at append.
            out.text
                .extend_from_slice(chunk.batch.text.get(start..end).unwrap_or_default());
            out.extend_runs_of(chunk.batch.runs.iter().copied(), from, to);
            next = (
                chunk.first_eid + to as u64,
                Some(chunk.text_offset + end as u64),
            );
            if to < lens.len() {
                break;
            }
        }
        (next.0, next.1.unwrap_or_default())
    }
}
