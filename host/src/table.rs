//! Tables for people: `list`, `doctor` and the matrix print their rows in aligned columns,
//! two spaces apart, with nothing after the last cell of a line.

use std::io::Write;

use tabwriter::TabWriter;

/// `rows` (the header first) in aligned columns, one line each.
pub fn aligned<R, C>(rows: R) -> String
where
    R: IntoIterator<Item = C>,
    C: IntoIterator,
    C::Item: AsRef<str>,
{
    let mut writer = TabWriter::new(Vec::new()).padding(2);
    for row in rows {
        let cells: Vec<String> = row
            .into_iter()
            // A tab inside a cell would start a column of its own.
            .map(|cell| cell.as_ref().replace('\t', " "))
            .collect();
        let _ = writeln!(writer, "{}", cells.join("\t"));
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_two_spaces_apart() {
        let table = aligned([
            vec!["NAME", "TYPE", "FILE"],
            vec!["strace", "execution_environment", "/a"],
            vec!["json", "reporter", ""],
        ]);
        assert_eq!(
            table,
            "NAME    TYPE                   FILE\n\
             strace  execution_environment  /a\n\
             json    reporter\n"
        );
    }
}
