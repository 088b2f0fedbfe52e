//! The unrolled parts of the CPU adapters' product kernels, generated: each invocation's block
//! of C in separately named module-scope variables, `lo{i}` (row i, columns 0-3) and `hi{i}`
//! (columns 4-7), since llvmpipe keeps a dynamically indexed private array in memory; and the
//! helpers that update or store every row of them. Each repeated line is written once here,
//! with the loop over rows that unrolls it. `shaders/cpu/matmul_blocked.wgsl` gets
//! [`blocked`], `shaders/cpu/matmul_subgroup.wgsl` gets [`subgroup`].

const LANES: [&str; 4] = ["x", "y", "z", "w"];

/// Row i's value in the vec4s `{v}l` (rows 0-3) and `{v}h` (rows 4-7).
fn lane(v: &str, i: usize) -> String {
    let half = if i < 4 { 'l' } else { 'h' };
    format!("{v}{half}.{}", LANES[i % 4])
}

/// `fn {signature} {` holding `line(i)` for each of `rows` rows; `line` may return several
/// lines.
fn per_row(signature: &str, rows: usize, line: impl Fn(usize) -> String) -> String {
    let mut out = format!("fn {signature} {{\n");
    for i in 0..rows {
        for l in line(i).lines() {
            out += &format!("    {l}\n");
        }
    }
    out + "}\n"
}

/// The accumulators of a block of `rows` rows.
fn accumulators(rows: usize) -> String {
    (0..rows)
        .map(|i| format!("var<private> lo{i}: vec4<f32>;\nvar<private> hi{i}: vec4<f32>;\n"))
        .collect()
}

/// `store_{rows}x{columns}`: every row of the block through `store_row` (row r0 + i from lo0,
/// and hi0 when the block has 8 columns), in a loop that then shifts the rows up by one: one
/// call site, not one per row, since SwiftShader compiles every scalar store as a loop over
/// its SIMD lanes. (An array indexed by the loop counter would be a per-lane gather on
/// llvmpipe.)
fn store_block(rows: usize, columns: usize, store_row: &str) -> String {
    let halves: &[&str] = if columns == 4 { &["lo"] } else { &["lo", "hi"] };
    let values = halves
        .iter()
        .map(|h| format!("{h}0"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "fn store_{rows}x{columns}(c_base: u32, r0: u32, c0: u32) {{\n    \
         for (var i = 0u; i < {rows}u; i++) {{\n        \
         {store_row}(c_base, r0 + i, c0, {values});\n"
    );
    for i in 0..rows - 1 {
        for h in halves {
            out += &format!("        {h}{i} = {h}{};\n", i + 1);
        }
    }
    out + "    }\n}\n"
}

/// matmul_blocked8's, matmul_rows' and matmul_vec4's: an 8-row block's accumulators; the
/// outer product of a column of A (al: rows 0-3, ah: rows 4-7) and a row of B, 8 columns
/// (`outer8`) or 4 (`outer8x4`, into lo{i} only); and their stores.
pub(crate) fn blocked() -> String {
    let outer8 = per_row(
        "outer8(al: vec4<f32>, ah: vec4<f32>, bl: vec4<f32>, bh: vec4<f32>)",
        8,
        |i| {
            let a = lane("a", i);
            format!("lo{i} += {a} * bl;\nhi{i} += {a} * bh;")
        },
    );
    let outer8x4 = per_row(
        "outer8x4(al: vec4<f32>, ah: vec4<f32>, b: vec4<f32>)",
        8,
        |i| format!("lo{i} += {} * b;", lane("a", i)),
    );
    [
        accumulators(8),
        outer8,
        outer8x4,
        store_block(8, 8, "store_row8"),
        store_block(8, 4, "store_row4"),
    ]
    .join("\n")
}

/// matmul_subgroup's: a 16-row block's accumulators, its stores, and `step4`, which adds a
/// step of 4 k values into all of them: A's values broadcast from the lanes that fetched them
/// (see the shader's header), B's 8 x 4 from `tb`.
pub(crate) fn subgroup() -> String {
    let mut step4 = String::from("fn step4(a_lo: vec4<f32>, a_hi: vec4<f32>, tb: Texels8) {\n");
    // B's row kk: texels 2 kk (columns 0-3) and 2 kk + 1 of the across form.
    for kk in 0..4 {
        for (half, t) in [("l", 2 * kk), ("h", 2 * kk + 1)] {
            step4 += &format!("    let b{half}{kk} = tb.t{t};\n");
        }
    }
    for i in 0..16 {
        // Along k: the texel of lane i % 8, component kk. Across: at step kk, the texel
        // 4 kk + i / 4 (lane (4 kk + i / 4) % 8 of a_lo for kk < 2, else of a_hi),
        // component i % 4.
        let own = if i < 8 { "a_lo" } else { "a_hi" };
        step4 += &format!("    let row{i} = subgroupBroadcast({own}, {}u);\n", i % 8);
        for kk in 0..4 {
            let fetched = if kk < 2 { "a_lo" } else { "a_hi" };
            let from = i / 4 + 4 * (kk % 2);
            let across = format!("subgroupBroadcast({fetched}, {from}u)[{}]", i % 4);
            step4 += &format!("    let a{i}_{kk} = select({across}, row{i}[{kk}], A_K);\n");
        }
        for (acc, b) in [("lo", "bl"), ("hi", "bh")] {
            let terms: String = (0..4).map(|kk| format!(" + a{i}_{kk} * {b}{kk}")).collect();
            step4 += &format!("    {acc}{i} = {acc}{i}{terms};\n");
        }
    }
    step4 += "}\n";
    [accumulators(16), step4, store_block(16, 8, "store_row8_c4")].join("\n")
}

#[cfg(test)]
mod tests {
    /// Every accumulator is declared once and updated once by each helper that adds into it;
    /// every row is stored. (Their results are tested through the products in tests/matmul.rs.)
    #[test]
    fn declares_updates_and_stores_every_row() {
        let blocked = super::blocked();
        let subgroup = super::subgroup();
        for (text, rows) in [(&blocked, 8), (&subgroup, 16)] {
            for i in 0..rows {
                for acc in [format!("lo{i}"), format!("hi{i}")] {
                    assert!(text.contains(&format!("var<private> {acc}: vec4<f32>;")));
                }
            }
            // Every row reaches the stores' loop, shifted up.
            let last = rows - 1;
            assert!(text.contains(&format!("lo{} = lo{last};", last - 1)));
            assert!(text.contains(&format!("hi{} = hi{last};", last - 1)));
            assert!(text.contains(&format!("for (var i = 0u; i < {rows}u; i++) {{")));
            assert!(!text.contains(&format!("lo{rows}")));
        }
        let adds = |text: &str, acc: &str| {
            text.lines()
                .filter(|l| l.trim_start().starts_with(&format!("{acc} ")))
                .count()
        };
        // lo{i}: outer8 and outer8x4; hi{i}: outer8 only.
        assert_eq!(adds(&blocked, "lo7"), 2);
        assert_eq!(adds(&blocked, "hi7"), 1);
        assert!(blocked.contains("hi7 += ah.w * bh;"));
        assert_eq!(adds(&subgroup, "lo15"), 1);
        assert!(
            subgroup.contains("let a15_3 = select(subgroupBroadcast(a_hi, 7u)[3], row15[3], A_K);")
        );
        assert!(subgroup.contains("let row9 = subgroupBroadcast(a_hi, 1u);"));
        // B's rows in the across form (matmul_registers.wgsl's `transposed`).
        assert!(subgroup.contains("let bh3 = tb.t7;") && subgroup.contains("let bl0 = tb.t0;"));
    }
}
