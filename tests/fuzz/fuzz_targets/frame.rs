//! Frames and messages from a byte stream: decoding the whole buffer at once
//! (`decode_message` in a loop) and feeding it to a `MessageDecoder` in arbitrary pieces
//! must give the same messages, the same errors at the same places and the same undecoded
//! tail; every message that decodes re-encodes to exactly the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacetime::wire::{decode_message, Message, MessageDecoder, WireError, MAX_FRAME_LENGTH};

#[derive(Debug, PartialEq)]
enum Item {
    Msg(Message),
    BadPayload(usize),
}

/// Decodes `stream` at once: the items, the frame error that stopped it (if any) and the
/// undecoded tail length.
fn one_shot(stream: &[u8], max: u32) -> (Vec<Item>, Option<WireError>, usize) {
    let mut items = Vec::new();
    let mut pos = 0;
    loop {
        match decode_message(&stream[pos..], max) {
            Ok(Some((m, used))) => {
                let encoded = m.encode();
                assert_eq!(
                    encoded,
                    &stream[pos..pos + used],
                    "non-canonical decode: {m:?}"
                );
                items.push(Item::Msg(m));
                pos += used;
            }
            Ok(None) => return (items, None, stream.len() - pos),
            Err(WireError::Message { consumed, .. }) => {
                items.push(Item::BadPayload(consumed));
                pos += consumed;
            }
            Err(e) => return (items, Some(e), stream.len() - pos),
        }
    }
}

fn incremental(stream: &[u8], cuts: &[u8], max: u32) -> (Vec<Item>, Option<WireError>, usize) {
    let mut d = MessageDecoder::new(max);
    let mut items = Vec::new();
    let mut pos = 0;
    let mut cut = cuts.iter().cycle();
    while pos < stream.len() {
        let step = if cuts.is_empty() {
            stream.len()
        } else {
            usize::from(*cut.next().unwrap_or(&1)).max(1)
        };
        let end = (pos + step).min(stream.len());
        d.extend(&stream[pos..end]);
        pos = end;
        loop {
            match d.next_message() {
                Ok(Some(m)) => items.push(Item::Msg(m)),
                Ok(None) => break,
                Err(WireError::Message { consumed, .. }) => items.push(Item::BadPayload(consumed)),
                // After a frame error the stream is out of step: report what was not decoded.
                Err(e) => return (items, Some(e), d.pending() + stream.len() - pos),
            }
        }
    }
    (items, None, d.pending())
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    // Low bits pick the link's maximum, the cut table comes from the front of the rest.
    let max = match ctl & 3 {
        0 => MAX_FRAME_LENGTH,
        1 => 64,
        2 => 1024,
        _ => 1,
    };
    let ncuts = usize::from(ctl >> 2).min(rest.len());
    let (cuts, stream) = rest.split_at(ncuts);
    let a = one_shot(stream, max);
    let b = incremental(stream, cuts, max);
    assert_eq!(a, b);
});
