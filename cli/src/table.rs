//! Aligned columns, as kubectl prints them: a header row in capitals, cells left-aligned and
//! padded to the widest cell of their column, three spaces between columns, nothing after
//! the last cell of a row.

/// A table of text cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

const GAP: &str = "   ";

impl Table {
    /// A table with this header row.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Appends a row; missing cells are empty, extra ones are kept (and widen the table).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rows, each ending in a newline. Widths count characters, not bytes.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i > 0 {
                    line.push_str(GAP);
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_each_column_to_its_widest_cell_and_trims_line_ends() {
        let mut t = Table::new(&["NAME", "X"]);
        t.row(vec!["a-long-name".into(), "1".into()]);
        t.row(vec!["b".into(), String::new()]);
        t.row(vec!["é".into(), "22".into()]);
        assert_eq!(
            t.render(),
            "NAME          X\na-long-name   1\nb\né             22\n"
        );
    }
}
