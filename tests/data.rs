//! The IDX reader and MNIST loader: the bundled digits load, and every kind of broken file
//! (truncated, wrong magic, wrong type, mismatched counts, bad gzip) is an error naming the
//! file, never a panic.

use std::io::Write;
use std::path::PathBuf;

mod common;

use webgrad::data::{parse_idx, read_idx, DataLoader, Dataset, Mnist};

#[global_allocator]
static ALLOC: common::alloc::Counting = common::alloc::Counting;
use common::alloc::peak_bytes;

fn gzip(chunks: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for c in chunks {
        enc.write_all(&c).unwrap();
    }
    enc.finish().unwrap()
}

fn bundled() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-subset"))
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("webgrad-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bundled_digits_load() {
    let m = Mnist::load(bundled()).unwrap();
    assert_eq!((m.train.len(), m.test.len()), (7996, 2004));
    assert_eq!((m.train.rows, m.train.cols), (28, 28));
    assert!(m.train.labels.iter().all(|&l| l < 10));
    assert!(m.train.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    // Every digit is present in roughly equal numbers (the split is stratified).
    for d in 0..10u8 {
        let n = m.test.labels.iter().filter(|&&l| l == d).count();
        assert!((150..260).contains(&n), "digit {d}: {n}");
    }
}

#[test]
fn parses_valid_idx_and_names_offsets_in_errors() {
    let ok = parse_idx(&idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
    assert_eq!(ok.dims, vec![2, 3]);
    assert_eq!(ok.data, vec![1, 2, 3, 4, 5, 6]);
    let e = parse_idx(&idx_bytes(&[2, 3], &[1, 2, 3])).unwrap_err();
    assert!(e.contains("truncated") && e.contains("6 bytes"), "{e}");
    let e = parse_idx(&idx_bytes(&[2], &[1, 2, 3])).unwrap_err();
    assert!(e.contains("trailing"), "{e}");
    let e = parse_idx(&[0x12, 0x34, 8, 1, 0, 0, 0, 0]).unwrap_err();
    assert!(e.contains("magic") && e.contains("offset 0"), "{e}");
    let e = parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap_err();
    assert!(e.contains("0x0d"), "{e}");
    let e = parse_idx(&[0, 0, 8, 3, 0, 0]).unwrap_err();
    assert!(e.contains("header"), "{e}");
    assert!(parse_idx(&[0, 0]).is_err());
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let dir = temp_dir("idx");
    let f = dir.join("broken-idx3-ubyte");
    std::fs::write(&f, idx_bytes(&[10, 28, 28], &[0; 100])).unwrap();
    let e = read_idx(&f).unwrap_err().to_string();
    assert!(
        e.contains("broken-idx3-ubyte") && e.contains("truncated"),
        "{e}"
    );
    // A corrupted gzip stream.
    let gz = dir.join("bad.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let e = read_idx(&gz).unwrap_err().to_string();
    assert!(e.contains("bad.gz") && e.contains("gzip"), "{e}");
    // A valid gzip of a valid IDX file reads back.
    let good = dir.join("good.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&idx_bytes(&[3], &[7, 8, 9])).unwrap();
    std::fs::write(&good, enc.finish().unwrap()).unwrap();
    assert_eq!(read_idx(&good).unwrap().data, vec![7, 8, 9]);
    // Label count != image count.
    let im = dir.join("im");
    let lb = dir.join("lb");
    std::fs::write(&im, idx_bytes(&[2, 2, 2], &[0; 8])).unwrap();
    std::fs::write(&lb, idx_bytes(&[3], &[0, 1, 2])).unwrap();
    let e = Dataset::from_idx(&im, &lb).unwrap_err().to_string();
    assert!(e.contains("2 images") && e.contains("3 labels"), "{e}");
    let e = read_idx(dir.join("missing")).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    let e = Mnist::load(&dir).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn loader_batches_shuffles_by_seed_and_keeps_or_drops_the_tail() {
    let data = Dataset {
        images: (0..10 * 4).map(|v| v as f32).collect(),
        labels: (0..10).collect(),
        rows: 2,
        cols: 2,
    };
    let plain: Vec<_> = DataLoader::new(&data, 4).unwrap().epoch(0).collect();
    assert_eq!(plain.len(), 3);
    assert_eq!(plain[2].labels, vec![8, 9]);
    assert_eq!(plain[0].shape, [4, 1, 2, 2]);
    assert_eq!(plain[1].images[..4], [16.0, 17.0, 18.0, 19.0]);
    assert_eq!(
        DataLoader::new(&data, 4)
            .unwrap()
            .drop_last(true)
            .epoch(0)
            .count(),
        2
    );
    let a: Vec<usize> = DataLoader::new(&data, 10)
        .unwrap()
        .shuffle(1)
        .epoch(0)
        .next()
        .unwrap()
        .labels;
    let b: Vec<usize> = DataLoader::new(&data, 10)
        .unwrap()
        .shuffle(1)
        .epoch(0)
        .next()
        .unwrap()
        .labels;
    let c: Vec<usize> = DataLoader::new(&data, 10)
        .unwrap()
        .shuffle(1)
        .epoch(1)
        .next()
        .unwrap()
        .labels;
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    // A batch size of 0 is an error (it silently became 1).
    let err = DataLoader::new(&data, 0).unwrap_err().to_string();
    assert!(err.contains("batch_size"), "{err}");
}

#[test]
fn a_small_gzip_that_expands_hugely_fails_fast_in_small_memory() {
    let dir = temp_dir("bomb");
    // A valid header for 3 bytes, then 64 MiB of zeros: about 64 KiB compressed.
    let bomb = dir.join("bomb-idx1-ubyte.gz");
    let mib = 1 << 20;
    let chunks = std::iter::once(idx_bytes(&[3], &[1, 2, 3])).chain((0..64).map(|_| vec![0; mib]));
    std::fs::write(&bomb, gzip(chunks)).unwrap();
    let (r, peak) = peak_bytes(|| read_idx(&bomb));
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("bomb-idx1-ubyte.gz") && e.contains("trailing"),
        "{e}"
    );
    assert!(peak < mib, "read_idx held {peak} bytes at once");
    // A header announcing far more than the file can expand to (4 GiB from a few bytes) is
    // refused before anything is decompressed.
    let liar = dir.join("liar.gz");
    std::fs::write(&liar, gzip([idx_bytes(&[65536, 65536], &[0; 16])])).unwrap();
    let (r, peak) = peak_bytes(|| read_idx(&liar));
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("liar.gz") && e.contains("[65536, 65536]") && e.contains("1032x"),
        "{e}"
    );
    assert!(peak < mib, "read_idx held {peak} bytes at once");
    // A raw file is checked against its size before its data is read.
    let raw = dir.join("raw-idx1-ubyte");
    std::fs::write(&raw, idx_bytes(&[65536, 65536], &[0; 16])).unwrap();
    let (r, peak) = peak_bytes(|| read_idx(&raw));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("truncated") && e.contains("found 16"), "{e}");
    assert!(peak < mib, "read_idx held {peak} bytes at once");
    // A truncated gzip of a header that fits the bound: truncated, naming the counts.
    let short = dir.join("short.gz");
    std::fs::write(&short, gzip([idx_bytes(&[100], &[5; 40])])).unwrap();
    let e = read_idx(&short).unwrap_err().to_string();
    assert!(
        e.contains("need 100 bytes") && e.contains("found 40"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
