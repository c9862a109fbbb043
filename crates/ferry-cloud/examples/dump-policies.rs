//! Writes every policy document Ferry installs, plus `manifest.json` and the authorization
//! matrix `matrix.json` (`ferry_cloud::verify::matrix`), into a directory.
//!
//! `cargo run -p ferry-cloud --example dump-policies -- OUTDIR` uses the example config with a
//! fixed fake account (what the policy proof and docs/SECURITY.md use).

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        anyhow::bail!("usage: dump-policies OUTDIR");
    };
    let inputs = ferry_cloud::policy::example_inputs()?;
    for path in ferry_cloud::policy::dump_documents(&inputs, std::path::Path::new(&dir))? {
        println!("{}", path.display());
    }
    let matrix = ferry_cloud::verify::dump_matrix(&inputs, std::path::Path::new(&dir))?;
    println!("{}", matrix.display());
    Ok(())
}
