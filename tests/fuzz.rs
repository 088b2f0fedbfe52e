//! Fuzzing the file readers: valid safetensors, IDX (raw and gzipped) files mutated at random
//! (bit flips, extreme bytes, truncation, appended bytes, rewritten length fields) must give
//! `Ok` or an error, never a panic, and never hold more memory than the file can justify.
//! `WEBGRAD_FUZZ_ITERS` sets the cases per target (300 by default, what CI runs; the README
//! gives a longer run).

mod common;
use common::alloc::peak_bytes;
use common::*;
use std::collections::HashMap;
use std::io::Write;
use webgrad::data::{parse_idx, read_idx};
use webgrad::{weights, Rng, Tensor};

#[global_allocator]
static ALLOC: common::alloc::Counting = common::alloc::Counting;

fn iterations() -> usize {
    std::env::var("WEBGRAD_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// One random mutation of `seed`.
fn mutate(r: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let pos = |r: &mut Rng, len: usize| (r.uniform() * len.max(1) as f32) as usize % len.max(1);
    for _ in 0..1 + (r.uniform() * 4.0) as usize {
        match (r.uniform() * 6.0) as usize {
            0 if !b.is_empty() => {
                let i = pos(r, b.len());
                b[i] ^= 1 << ((r.uniform() * 8.0) as u32 % 8);
            }
            1 if !b.is_empty() => {
                let i = pos(r, b.len());
                b[i] = [0x00, 0xff, 0x7f, 0x80][pos(r, 4)];
            }
            2 => {
                let keep = pos(r, b.len() + 1);
                b.truncate(keep);
            }
            3 => b.extend((0..pos(r, 64)).map(|_| (r.uniform() * 256.0) as u8)),
            // A length or count field (the first bytes of both formats) set to a large value.
            4 if b.len() >= 8 => {
                let i = pos(r, 8.min(b.len() - 3));
                b[i..i + 4].copy_from_slice(&[0x7f, 0xff, 0xff, (r.uniform() * 255.0) as u8]);
            }
            _ => {
                let i = pos(r, b.len());
                b.insert(i, (r.uniform() * 256.0) as u8);
            }
        }
    }
    b
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("webgrad-fuzz-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn mutated_safetensors_files_are_errors_or_tensors_never_panics() {
    let dev = device();
    let path = temp_file("seed.safetensors", &[]);
    let tensors = vec![
        (
            "a.weight".to_string(),
            Tensor::from_slice(dev, &randn(1, 12), &[3, 4]).unwrap(),
        ),
        (
            "b".to_string(),
            Tensor::from_slice(dev, &randn(2, 5), &[5]).unwrap(),
        ),
    ];
    let meta: HashMap<String, String> = [("epochs".to_string(), "3".to_string())].into();
    weights::save(&path, &tensors, &meta).unwrap();
    let seed = std::fs::read(&path).unwrap();
    let mut r = Rng::new(7);
    let mut accepted = 0;
    for i in 0..iterations() {
        let bytes = mutate(&mut r, &seed);
        std::fs::write(&path, &bytes).unwrap();
        let (result, peak) = peak_bytes(|| weights::load(&path));
        // The file once, plus at most twice its size in f32 tensors (f16 widens to f32).
        let bound = 4 * bytes.len() + (1 << 16);
        assert!(
            peak <= bound,
            "case {i}: {peak} bytes held for a {}-byte file",
            bytes.len()
        );
        if let Ok((t, _)) = result {
            accepted += 1;
            for h in t.values() {
                assert_eq!(h.data.len(), h.shape.iter().product::<usize>(), "case {i}");
            }
        } else if let Err(e) = result {
            assert!(e.to_string().contains("webgrad-fuzz"), "case {i}: {e}");
        }
    }
    std::fs::remove_file(&path).unwrap();
    assert!(
        accepted < iterations(),
        "no mutation was refused: the fuzzer is not biting"
    );
}

fn idx_seed() -> Vec<u8> {
    // A 3 x 4 x 5 u8 array.
    let mut b = vec![0, 0, 0x08, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5];
    b.extend((0..60).map(|v| v as u8));
    b
}

#[test]
fn mutated_idx_bytes_are_errors_or_arrays_never_panics() {
    let seed = idx_seed();
    let mut r = Rng::new(11);
    for i in 0..iterations() {
        let bytes = mutate(&mut r, &seed);
        let (result, peak) = peak_bytes(|| parse_idx(&bytes));
        assert!(
            peak <= bytes.len() + 4096,
            "case {i}: {peak} bytes for {}",
            bytes.len()
        );
        if let Ok(a) = result {
            assert_eq!(a.data.len(), a.dims.iter().product::<usize>(), "case {i}");
        }
    }
}

#[test]
fn mutated_gzipped_idx_files_are_errors_or_arrays_never_panics() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&idx_seed()).unwrap();
    let seed = enc.finish().unwrap();
    let path = temp_file("seed-idx.gz", &seed);
    let mut r = Rng::new(13);
    for i in 0..iterations() {
        let bytes = mutate(&mut r, &seed);
        std::fs::write(&path, &bytes).unwrap();
        let (result, peak) = peak_bytes(|| read_idx(&path));
        // Deflate expands at most 1,032-fold: nothing beyond what the file could hold.
        let bound = 1032 * bytes.len() + (1 << 17);
        assert!(
            peak <= bound,
            "case {i}: {peak} bytes for a {}-byte file",
            bytes.len()
        );
        if let Ok(a) = result {
            assert_eq!(a.data.len(), a.dims.iter().product::<usize>(), "case {i}");
        }
    }
    std::fs::remove_file(&path).unwrap();
}
