//! One message payload of a chosen type: decoding never panics, and what decodes is
//! canonical (re-encodes to the same bytes and decodes to the same message). An Error's
//! text also goes through the refusal parser the miner acts on (`wire::rejection`): it
//! never panics, and a refusal it reads is written back as the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spacetime::wire::{Message, MessageType, Rejection};

fuzz_target!(|data: &[u8]| {
    let Some((&code, payload)) = data.split_first() else {
        return;
    };
    // Map the selector onto the known types so every input exercises a decoder.
    const TYPES: [u8; 18] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x10, 0x11, 0x20, 0x21, 0x22, 0x23, 0x30, 0x31, 0x32, 0x40,
        0x41, 0x42, 0xFF,
    ];
    let Some(t) = MessageType::from_code(TYPES[usize::from(code) % TYPES.len()]) else {
        return;
    };
    if let Ok(m) = Message::decode(t, payload) {
        assert_eq!(m.message_type(), t);
        let again = m.encode_payload();
        assert_eq!(again, payload, "non-canonical {m:?}");
        assert_eq!(Message::decode(t, &again).as_ref(), Ok(&m));
        if let Message::Error(text) = &m {
            if let Some(refusal) = Rejection::parse(text) {
                assert_eq!(&refusal.to_text(), text, "refusal not read back as written");
                assert_eq!(Rejection::parse(&refusal.to_text()), Some(refusal));
            }
        }
    }
});
