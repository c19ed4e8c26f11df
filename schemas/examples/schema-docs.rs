//! Prints the column tables of `docs/schemas.md` from the table declarations.
fn main() {
    for (_, block) in strand_schemas::docs_tables() {
        println!("{block}");
    }
}
