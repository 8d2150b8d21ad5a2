//! Reassembly of an inline payload from its chunks, with the checks a worker makes on a stream
//! it did not write: the header comes first and only there, the announced length is within
//! bounds, and the chunks fill exactly that length.

use crate::checksum::Checksum;
use tonic::Status;

use super::MAX_FORMAT_LEN;
use super::buffers::BufferPool;
use super::proto::{InlineChunk, InlineHeader, TransferAck};

/// Checks the header the first chunk must carry, against the worker's largest inline payload.
pub(crate) fn check_first_chunk(
    first: &InlineChunk,
    max_inline_bytes: u64,
) -> Result<&InlineHeader, Status> {
    let header = first.header.as_ref().ok_or_else(|| {
        Status::invalid_argument(format!(
            "expected the first chunk to carry the header, got a chunk of {} bytes without one",
            first.data.len()
        ))
    })?;
    if header.total_len > max_inline_bytes {
        return Err(Status::resource_exhausted(format!(
            "inline payload of {} bytes announced, expected at most {max_inline_bytes} \
             (max_inline_bytes)",
            header.total_len
        )));
    }
    if header.format.len() > MAX_FORMAT_LEN {
        return Err(Status::invalid_argument(format!(
            "format name of {} bytes, expected at most {MAX_FORMAT_LEN}",
            header.format.len()
        )));
    }
    Ok(header)
}

/// One payload being reassembled into a single buffer of its announced length, checksummed as
/// it fills.
pub(crate) struct Assembly {
    transfer_id: u64,
    total_len: usize,
    buffer: Vec<u8>,
    hasher: Checksum,
    chunks: u64,
}

impl Assembly {
    /// Reserves the whole payload, from `buffers`, for a header [`check_first_chunk`] accepted.
    pub(crate) fn new(header: &InlineHeader, buffers: &BufferPool) -> Result<Assembly, Status> {
        let too_large = || {
            Status::resource_exhausted(format!(
                "could not reserve {} bytes for the inline payload",
                header.total_len
            ))
        };
        let total_len = usize::try_from(header.total_len).map_err(|_| too_large())?;
        let buffer = buffers.take(total_len).ok_or_else(too_large)?;
        Ok(Assembly {
            transfer_id: header.transfer_id,
            total_len,
            buffer,
            hasher: Checksum::new(),
            chunks: 0,
        })
    }

    /// Appends the next chunk; the first one's header was checked already, any later header is
    /// refused.
    pub(crate) fn push(&mut self, chunk: &InlineChunk) -> Result<(), Status> {
        let index = self.chunks;
        self.chunks += 1;
        if index > 0 && chunk.header.is_some() {
            return Err(Status::invalid_argument(format!(
                "expected the header in the first chunk only, got another in chunk {index}"
            )));
        }
        let received = self.buffer.len();
        if chunk.data.len() > self.total_len - received {
            return Err(Status::invalid_argument(format!(
                "chunk {index} of {} bytes at offset {received} overflows the announced \
                 total_len of {} bytes",
                chunk.data.len(),
                self.total_len
            )));
        }
        self.buffer.extend_from_slice(&chunk.data);
        self.hasher.update(&self.buffer[received..]);
        Ok(())
    }

    /// Bytes received so far.
    pub(crate) fn received(&self) -> usize {
        self.buffer.len()
    }

    /// The announced payload length.
    pub(crate) fn total_len(&self) -> usize {
        self.total_len
    }

    /// Completes the transfer once the stream has ended: the acknowledgement carries the length
    /// and checksum of the reassembled payload (timings are left for the caller to fill), and
    /// the payload comes back with it.
    pub(crate) fn finish(self) -> Result<(TransferAck, Vec<u8>), Status> {
        if self.buffer.len() != self.total_len {
            return Err(Status::invalid_argument(format!(
                "stream ended after {} of the announced {} bytes, in {} chunks",
                self.buffer.len(),
                self.total_len,
                self.chunks
            )));
        }
        let ack = TransferAck {
            transfer_id: self.transfer_id,
            length: self.buffer.len() as u64,
            checksum: self.hasher.digest(),
            worker_ns: 0,
            worker_cpu_ns: 0,
            reply: None,
        };
        Ok((ack, self.buffer))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tonic::Code;

    use super::*;

    fn header(total_len: u64) -> InlineHeader {
        InlineHeader {
            transfer_id: 7,
            total_len,
            format: "raw".to_owned(),
        }
    }

    fn chunk(header: Option<InlineHeader>, data: &[u8]) -> InlineChunk {
        InlineChunk {
            header,
            data: Bytes::copy_from_slice(data),
        }
    }

    fn assemble(total_len: u64, parts: &[&[u8]]) -> Result<TransferAck, Status> {
        let first = chunk(Some(header(total_len)), parts[0]);
        let buffers = BufferPool::new(0);
        let mut assembly = Assembly::new(check_first_chunk(&first, 1 << 20)?, &buffers)?;
        assembly.push(&first)?;
        for part in &parts[1..] {
            assembly.push(&chunk(None, part))?;
        }
        let (ack, payload) = assembly.finish()?;
        assert_eq!(payload.len() as u64, ack.length);
        assert_eq!(crate::grpc::checksum(&payload), ack.checksum);
        Ok(ack)
    }

    #[test]
    fn chunks_reassemble_to_the_payload_and_its_checksum() {
        let payload: Vec<u8> = (0..10_000u32).map(|it| (it % 251) as u8).collect();
        let parts: Vec<&[u8]> = payload.chunks(3000).collect();
        let ack = assemble(payload.len() as u64, &parts).unwrap();
        assert_eq!(ack.transfer_id, 7);
        assert_eq!(ack.length, payload.len() as u64);
        assert_eq!(ack.checksum, crate::grpc::checksum(&payload));
    }

    #[test]
    fn an_empty_payload_is_one_chunk_with_the_header() {
        let ack = assemble(0, &[b""]).unwrap();
        assert_eq!(ack.length, 0);
        assert_eq!(ack.checksum, crate::grpc::checksum(b""));
    }

    #[test]
    fn a_missing_header_is_refused_naming_what_came() {
        let status = check_first_chunk(&chunk(None, b"abc"), 1 << 20).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("3 bytes without one"),
            "{status:?}"
        );
    }

    #[test]
    fn a_second_header_overflow_and_short_stream_are_refused() {
        let first = chunk(Some(header(4)), b"ab");
        let buffers = BufferPool::new(0);
        let mut assembly = Assembly::new(first.header.as_ref().unwrap(), &buffers).unwrap();
        assembly.push(&first).unwrap();
        let twice = assembly.push(&chunk(Some(header(4)), b"c")).unwrap_err();
        assert!(twice.message().contains("chunk 1"), "{twice:?}");

        let overflow = assemble(4, &[b"ab", b"cde"]).unwrap_err();
        assert_eq!(overflow.code(), Code::InvalidArgument);
        assert!(overflow.message().contains("overflows"), "{overflow:?}");

        let short = assemble(4, &[b"ab", b"c"]).unwrap_err();
        assert_eq!(short.code(), Code::InvalidArgument);
        assert!(
            short.message().contains("after 3 of the announced 4"),
            "{short:?}"
        );
    }

    #[test]
    fn oversized_payloads_and_format_names_are_refused() {
        let big = check_first_chunk(&chunk(Some(header(2 << 20)), b""), 1 << 20).unwrap_err();
        assert_eq!(big.code(), Code::ResourceExhausted);
        let mut long = header(1);
        long.format = "x".repeat(MAX_FORMAT_LEN + 1);
        let named = check_first_chunk(&chunk(Some(long), b"a"), 1 << 20).unwrap_err();
        assert_eq!(named.code(), Code::InvalidArgument);
    }
}
