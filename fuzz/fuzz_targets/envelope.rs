//! The datagram envelope: whatever arrives on the UDP socket goes through
//! `Envelope::open` first. Arbitrary bytes, and bytes XORed into a genuine sealed
//! datagram (so the fuzzer reaches the tag check and the replay window), must only
//! ever be dropped with a reason or opened — never panic. What opens is handed to
//! the wire decoder, as the agent does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wackamole::core::wire;
use wackamole::net::envelope::Envelope;

const SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-32";

fuzz_target!(|data: &[u8]| {
    let mut rx = Envelope::new(&[SECRET.to_vec()], [1; 16]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let candidates: Vec<Vec<u8>> = if mode & 1 == 0 {
        vec![rest.to_vec()]
    } else {
        // A genuine datagram, then the same with the input XORed over it, then
        // a replay of the genuine one.
        let mut tx = Envelope::new(&[SECRET.to_vec()], [2; 16]);
        let good = tx.seal(rest);
        let mut bad = good.clone();
        for (i, b) in rest.iter().enumerate() {
            let n = bad.len();
            bad[i % n] ^= b;
        }
        if mode & 2 != 0 {
            bad.truncate(usize::from(mode) % (good.len() + 1));
        }
        vec![good.clone(), bad, good]
    };
    for d in candidates {
        if let Ok(plain) = rx.open(&d) {
            let _ = wire::decode(0x5eed, &plain);
        }
    }
});
